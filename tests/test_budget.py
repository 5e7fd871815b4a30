"""Keyframe budget: confirmed onsets go, near-duplicates and weak change do not, strong activity is refreshed,
the per-minute budget and spacing hold, safety lifts them."""

from __future__ import annotations

import json

import pytest

from fixtures.demo import Room, Scene, Walker, iter_frames
from pipeline.frames.budget import KeyframeBudget
from pipeline.config.budget import BudgetConfig
from pipeline.config.gate import GateConfig
from pipeline.frames.gate import ChangeGate
from pipeline.records import GateDecision, GateReason

FPS = 25.0


def change(salience: float = 50.0, region: tuple[float, float, float, float] = (0.4, 0.4, 0.5, 0.6)) -> GateDecision:
    return GateDecision(True, GateReason.CHANGE, 10.0, 0.02, salience=salience, region=region)


STATIC = GateDecision(False, GateReason.STATIC, 0.5)
FIRST = GateDecision(True, GateReason.FIRST, 0.0)


def run(budget: KeyframeBudget, decisions: list[tuple[float, GateDecision]], safety: bool = False) -> list[float]:
    return [t for t, d in decisions if budget.admit(d, t, safety_active=safety).send]


def test_first_frame_and_confirmed_onset_are_sent_a_near_duplicate_is_not() -> None:
    budget = KeyframeBudget(BudgetConfig(onset_confirm_s=0.4), sample_fps=2.0)
    frames = [(0.0, FIRST)] + [(i / FPS, STATIC) for i in range(1, 50)]
    frames += [(i / FPS, change()) for i in range(50, 70)]  # the same small change for 0.8 s from 2.0 s
    sent = run(budget, frames)
    assert sent == [0.0, 2.4]  # the onset goes once the change has lasted onset_confirm_s
    assert budget.counters["sent"] == {"first": 1, "onset": 1}
    assert budget.counters["budget_dropped"] == {"unconfirmed": 10, "duplicate": 9}
    assert budget.counters["gated_out"] == {"static": 49}
    assert budget.counters["frames"] == 70


def test_change_shorter_than_the_onset_confirmation_sends_nothing_a_longer_one_does() -> None:
    budget = KeyframeBudget(BudgetConfig(onset_confirm_s=0.4), sample_fps=2.0)
    run(budget, [(0.0, FIRST)])
    flicker = [(5.0 + i / FPS, change()) for i in range(5)]  # 0.16 s of change
    assert run(budget, flicker) == []
    # After quiet_s without change, a lasting change is a new episode: its onset waits 0.4 s, not longer.
    lasting = [(10.0 + i / FPS, change()) for i in range(25)]
    assert run(budget, lasting) == [10.4]
    # With no confirmation the very first changed frame goes (the old behaviour).
    eager = KeyframeBudget(BudgetConfig(onset_confirm_s=0.0), sample_fps=2.0)
    run(eager, [(0.0, FIRST)])
    assert run(eager, flicker) == [5.0]


def test_a_peak_of_change_is_sent_after_the_spacing() -> None:
    budget = KeyframeBudget(BudgetConfig(peak_factor=3.0, min_spacing_s=1.0, onset_confirm_s=0.4), sample_fps=2.0)
    frames = [(0.0, FIRST)] + [(4.6 + i / FPS, change(10.0)) for i in range(16)]  # onset at 5.0
    frames += [(5.5, change(100.0)), (6.0, change(100.0)), (6.04, change(100.0))]
    assert run(budget, frames) == [0.0, 5.0, 6.0]  # 5.5 is too close to the onset; 6.0 is the peak


