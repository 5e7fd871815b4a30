"""Keyframe budget: onsets go, near-duplicates do not, the per-minute budget and spacing hold, safety lifts them."""

from __future__ import annotations

import pytest

from pipeline.budget import KeyframeBudget
from pipeline.config import BudgetConfig
from pipeline.records import GateDecision, GateReason

FPS = 25.0


def change(salience: float = 50.0, region: tuple[float, float, float, float] = (0.4, 0.4, 0.5, 0.6)) -> GateDecision:
    return GateDecision(True, GateReason.CHANGE, 10.0, 0.02, salience=salience, region=region)


STATIC = GateDecision(False, GateReason.STATIC, 0.5)
FIRST = GateDecision(True, GateReason.FIRST, 0.0)


def run(budget: KeyframeBudget, decisions: list[tuple[float, GateDecision]], safety: bool = False) -> list[float]:
    return [t for t, d in decisions if budget.admit(d, t, safety_active=safety).send]


def test_first_frame_and_onset_are_sent_a_near_duplicate_is_not() -> None:
    budget = KeyframeBudget(BudgetConfig(), sample_fps=2.0)
    frames = [(0.0, FIRST)] + [(i / FPS, STATIC) for i in range(1, 50)]
    frames += [(i / FPS, change()) for i in range(50, 60)]  # the same small change, 0.4 s
    sent = run(budget, frames)
    assert sent == [0.0, 2.0]
    assert budget.counters["sent"] == {"first": 1, "onset": 1}
    assert budget.counters["budget_dropped"] == {"duplicate": 9}
    assert budget.counters["gated_out"] == {"static": 49}
    assert budget.counters["frames"] == 60


def test_a_peak_of_change_is_sent_after_the_spacing() -> None:
    budget = KeyframeBudget(BudgetConfig(peak_factor=3.0, min_spacing_s=1.0), sample_fps=2.0)
    frames = [(0.0, FIRST), (5.0, change(10.0)), (5.5, change(100.0)), (6.0, change(100.0)), (6.04, change(100.0))]
    assert run(budget, frames) == [0.0, 5.0, 6.0]  # 5.5 is too close to the onset; 6.0 is the peak


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
