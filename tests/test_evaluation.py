"""Evaluation harness: matching, each metric on hand-made outcomes, baselines, and the command."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from tools.baselines import ConfidenceOnly, NeverEscalate
from pipeline.incidents.escalation import QueueState
from tools.evaluation import (
    POLICIES,
    ClipScore,
    Detection,
    RunRecord,
    aggregate,
    alerted_types,
    dominated,
    detections_from_events,
    match_events,
    pooled_metrics,
    sample_grid,
    score_clip,
)
from tools.labels import ClipLabels, LabelledEvent
from pipeline.records import Priority, WindowStats

ROOT = Path(__file__).resolve().parent.parent
FALL = LabelledEvent("fall", 10.0, 20.0)
PERSON = LabelledEvent("person", 5.0, 25.0)


def det(kind: str, start: float, end: float, severity: str = "alert", review: str = "not_reviewed", id: str | None = None) -> Detection:
    return Detection(id or f"{kind}-{start}", kind, severity, start, end, review)


def test_events_fold_into_detections_with_final_type_and_review() -> None:
    lines = [
        {"id": "a", "type": "motion", "severity": "activity", "phase": "new", "start": 3.0, "end": None},
        {"id": "a", "type": "person", "severity": "activity", "phase": "update", "start": 3.0, "end": None},
        {"id": "b", "type": "fire", "severity": "alert", "phase": "new", "start": 4.0, "end": None, "review": "pending_review"},
        {"id": "b", "type": "fire", "severity": "alert", "phase": "end", "start": 4.0, "end": 6.5, "review": "dismissed"},
    ]
    a, b = detections_from_events(lines)
    assert (a.type, a.start, a.end) == ("person", 3.0, math.inf)
    assert (b.type, b.end, b.dismissed) == ("fire", 6.5, True)
    assert a.counts and not b.counts and b.shown


@pytest.mark.parametrize(
    ("detection", "found"),
    [
        (det("fall", 12.0, 14.0), True),          # inside
        (det("fall", 21.5, 30.0), True),          # starts after the end, within the 2 s tolerance
        (det("fall", 22.5, 30.0), False),         # beyond the tolerance
        (det("fall", 2.0, 8.5), True),            # ends before the start, within tolerance
        (det("fire", 12.0, 14.0), False),         # wrong type
        (det("fall", 12.0, 14.0, review="dismissed"), False),  # the teacher dismissed it
        (det("fall", 12.0, 14.0, review="confirmed"), True),
    ],
)
def test_event_matching_overlap_tolerance_type(detection: Detection, found: bool) -> None:
    result = match_events([FALL], [detection], tolerance_s=2.0)
    assert (0 in result.found) is found


def test_activity_matches_person_but_motion_does_not_count() -> None:
    person = det("person", 6.0, 9.0, severity="activity")
    motion = det("motion", 6.0, 9.0, severity="activity")
    result = match_events([PERSON], [person, motion], tolerance_s=0.0)
    assert result.found[0] == person and result.counted == 1


def test_score_clip_counts_on_a_hand_made_outcome() -> None:
    clip = ClipLabels("c.mp4", 40.0, (PERSON, FALL, LabelledEvent("fire", 30.0, 35.0)), quiet=((0.0, 4.0),))
    detections = [
        det("person", 6.0, 24.0, severity="activity"),
        det("fall", 13.0, 22.0),                       # found, 3 s late
        det("smoke", 31.0, 33.0),                      # a false alert: fire missed
        det("fire", 1.0, 2.0, review="dismissed"),     # dismissed: not a detection, but shown at t in [1, 2)
    ]
    grid = [1.0, 3.0, 11.0, 15.0, 32.0]
    score = score_clip(clip, detections, grid, tolerance_s=1.0)
    assert (score.events, score.found) == (3, 2)
    assert (score.safety_events, score.safety_found) == (2, 1)
    assert (score.detections, score.true_detections) == (3, 2)
    assert score.alert_delays == [3.0]
    # t=1: shows fire (dismissed later) vs nothing -> wrong; t=3 right; t=11 fall missing -> wrong;
    # t=15 right; t=32 smoke instead of fire -> wrong.
    assert (score.frames, score.frames_correct) == (5, 2)
    assert alerted_types(detections, 15.0) == {"fall"}


def test_sample_grid_keeps_labelled_instants_away_from_safety_edges() -> None:
    clip = ClipLabels("c.mp4", 30.0, (FALL,), quiet=((0.0, 8.0), (22.0, 30.0)))
    grid = sample_grid(clip, 1.0, margin_s=2.0)
    assert 9.0 not in grid and 12.0 not in grid and 13.0 in grid and 8.0 not in grid and 7.0 in grid
    assert 23.0 in grid and 22.0 not in grid and 30.0 in grid


def _record(policy: str, seed: int, *, found: int, safety_found: set[int], frames_correct: int, teacher_frames: int,
            delays: list[float], clip: str = "c.mp4") -> RunRecord:
    score = ClipScore(events=4, found=found, safety_events=2, safety_found=len(safety_found), detections=5,
                      true_detections=4, frames=10, frames_correct=frames_correct,
                      safety_delays=dict(zip(sorted(safety_found), delays)))
    return RunRecord(policy, policy, clip, seed, score, analysed=20, student_calls=20, teacher_calls=2,
                     teacher_images=6, teacher_frames=teacher_frames, student_ms=2200.0, teacher_ms=1640.0,
                     escalations=2, out_dir="", reference_frames=20)


def test_pooled_metrics_and_spread_over_seeds() -> None:
    records = [
        _record("teacher_only", 0, found=4, safety_found={0, 1}, frames_correct=10, teacher_frames=20, delays=[0.5, 0.5]),
        _record("ours", 0, found=3, safety_found={0}, frames_correct=9, teacher_frames=3, delays=[1.0]),
        _record("teacher_only", 1, found=4, safety_found={0, 1}, frames_correct=8, teacher_frames=20, delays=[0.5, 0.5]),
        _record("ours", 1, found=4, safety_found={0, 1}, frames_correct=8, teacher_frames=1, delays=[2.0, 4.0]),
    ]
    m = pooled_metrics(records[1:2], records[0:1])
    assert m["event_recall"] == 0.75 and m["precision"] == 0.8 and m["safety_recall"] == 0.5
    assert m["missed_vs_teacher_only"] == 1.0 and m["frame_accuracy"] == 0.9
    assert m["teacher_share"] == 3 / 20 and m["time_to_alert_s"] == 1.0 and m["compute_s"] == pytest.approx(3.84)
    agg = aggregate(records, [0, 1])
    ours = agg["ours"]
    assert ours["frame_accuracy"]["mean"] == pytest.approx(0.85) and ours["frame_accuracy"]["n"] == 2
    assert ours["missed_vs_teacher_only"]["mean"] == 0.5
    assert ours["accuracy_vs_teacher_only"]["mean"] == pytest.approx((0.9 / 1.0 + 0.8 / 0.8) / 2)
    assert ours["time_to_alert_s"]["min"] == 1.0 and ours["time_to_alert_s"]["max"] == 3.0


def _stats(confidence: float) -> WindowStats:
    return WindowStats(camera="cam", timestamp=1.0, window_s=10.0, n_reports=1, flag_streak={}, flips={},
                       confidence_mean=confidence, confidence_last=confidence, active_flags=frozenset({"fire"}), observations=())


def test_baseline_policies() -> None:
    queue = QueueState(depth=0, capacity=10)
    assert not NeverEscalate().evaluate(_stats(0.1), queue).escalate
    naive = ConfidenceOnly(0.72)
    low = naive.evaluate(_stats(0.5), queue)
    assert low.escalate and low.priority == Priority.LOW_CONFIDENCE and low.flags == {"fire"}
    assert not naive.evaluate(_stats(0.9), queue).escalate
    naive.suppress({"fire"}, 100.0, reason="low_confidence_frame")
    assert naive.evaluate(_stats(0.5), queue).escalate  # no memory: suppression does nothing
    assert naive.thresholds_in_force()["min_confidence"] == 0.72


def _cli(*args: str, timeout: float = 170.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "run_camera.py"), "evaluate", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_evaluate_command_on_the_demo_fixture_reports_every_policy(tmp_path: Path) -> None:
    proc = _cli("--pair", "simulated", "--seeds", "0", "--out", str(tmp_path / "eval"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table_rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| policy")]
    assert {row.split("|")[1].strip() for row in table_rows} == set(POLICIES)
    assert proc.stdout.count("| policy | event F1 (safety 3x)") == 2  # informativeness 0 and 0.5
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["pair"] == "simulated" and set(report["aggregates"]) == set(POLICIES)
    points = report["points"]
    assert {(p["policy"], p["informativeness"]) for p in points} == {(p, i) for p in POLICIES for i in (0.0, 0.5)}
    for p in points:
        assert set(p) == {"policy", "setting", "informativeness", "model_seconds", "event_f1", "safety_recall", "time_to_alert_s"}
        assert p["model_seconds"] > 0
    cost = {p["policy"]: p["model_seconds"] for p in points if p["informativeness"] == 0.0}
    assert cost["teacher_only"] > cost["ours"] > cost["student_only"]
    assert "simulated pair" in (tmp_path / "eval" / "report.md").read_text()
    for policy in POLICIES:
        assert report["aggregates"][policy]["frame_accuracy"]["n"] == 1
    teacher_only = report["aggregates"]["teacher_only"]
    assert teacher_only["student_calls"]["mean"] == 0 and teacher_only["teacher_calls"]["mean"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--policies", "ours,magic"], "unknown policy 'magic'"),
        (["--seeds", "a,b"], "--seeds"),
        (["--clips", "/nonexistent/clips"], "folder not found"),
        (["--pair", "offline", "--sweep", "models"], "--pair simulated"),
    ],
)
def test_evaluate_command_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    proc = _cli(*args, "--out", str(tmp_path / "e"), timeout=60.0)
    assert proc.returncode == 2
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_event_f1_weighs_safety_events_and_alerts_three_times() -> None:
    from tools.evaluation import ClipScore, RunRecord, per_type_event_f1, weighted_event_f1

    score = ClipScore()
    score.by_type = {"fire": [2, 2, 2, 2], "person": [4, 2, 2, 2], "fall": [0, 0, 3, 0]}
    record = RunRecord("ours", "ours", "c", 0, score, 0, 0, 0, 0, 0, 0.0, 0.0, 0, "")
    # Weighted events: fire 3x2 found of 3x2, person 2 of 4 -> recall 8/10; weighted detections:
    # fire 6 true of 6, person 2 of 2, three phantom falls 0 of 9 -> precision 8/17.
    recall, precision = 8 / 10, 8 / 17
    assert weighted_event_f1([record]) == pytest.approx(2 * recall * precision / (recall + precision))
    # The per-type mean (report.json only): fire F1 1.0 (weight 3), person 2/3 (1), phantom fall 0 (3).
    assert per_type_event_f1([record]) == pytest.approx((3 * 1.0 + 1 * (2 / 3) + 0.0) / 7)


def test_cost_model_charges_calls_images_and_tokens() -> None:
    from pipeline.config.cost import CostConfig

    cost = CostConfig()
    assert cost.student_s(1, 1) == pytest.approx(0.110)
    assert cost.teacher_s(1, 1) == pytest.approx(0.820)
    assert cost.teacher_s(1, 6) == pytest.approx(0.540 + 6 * 0.280)
    assert cost.teacher_s(1, 1, tokens=40) == pytest.approx(0.820 + 40 * 0.025)


def test_referee_scores_like_real_clips() -> None:
    from tools import referee
    from tools.labels import ClipLabels, LabelledEvent

    clip = ClipLabels(file="c.mp4", duration_s=30.0, events=(LabelledEvent("fall", 10.0, 11.0), LabelledEvent("person", 0.0, 20.0)),
                      quiet=((22.0, 30.0),))
    lines = referee.event_lines([
        {"id": "a", "type": "person", "flags": [], "start": 1.0, "end": 19.0},
        {"id": "b", "type": "motion", "flags": ["fall"], "start": 12.5, "end": None},   # 1.5 s after the end: found
        {"id": "c", "type": "fire", "flags": ["fire"], "start": 25.0, "end": 26.0},     # wrong, and in a quiet interval
        {"id": "d", "type": "fall", "flags": [], "start": 8.0},                         # 2 s early: too early, wrong
    ])
    s = referee.score(clip, lines)
    assert s.found == {"fall": 1, "person": 1} and s.total == {"fall": 1, "person": 1}
    assert s.wrong_safety == {"fire": 1, "fall": 1}
    assert s.quiet_alarmed == 1 and s.quiet_intervals == 1
    assert s.ids["fall"] == 2 and s.true_ids["fall"] == 1
    assert "| ours | fall | 1 / 1 | 100% | 50% | 1 |" in referee.per_type_table({"ours": s})


def test_alerting_no_later_is_judged_on_the_events_both_found() -> None:
    # Ours finds both events (the second one late); the baseline finds only the easy one, sooner
    # than ours' own mean but no sooner on that same event.
    ours = _record("ours", 0, found=4, safety_found={0, 1}, frames_correct=9, teacher_frames=3, delays=[0.2, 3.0])
    base = _record("confidence_only", 0, found=3, safety_found={0}, frames_correct=9, teacher_frames=9, delays=[0.2])
    agg = aggregate([ours, base], [0])
    for name, cost in (("ours", 1.0), ("confidence_only", 2.0)):
        agg[name]["model_seconds"], agg[name]["event_f1"] = {"mean": cost}, {"mean": 0.9}
    assert agg["ours"]["time_to_alert_s"]["mean"] > agg["confidence_only"]["time_to_alert_s"]["mean"]
    assert dominated(agg["confidence_only"], agg["ours"])
    slow = _record("ours", 0, found=4, safety_found={0, 1}, frames_correct=9, teacher_frames=3, delays=[0.7, 3.0])
    agg = aggregate([slow, base], [0])
    for name, cost in (("ours", 1.0), ("confidence_only", 2.0)):
        agg[name]["model_seconds"], agg[name]["event_f1"] = {"mean": cost}, {"mean": 0.9}
    assert not dominated(agg["confidence_only"], agg["ours"])  # later on the event both found