def test_a_peak_is_judged_against_the_strongest_frame_sent_in_the_episode_not_the_last() -> None:
    cfg = BudgetConfig(peak_factor=3.0, onset_confirm_s=0.0, refresh_s=3.0, active_refresh_s=100.0, weak_ratio=0.2)
    budget = KeyframeBudget(cfg, sample_fps=2.0)
    run(budget, [(0.0, FIRST)])
    strong = [(5.0 + i / FPS, change(100.0)) for i in range(25)]  # onset at 5.0
    # Weaker change moving elsewhere: refreshed at 8.0 (not a duplicate, 40 % of the strongest).
    weaker = [(6.0 + i / FPS, change(40.0, (0.1 + 0.01 * i, 0.1, 0.2 + 0.01 * i, 0.3))) for i in range(75)]
    # 130, central, is over 3x the last sent (40, off-centre) but not over 3x the strongest (100): no peak.
    stronger = [(9.0 + i / FPS, change(130.0)) for i in range(10)]
    assert run(budget, strong + weaker + stronger) == [5.0, 8.0]
    assert budget.counters["sent"] == {"first": 1, "onset": 1, "refresh": 1}


def test_strong_change_in_one_place_gets_an_active_refresh_near_duplicate_or_not() -> None:
    # Someone moving about on the spot: the region hardly moves, so region novelty never fires,
    # but while the change stays strong a frame goes every active_refresh_s.
    cfg = BudgetConfig(onset_confirm_s=0.0, active_refresh_s=2.0, active_ratio=0.5, refresh_s=3.0)
    budget = KeyframeBudget(cfg, sample_fps=2.0)
    run(budget, [(0.0, FIRST)])
    busy = [(5.0 + i / FPS, change(100.0 if i % 2 else 80.0)) for i in range(int(7 * FPS))]
    sent = run(budget, busy)
    assert sent == pytest.approx([5.0, 7.0, 9.0, 11.0])
    assert budget.counters["sent"] == {"first": 1, "onset": 1, "active": 3}
    # The same on-the-spot change with active refresh off: near-duplicates, only the onset goes.
    idle = KeyframeBudget(BudgetConfig(onset_confirm_s=0.0, active_refresh_s=1000.0), sample_fps=2.0)
    run(idle, [(0.0, FIRST)])
    assert run(idle, busy) == [5.0]


def test_weak_change_gets_no_refresh_but_an_episode_heartbeat() -> None:
    cfg = BudgetConfig(onset_confirm_s=0.0, refresh_s=3.0, weak_ratio=0.2, active_ratio=0.5, max_silence_s=10.0)
    budget = KeyframeBudget(cfg, sample_fps=2.0)
    run(budget, [(0.0, FIRST)])
    onset = [(5.0, change(100.0))]
    # A faint change wandering about (10 % of the onset's): not a duplicate, but weak.
    faint = [(5.0 + i / FPS, change(10.0, ((i % 9) / 10, 0.6, (i % 9) / 10 + 0.1, 0.7))) for i in range(1, int(12 * FPS))]
    sent = run(budget, onset + faint)
    assert sent == pytest.approx([5.0, 15.0])
    assert budget.counters["sent"] == {"first": 1, "onset": 1, "heartbeat": 1}


@pytest.mark.parametrize("max_per_min, spacing", [(24, 1.0), (6, 2.0)])
def test_budget_and_spacing_hold_under_continuous_novel_change(max_per_min: int, spacing: float) -> None:
    budget = KeyframeBudget(BudgetConfig(max_calls_per_min=max_per_min, min_spacing_s=spacing, refresh_s=0.1), sample_fps=2.0)
    frames = [(0.0, FIRST)]
    for i in range(1, int(180 * FPS)):
        x = (i % 9) / 10  # the changing region jumps about: never a near-duplicate
        frames.append((i / FPS, change(20.0 + (i % 50) * 10, (x, 0.1, x + 0.1, 0.3))))
    sent = run(budget, frames)
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert min(gaps) >= spacing - 1e-9
    for start in range(0, 121, 5):
        in_minute = [t for t in sent if start <= t < start + 60]
        assert len(in_minute) <= max_per_min + 1  # (+1: the unbudgeted first frame)
    assert len(sent) >= 2.5 * max_per_min  # the budget is spent, not hoarded
    assert budget.counters["budget_dropped"].get("budget", 0) + budget.counters["budget_dropped"].get("spacing", 0) > 0


