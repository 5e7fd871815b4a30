"""Adaptive thresholds: periods by clock and brightness, load with hysteresis, teacher feedback, state file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.clock import ManualClock
from pipeline.config.loading import settings_from_dict
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError
from pipeline.incidents.escalation import QueueState
from pipeline.incidents.threshold_feedback import LOW_CONFIDENCE_KEY
from pipeline.incidents.thresholds import ThresholdController
from pipeline.incidents.periods import mean_luma
from commands.thresholds import cmd_thresholds

CALM = QueueState(depth=0, capacity=10)


def settings(**adaptive: Any) -> Settings:
    base: dict[str, Any] = {
        "timezone": "Europe/Berlin",
        "source_start": "2024-05-01T21:59:00",
        "period_dwell_s": 0,
        "brightness_smoothing_s": 0,
        "profiles": {
            "night": {"start": "22:00", "end": "06:00", "brightness_min": 0, "brightness_max": 40,
                      "persistence_k": 2, "persistence_n": 5, "min_confidence": 0.6, "audit_every": 300,
                      "gate_block_min_change": 8.0, "sample_fps": 1.0},
            "day": {"start": "06:00", "end": "22:00"},
        },
    }
    base.update(adaptive)
    return settings_from_dict({"camera_id": "cam", "adaptive": base})


def controller(tmp_path: Path, **adaptive: Any) -> ThresholdController:
    return ThresholdController(settings(**adaptive), "cam", ManualClock(), tmp_path / "state.json")


# -- periods ---------------------------------------------------------------------------


def test_period_edges_are_start_inclusive_end_exclusive(tmp_path: Path) -> None:
    c = controller(tmp_path)
    assert c.update(59.0)[0].period == "day"          # 21:59:59
    inforce, changes = c.update(60.0)                  # 22:00:00 exactly
    assert inforce.period == "night" and inforce.period_reason == "clock"
    named = {ch.name: ch for ch in changes}
    assert named["period"].old == "day" and named["period"].new == "night" and named["period"].cause == "profile"
    assert named["persistence_n"].new == 5 and named["min_confidence"].new == 0.6
    assert inforce.thresholds.audit_every == 300
    assert inforce.gate_block_min_change == 8.0 and inforce.sample_fps == 1.0
    eight_hours = 8 * 3600.0
    assert c.update(59.0 + eight_hours)[0].period == "night"   # 05:59:59
    assert c.update(60.0 + eight_hours)[0].period == "day"     # 06:00:00


def test_a_period_across_midnight_holds_without_new_changes(tmp_path: Path) -> None:
    c = controller(tmp_path)
    c.update(60.0)
    logged = []
    for t in range(120, 3 * 3600, 300):                 # 22:01 .. 00:56
        inforce, changes = c.update(float(t))
        logged += changes
        assert inforce.period == "night"
    assert logged == []
    assert c.in_force.local_time is not None and c.in_force.local_time.startswith("2024-05-02T00:")


def test_a_dark_scene_at_noon_counts_as_night_and_a_bright_one_returns_to_the_clock(tmp_path: Path) -> None:
    c = controller(tmp_path, source_start="2024-05-01T12:00:00")
    assert c.update(0.0, brightness=120.0)[0].period == "day"
    inforce, changes = c.update(1.0, brightness=12.0)
    assert inforce.period == "night" and inforce.period_reason == "brightness"
    assert {ch.name: ch.figures for ch in changes}["period"]["brightness"] == 12.0
    assert c.update(2.0, brightness=100.0)[0].period == "day"


def test_a_passing_shadow_does_not_switch_the_period(tmp_path: Path) -> None:
    c = controller(tmp_path, source_start="2024-05-01T12:00:00", period_dwell_s=30, brightness_smoothing_s=10)
    c.update(0.0, brightness=120.0)
    for t in (1.0, 2.0, 3.0):                           # three dark frames: smoothed stays bright
        assert c.update(t, brightness=5.0)[0].period == "day"
    periods = [c.update(4.0 + i, brightness=5.0)[0].period for i in range(120)]
    assert periods[0] == "day" and periods[-1] == "night"
    first_night = periods.index("night")
    assert all(p == "night" for p in periods[first_night:])


def test_no_profiles_or_disabled_keeps_the_configured_thresholds(tmp_path: Path) -> None:
    plain = ThresholdController(Settings(), "cam", ManualClock(), tmp_path / "s.json")
    inforce, changes = plain.update(5.0, brightness=3.0, queue=CALM)
    assert inforce.period == "default" and changes == []
    off = controller(tmp_path, enabled=False)
    inforce, changes = off.update(60.0, queue=QueueState(depth=10, capacity=10), student_lag_s=99.0)
    assert changes == [] and inforce.thresholds.bar == 0 and inforce.period == "default"


def test_non_finite_timestamp_is_ignored(tmp_path: Path) -> None:
    c = controller(tmp_path)
    before = c.update(10.0)[0]
    assert c.update(float("nan")) == (before, [])


# -- load ------------------------------------------------------------------------------


def load_controller(tmp_path: Path) -> ThresholdController:
    return controller(tmp_path, source_start="2024-05-01T12:00:00", load_step_s=10, load_calm_s=30)


def test_load_raises_the_bar_step_by_step_and_lowers_it_with_hysteresis(tmp_path: Path) -> None:
    c = load_controller(tmp_path)
    busy = QueueState(depth=6, capacity=10)
    bars = [c.update(float(t), queue=busy)[0].thresholds.bar for t in range(0, 40)]
    assert bars[0] == 1 and bars[9] == 1 and bars[10] == 2 and bars[20] == 3 and bars[-1] == 3   # one step per 10 s, max 3
    # In the hysteresis band (between lower 0.2 and raise 0.5) nothing moves.
    band = QueueState(depth=3, capacity=10)
    assert {c.update(40.0 + t, queue=band)[0].thresholds.bar for t in range(100)} == {3}
    # Calm: one step down per 30 s of calm.
    downs = []
    for t in range(140, 260):
        inforce, changes = c.update(float(t), queue=CALM)
        downs += [(ch.timestamp, ch.old, ch.new, ch.cause) for ch in changes]
    assert downs == [(170.0, 3, 2, "load"), (200.0, 2, 1, "load"), (230.0, 1, 0, "load")]


def test_load_hovering_at_the_raise_mark_does_not_oscillate(tmp_path: Path) -> None:
    c = load_controller(tmp_path)
    bars = []
    for t in range(600):
        pressure_depth = 5 if t % 2 else 4                 # 0.5 / 0.4: around the raise mark
        bars.append(c.update(float(t), queue=QueueState(depth=pressure_depth, capacity=10))[0].thresholds.bar)
    assert all(b2 >= b1 for b1, b2 in zip(bars, bars[1:]))  # never down while load hovers
    changes = sum(1 for b1, b2 in zip(bars, bars[1:]) if b1 != b2)
    assert changes <= 3


def test_lag_and_cpu_also_raise_the_bar_and_the_figures_say_which(tmp_path: Path) -> None:
    c = load_controller(tmp_path)
    _, changes = c.update(0.0, queue=CALM, student_lag_s=9.0, cpu_busy=0.99)
    bar = [ch for ch in changes if ch.name == "bar"][0]
    assert bar.new == 1 and set(bar.figures["high"]) == {"student_lag_s", "cpu_busy"}
    assert c.update(5.0, queue=CALM, student_lag_s=0.0, cpu_busy=0.1)[0].thresholds.bar == 1  # calm, not yet 30 s


def test_load_max_bar_bounds_the_bar(tmp_path: Path) -> None:
    c = controller(tmp_path, load_max_bar=1, load_step_s=0)
    full = QueueState(depth=10, capacity=10)
    assert max(c.update(float(t), queue=full)[0].thresholds.bar for t in range(50)) == 1


# -- feedback --------------------------------------------------------------------------


def dismiss(c: ThresholdController, flag: str, times: int, start: float = 100.0) -> list[Any]:
    changes = []
    for i in range(times):
        c.record_verdict(frozenset({flag}), f"safety:{flag}", "dismissed", start + i)
        changes += c.update(start + i + 0.5)[1]
    return changes


def test_dismissals_raise_the_flags_persistence_within_bounds(tmp_path: Path) -> None:
    c = controller(tmp_path)                                # night: k 2 of n 5; fp_max_k_raise 2
    c.update(60.0)
    changes = dismiss(c, "fire", 40)
    assert c.in_force.persistence_k_by_flag == {"fire": 4}
    assert c.in_force.thresholds.persistence_k == 2          # other flags keep the period's k
    raised = [ch for ch in changes if ch.name == "persistence_k[fire]"]
    assert [(ch.old, ch.new) for ch in raised] == [(2, 3), (3, 4)]
    assert all(ch.cause == "fp_feedback" and ch.figures["dismissal_rate"] >= 0.6 for ch in raised)
    # Confirmations bring it back down, one step at a time.
    for i in range(40):
        c.record_verdict(frozenset({"fire"}), "safety:fire", "confirmed", 200.0 + i)
    assert "fire" not in c.update(300.0)[0].persistence_k_by_flag


def test_k_never_exceeds_n(tmp_path: Path) -> None:
    c = controller(tmp_path, fp_max_k_raise=10)
    c.update(60.0)
    dismiss(c, "smoke", 100)
    assert c.in_force.persistence_k_by_flag["smoke"] == 5


def test_feedback_is_per_period(tmp_path: Path) -> None:
    c = controller(tmp_path)
    c.update(0.0)                                          # day
    dismiss(c, "intrusion", 10, start=1.0)
    assert c.in_force.persistence_k_by_flag == {"intrusion": 3}   # day: k 2 of 3 -> 3
    inforce, changes = c.update(60.0)                      # night: no feedback for intrusion there
    assert inforce.period == "night" and inforce.persistence_k_by_flag == {}
    assert any(ch.name == "persistence_k[intrusion]" and ch.cause == "profile" for ch in changes)


def test_audit_misses_lower_the_flags_bar_within_bounds(tmp_path: Path) -> None:
    c = controller(tmp_path, fp_max_k_lower=5)
    c.update(0.0)                                          # day: 2 of 3
    changes = []
    for i in range(30):
        c.record_verdict(frozenset(), "audit", "confirmed", 1.0 + i, teacher_flags=("Fall",))
        changes += c.update(1.5 + i)[1]
    assert c.in_force.persistence_k_by_flag == {"fall": 1}   # never below 1
    lowered = [ch for ch in changes if ch.name == "persistence_k[fall]"]
    assert [(ch.old, ch.new) for ch in lowered] == [(2, 1)]
    assert lowered[0].figures["miss_rate"] >= 0.3


def test_low_confidence_dismissals_lower_min_confidence_within_bounds(tmp_path: Path) -> None:
    c = controller(tmp_path)
    c.update(0.0)
    for i in range(60):
        c.record_verdict(frozenset(), "low_confidence", "dismissed", 1.0 + i / 2)
    assert c.update(50.0)[0].thresholds.min_confidence == pytest.approx(0.5 - 3 * 0.05)  # still day
    assert c.feedback["day"][LOW_CONFIDENCE_KEY].offset == 3


def test_unverified_verdicts_and_scene_changes_change_nothing(tmp_path: Path) -> None:
    c = controller(tmp_path)
    c.update(0.0)
    for i in range(20):
        c.record_verdict(frozenset({"fire"}), "safety:fire", "unverified", float(i))
        c.record_verdict(frozenset(), "scene_change", "dismissed", float(i))
    assert c.feedback.get("day", {}) == {}
    assert c.update(30.0)[1] == []


# -- state file ------------------------------------------------------------------------


def test_feedback_survives_a_restart_and_other_cameras_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "cameras": {"other": {"periods": {"day": {"fire": {"offset": 1}}}}}}))
    first = ThresholdController(settings(), "cam", ManualClock(), path)
    first.update(60.0)
    dismiss(first, "fire", 10)
    assert first.save()
    second = ThresholdController(settings(), "cam", ManualClock(), path)
    assert second.state_warning is None
    assert second.update(60.0)[0].persistence_k_by_flag == first.in_force.persistence_k_by_flag == {"fire": 4}
    assert second.feedback["night"]["fire"].verdicts == 10
    stored = json.loads(path.read_text())
    assert set(stored["cameras"]) == {"cam", "other"}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_corrupt_state_file_gives_a_warning_and_defaults(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b'{"version": 1, "cameras": {"cam": ')
    with caplog.at_level(logging.WARNING, logger="edgewatch.thresholds"):
        c = ThresholdController(settings(), "cam", ManualClock(), path)
    assert "unusable" in caplog.text and c.state_warning
    assert c.feedback == {} and c.update(60.0)[0].persistence_k_by_flag == {}
    assert c.save() and json.loads(path.read_text())["version"] == 1


def test_malformed_entries_are_skipped_and_the_rest_loaded(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "cameras": {"cam": {"periods": {"night": {
        "fire": {"dismissal_rate": 0.9, "verdicts": 8, "offset": 1},
        "smoke": {"dismissal_rate": "lots"},
        "fall": {"dismissal_rate": 7.0},
    }}}}}))
    c = ThresholdController(settings(), "cam", ManualClock(), path)
    assert set(c.feedback["night"]) == {"fire"} and "2 malformed" in (c.state_warning or "")
    assert c.update(60.0)[0].persistence_k_by_flag == {"fire": 3}


def test_periodic_save_follows_source_time(tmp_path: Path) -> None:
    c = controller(tmp_path, save_every_s=100)
    c.update(0.0)
    assert not (tmp_path / "state.json").exists()
    c.update(100.0)
    assert (tmp_path / "state.json").exists()


# -- config, command, helpers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("adaptive", "expected"),
    [
        ({"profiles": {"night": {"start": "25:00", "end": "06:00"}}}, "adaptive.profiles.night.start"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"source_start": "yesterday"}, "ISO 8601"),
        ({"load_queue_lower": 0.6, "load_queue_raise": 0.5}, "load_queue_lower (0.6) must be < load_queue_raise (0.5)"),
        ({"profiles": {"dark": {"brightness_min": 10}}}, "go together"),
        ({"profiles": {"default": {}}}, "reserved"),
    ],
)
def test_bad_adaptive_config_names_the_problem(adaptive: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        settings_from_dict({"adaptive": adaptive})


def test_a_profile_whose_k_exceeds_the_merged_n_is_a_config_error(tmp_path: Path) -> None:
    s = settings_from_dict({"adaptive": {"profiles": {"night": {"persistence_k": 5}}}})
    with pytest.raises(ConfigError, match="adaptive.profiles.night"):
        ThresholdController(s, "cam", ManualClock(), tmp_path / "s.json")


def test_thresholds_command_prints_periods_and_feedback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("camera_id: cam\nadaptive:\n  timezone: UTC\n  profiles:\n    night: {start: '22:00', end: '06:00', persistence_k: 3, persistence_n: 4}\n")
    state = tmp_path / "state.json"
    s = settings_from_dict({"camera_id": "cam", "adaptive": {"timezone": "UTC", "profiles": {"night": {"start": "22:00", "end": "06:00", "persistence_k": 3, "persistence_n": 4}}}})
    c = ThresholdController(s, "cam", ManualClock(), state)
    c.update(0.0)
    dismiss(c, "fire", 5)
    c.save()
    assert cmd_thresholds(["--config", str(config), "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "night      22:00-06:00" in out and "persistence 3/4" in out
    assert "fire" in out and "dismissed 1.00 of 5 verdicts" in out
    state.write_text("not json")
    assert cmd_thresholds(["--config", str(config), "--state", str(state), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["state_warning"] and data[0]["feedback"] == {}


def test_mean_luma_tracks_brightness() -> None:
    dark = np.full((48, 64, 3), 10, dtype=np.uint8)
    bright = np.full((48, 64, 3), 200, dtype=np.uint8)
    assert mean_luma(dark) == pytest.approx(10.0, abs=0.5)
    assert mean_luma(bright) == pytest.approx(200.0, abs=0.5)


def test_a_periods_gate_noise_floor_reaches_the_running_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner hands the period's gate_block_min_change to the change gate it is running."""
    import pipeline.camera_pipeline as runner_module
    from helpers_video import numbered_frame, write_video
    from pipeline.frames.gate import ChangeGate
    from pipeline.runner import Runner
    from pipeline.analyzers.backends import select_backends

    seen: list[float] = []

    class RecordingGate(ChangeGate):
        def observe(self, image, timestamp):  # noqa: ANN001, ANN201
            seen.append(self.cfg.block_min_change)
            return super().observe(image, timestamp)

    monkeypatch.setattr(runner_module, "ChangeGate", RecordingGate)
    dark = [(numbered_frame(i) // 8) for i in range(40)]  # mean luma well under 40: the brightness period "night"
    video = write_video(tmp_path / "dark.avi", dark, 10.0)
    s = settings_from_dict({
        "camera_id": "cam",
        "student": {"backend": "offline"}, "teacher": {"backend": "offline"},
        "output": {"out_dir": str(tmp_path / "out")},
        "adaptive": {"period_dwell_s": 0, "brightness_smoothing_s": 0,
                     "profiles": {"night": {"brightness_min": 0, "brightness_max": 40, "gate_block_min_change": 9.0},
                                  "day": {"start": "00:00", "end": "00:00"}}},
    })
    clock = ManualClock()
    Runner(s, select_backends(s, clock), clock=clock).run(str(video))
    assert seen[0] == s.gate.block_min_change == 4.0
    assert seen[-1] == 9.0
    lines = [json.loads(x) for x in (tmp_path / "out" / "decisions.jsonl").read_text().splitlines()]
    assert any(x.get("name") == "gate_block_min_change" and x.get("new") == 9.0 for x in lines)


def test_a_verdict_submitted_from_another_thread_is_counted_and_saved_at_the_next_update(tmp_path: Path) -> None:
    import json
    import threading

    c = controller(tmp_path)
    c.update(60.0)                                         # night
    worker = threading.Thread(target=c.submit_verdict, args=(("fall",), "safety:fall", "dismissed"))
    worker.start()
    worker.join()
    assert "fall" not in c.feedback.get("night", {})       # nothing counted off the runner's thread
    c.update(61.0)
    assert (c.feedback["night"]["fall"].verdicts, c.feedback["night"]["fall"].dismissal_rate) == (1, 1.0)
    saved = json.loads((tmp_path / "state.json").read_text())
    assert saved["cameras"]["cam"]["periods"]["night"]["fall"]["verdicts"] == 1
