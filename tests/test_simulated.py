"""Simulated models: configured accuracy on a large synthetic run, bursts, overconfidence, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from tools.simulated import SimulatedStudent, SimulatedTeacher, error_model
from pipeline.config.evaluation import EvaluationConfig
from pipeline.config.settings import Settings
from pipeline.clock import ManualClock
from pipeline.errors import ConfigError
from tools.labels import ClipLabels, LabelledEvent
from pipeline.records import Escalation, Frame, GateDecision, GateReason, EncodedFrame, Priority, VerdictKind

#: One hour: a fall every 40 s lasting 20 s (half the frames are edge cases).
LONG = ClipLabels("long.mp4", 3600.0, tuple(LabelledEvent("fall", s, s + 20.0) for s in range(0, 3600, 40)))
TIMES = np.arange(0.0, 3600.0, 0.5)


def _rates(cfg: EvaluationConfig, role: str, seed: int = 3) -> tuple[float, float]:
    model = error_model(LONG, cfg, seed=seed, role=role)  # type: ignore[arg-type]
    edge = [model.answer(t).correct for t in TIMES if LONG.is_edge_case(t)]
    calm = [model.answer(t).correct for t in TIMES if not LONG.is_edge_case(t)]
    return float(np.mean(edge)), float(np.mean(calm))


@pytest.mark.parametrize("burst_s, tolerance", [(0.0, 0.02), (3.0, 0.05)])
def test_models_reproduce_their_configured_accuracy(burst_s: float, tolerance: float) -> None:
    cfg = EvaluationConfig(error_burst_s=burst_s)
    s_edge, s_calm = _rates(cfg, "student")
    t_edge, t_calm = _rates(cfg, "teacher")
    assert abs(s_edge - cfg.student_accuracy) < tolerance
    assert abs(s_calm - cfg.student_calm_accuracy) < tolerance
    assert abs(t_edge - cfg.teacher_accuracy) < tolerance
    assert abs(t_calm - cfg.teacher_calm_accuracy) < tolerance


def _mean_error_run(cfg: EvaluationConfig) -> float:
    model = error_model(LONG, cfg, seed=5, role="student")
    wrong = [not model.answer(t).correct for t in TIMES]
    runs, current = [], 0
    for w in wrong:
        if w:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return float(np.mean(runs))


def test_errors_are_bursty_only_when_configured() -> None:
    assert _mean_error_run(EvaluationConfig(error_burst_s=0.0)) < 2.0
    assert _mean_error_run(EvaluationConfig(error_burst_s=3.0)) > 3.0


def test_confidence_is_overconfident_by_default_and_informative_when_asked() -> None:
    def gap(informativeness: float) -> float:
        model = error_model(LONG, EvaluationConfig(confidence_informativeness=informativeness), seed=1, role="student")
        answers = [model.answer(t) for t in TIMES]
        right = np.mean([a.confidence for a in answers if a.correct])
        wrong = np.mean([a.confidence for a in answers if not a.correct])
        return float(right - wrong)

    assert abs(gap(0.0)) < 0.02
    assert gap(1.0) > 0.2


def test_wrong_answers_differ_from_the_truth_and_seeds_are_deterministic() -> None:
    cfg = EvaluationConfig()
    a = error_model(LONG, cfg, seed=7, role="student")
    b = error_model(LONG, cfg, seed=7, role="student")
    c = error_model(LONG, cfg, seed=8, role="student")
    for t in TIMES[:2000]:
        ans = a.answer(t)
        assert (ans.types == ans.truth) == ans.correct
        assert ans == b.answer(t)
    assert any(a.answer(t) != c.answer(t) for t in TIMES[:2000])


def _item(t: float) -> EncodedFrame:
    frame = Frame("cam", int(t * 10), t, np.zeros((8, 8, 3), np.uint8))
    return EncodedFrame(frame, b"", "", 8, 8, GateDecision(True, GateReason.CHANGE, 0.0))


def test_student_reports_and_teacher_verdicts() -> None:
    clip = ClipLabels("c.mp4", 60.0, (LabelledEvent("fire", 10.0, 30.0), LabelledEvent("person", 0.0, 60.0)))
    perfect = EvaluationConfig(student_accuracy=1.0, student_calm_accuracy=1.0, teacher_accuracy=1.0, teacher_calm_accuracy=1.0)
    student = SimulatedStudent(clip, perfect, seed=0)
    report = student.analyze(_item(20.0))
    assert report.backend == "simulated" and report.safety_flags == ("fire",) and "person walking" in report.observations
    assert report.latency_ms == perfect.student_latency_ms
    teacher = SimulatedTeacher(clip, perfect, seed=0)

    def esc(flags: set[str], times: list[float]) -> Escalation:
        return Escalation("e1", "cam", "i1", "safety:fire", Priority.SAFETY, max(times, default=0.0), frozenset(flags),
                          tuple(_item(t) for t in times), ())

    assert teacher.review(esc({"fire"}, [18.0, 19.0, 20.0])).kind == VerdictKind.CONFIRMED
    assert teacher.review(esc({"fire"}, [40.0, 41.0, 42.0])).kind == VerdictKind.DISMISSED
    calm = teacher.review(esc(set(), [40.0, 41.0]))
    assert calm.kind == VerdictKind.CONFIRMED and calm.safety_flags == ()
    assert teacher.review(esc({"fire"}, [])).kind == VerdictKind.UNVERIFIED


def test_monitoring_refuses_the_simulated_backend() -> None:
    from pipeline.analyzers.backends import select_backends

    settings = Settings.model_validate({"student": {"backend": "simulated"}})
    with pytest.raises(ConfigError, match="simulated"):
        select_backends(settings, ManualClock())