def test_safety_flag_lifts_the_budget_to_sample_fps_even_for_static_frames() -> None:
    budget = KeyframeBudget(BudgetConfig(max_calls_per_min=6), sample_fps=2.0)
    run(budget, [(0.0, FIRST)])
    frames = [(i / FPS, change() if i % 2 else STATIC) for i in range(1, int(20 * FPS))]
    sent = run(budget, frames, safety=True)
    assert 38 <= len(sent) <= 40  # 2 per second for 20 s, far over 6 per minute
    assert min(b - a for a, b in zip(sent, sent[1:])) >= 0.5 - 1e-9
    assert budget.counters["sent"]["safety"] == len(sent)


def test_safety_watch_decisions_from_the_runner_count_as_safety() -> None:
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    watch = GateDecision(True, GateReason.SAFETY_WATCH, 0.0)
    run(budget, [(0.0, FIRST)])
    assert run(budget, [(0.5, watch), (0.6, watch), (1.0, watch)]) == [0.5, 1.0]


def test_global_change_is_never_swallowed_by_budget_or_spacing() -> None:
    budget = KeyframeBudget(BudgetConfig(max_calls_per_min=1, burst=1), sample_fps=2.0)
    cut = GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind="tamper")
    frames = [(0.0, FIRST), (0.2, cut), (0.3, STATIC), (0.5, STATIC), (3.0, cut)]
    results = [(t, budget.admit(d, t)) for t, d in frames]
    sent = [(t, r.reason) for t, r in results if r.send]
    # 0.2 is held only by the sample_fps spacing and goes with the next frame that may go.
    assert sent == [(0.0, "first"), (0.5, "global_change"), (3.0, "global_change")]


def test_heartbeat_is_sent() -> None:
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    beat = GateDecision(True, GateReason.HEARTBEAT, 0.1)
    assert run(budget, [(0.0, FIRST), (10.0, beat), (20.0, beat)]) == [0.0, 10.0, 20.0]


def test_bad_sample_fps_is_rejected() -> None:
    with pytest.raises(ValueError):
        KeyframeBudget(BudgetConfig(), sample_fps=0.0)


def test_gate_and_budget_on_a_generated_clip_send_a_frame_for_a_fall_at_a_fraction_of_2fps() -> None:
    # Walks in at 1 s, shifts about on the spot from 3 s, falls 8.0-8.7 s, lies still to the end.
    path = ((1.0, -0.06), (3.0, 0.40)) + tuple((3.0 + 0.5 * (k + 1), 0.48 if k % 2 == 0 else 0.40) for k in range(10))
    walker = Walker(enter=1.0, exit=100.0, path=path, tilt=((8.0, 0.0), (8.7, 90.0)))
    scene = Scene(room=Room(size=(320, 180)), actors=(walker,))
    gate = ChangeGate(GateConfig())
    cfg = BudgetConfig()
    budget = KeyframeBudget(cfg, sample_fps=2.0)
    sent: list[float] = []
    first_change = None
    onset = None
    for _, t, image in iter_frames(scene, 12.0, 10.0):
        decision = gate.observe(image, t)
        if first_change is None and decision.reason is GateReason.CHANGE:
            first_change = t
        verdict = budget.admit(decision, t)
        if verdict.send:
            sent.append(t)
            if verdict.reason == "onset" and onset is None:
                onset = t
    assert first_change is not None and onset is not None
    assert onset - first_change >= cfg.onset_confirm_s - 1e-9
    assert any(8.0 <= t <= 8.7 + 1.0 for t in sent), sent
    assert len(sent) <= 12.0 * 2.0 / 3  # at least 3x fewer than 2 fps sampling


def test_a_storm_of_global_changes_is_followed_once_per_global_repeat_s_and_none_is_lost() -> None:
    cfg = BudgetConfig(global_repeat_s=1.5)
    budget = KeyframeBudget(cfg, sample_fps=2.0)
    cut = GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind="tamper")
    # A camera being moved: the whole view changes every 0.3 s for 3 s, then a quiet stretch, then one more cut.
    frames = [(0.0, FIRST)] + [(round(0.3 * k, 2), cut) for k in range(1, 11)] + [(3.3, STATIC), (3.6, STATIC), (9.0, cut)]
    sent = [(t, r.reason) for t, r in ((t, budget.admit(d, t)) for t, d in frames) if r.send]
    assert [reason for _, reason in sent] == ["first", "global_change", "global_change", "global_change", "global_change"]
    times = [t for t, _ in sent]
    assert times[1] == 0.6  # 1/sample_fps after the first frame
    assert all(b - a >= cfg.global_repeat_s - 1e-9 for a, b in zip(times[1:], times[2:]))
    assert times[3] == 3.6  # the changes of 2.4-3.0 s were held, not dropped: they go with the next frame allowed
    assert times[-1] == 9.0  # a later cut, after the storm, goes at once


def test_zero_global_repeat_keeps_only_the_sample_fps_spacing() -> None:
    budget = KeyframeBudget(BudgetConfig(global_repeat_s=0.0), sample_fps=2.0)
    cut = GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind="tamper")
    assert run(budget, [(0.0, FIRST)] + [(0.5 * k, cut) for k in range(1, 5)]) == [0.0, 0.5, 1.0, 1.5, 2.0]


def active_episode(budget: KeyframeBudget, until: float, salience: float = 60.0) -> list[float]:
    """First frame, then strong change every 0.04 s from 1 s to ``until`` in one place."""
    frames = [(0.0, FIRST)] + [(round(1.0 + 0.04 * k, 2), change(salience)) for k in range(int((until - 1.0) / 0.04) + 1)]
    return run(budget, frames)


def test_source_ending_amid_unsent_strong_activity_gets_a_final_frame() -> None:
    cfg = BudgetConfig(active_refresh_s=2.0, min_spacing_s=1.0)
    budget = KeyframeBudget(cfg, sample_fps=2.0)
    sent = active_episode(budget, until=4.8)
    assert sent == [0.0, 1.4, 3.4]  # onset once confirmed, then the 2 s active refresh; 5.4 would be next
    final = budget.finish()
    assert final.send and final.reason == "final"
    assert budget.counters["sent"]["final"] == 1
    assert not budget.finish().send  # nothing new since: no second final look


def test_no_final_frame_when_the_unsent_strong_activity_is_shorter_than_min_spacing() -> None:
    budget = KeyframeBudget(BudgetConfig(active_refresh_s=2.0, min_spacing_s=1.0), sample_fps=2.0)
    assert active_episode(budget, until=4.2) == [0.0, 1.4, 3.4]  # 0.8 s of activity after the last send
    assert not budget.finish().send


def test_no_final_frame_for_weak_trailing_change() -> None:
    budget = KeyframeBudget(BudgetConfig(active_ratio=0.5), sample_fps=2.0)
    sent = active_episode(budget, until=3.4)
    faint = [(round(3.44 + 0.04 * k, 2), change(10.0)) for k in range(60)]  # someone nearly still, 2.4 s
    assert run(budget, faint) == []
    assert sent[-1] == 3.4
    assert not budget.finish().send


def test_no_final_frame_without_change_since_the_last_send() -> None:
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    active_episode(budget, until=3.4)
    run(budget, [(3.5 + 0.1 * k, STATIC) for k in range(30)])
    assert not budget.finish().send


def test_a_global_change_still_held_at_the_end_goes_as_the_final_frame() -> None:
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    cut = GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind="tamper")
    assert run(budget, [(0.0, FIRST), (0.1, cut), (0.2, cut)]) == [0.0]  # a 0.2 s clip of flashing colours
    assert budget.finish().send


def test_an_onset_held_back_by_the_budget_goes_as_the_final_frame() -> None:
    budget = KeyframeBudget(BudgetConfig(max_calls_per_min=1, burst=1, min_spacing_s=1.0), sample_fps=2.0)
    run(budget, [(0.0, FIRST)])
    sent = run(budget, [(round(2.0 + 0.04 * k, 2), change()) for k in range(26)])  # 2.0-3.0 s: tokens spent on the first frame
    assert sent == []
    assert budget.counters["budget_dropped"]["budget"] > 0
    assert budget.finish().send


def crossing_scene() -> Scene:
    """Someone walking steadily across the room from 1 s: strong change that keeps going."""
    return Scene(room=Room(size=(320, 180)), actors=(Walker(enter=1.0, exit=100.0, path=((1.0, -0.06), (9.0, 0.9))),))


@pytest.mark.parametrize("end_s, final_expected", [(4.4, False), (5.0, True)])
def test_gate_and_budget_look_once_more_when_a_clip_ends_mid_movement(end_s: float, final_expected: bool) -> None:
    gate = ChangeGate(GateConfig())
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    sent = [t for _, t, image in iter_frames(crossing_scene(), end_s, FPS) if budget.admit(gate.observe(image, t), t).send]
    assert len(sent) == 3 and sent[0] == 0.0  # first, onset, one active refresh; the next is due after the end
    assert budget.finish().send is final_expected


def test_runner_with_the_budget_sends_the_final_frame_to_the_student(tmp_path) -> None:  # noqa: ANN001
    from fixtures.demo import write_video
    from pipeline.clock import ManualClock
    from pipeline.config.settings import Settings
    from pipeline.runner import Runner
    from pipeline.analyzers.backends import select_backends

    video = tmp_path / "crossing.avi"
    write_video(video, crossing_scene(), 5.0, FPS)
    settings = Settings.model_validate({
        "budget": {"enabled": True},
        "student": {"backend": "offline"}, "teacher": {"backend": "offline"},
        "output": {"out_dir": str(tmp_path / "out")},
    })
    clock = ManualClock()
    summary = Runner(settings, select_backends(settings, clock), clock=clock).run(str(video))
    assert summary.budget["sent"].get("final") == 1
    assert summary.frames_analysed == summary.budget["frames_sent"]
    decisions = [json.loads(line) for line in (tmp_path / "out" / "decisions.jsonl").read_text().splitlines()]
    analysed = [d["t"] for d in decisions if d.get("kind") == "decision"]
    assert max(analysed) >= 4.8  # the final look is at the clip's last moments, after the last budgeted send


def test_a_held_global_change_sent_with_a_later_frame_keeps_its_kind_tamper_first() -> None:
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    lights = GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind="lighting_change")
    cover = GateDecision(True, GateReason.GLOBAL_CHANGE, 80.0, 0.9, global_kind="tamper")
    decisions = [budget.admit(d, t) for t, d in [(0.0, FIRST), (0.1, lights), (0.2, cover), (0.3, lights), (0.5, STATIC)]]
    late = decisions[-1]
    assert late.send and late.reason == "global_change" and late.global_kind == "tamper"
    assert all(d.global_kind is None for d in decisions[:-1])
    # Held at the end of the source: the final frame carries it.
    assert budget.admit(lights, 0.7).send is False
    final = budget.finish()
    assert final.send and final.global_kind == "lighting_change"


def test_the_text_summary_shows_the_budgets_counters() -> None:
    from pipeline.sinks.run_summary import RunSummary

    summary = RunSummary(source="clip.mp4", camera="cam0", student="offline", teacher="offline")
    assert "keyframe budget" not in summary.render()
    summary.budget = {"frames": 90, "gated_out": {"static": 40}, "sent": {"first": 1, "onset": 2, "final": 1},
                      "budget_dropped": {"duplicate": 30, "spacing": 16}, "frames_sent": 4}
    [line] = [ln for ln in summary.render().splitlines() if "keyframe budget" in ln]
    assert "sent 4 (final 1, first 1, onset 2)" in line and "duplicate 30, spacing 16" in line
