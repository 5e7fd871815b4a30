"""The offline teacher names a hazard in its observations only when its verdict asserts it: the pipeline
reads hazard words in a verdict's observations as flags (raise, never clear), so a note about weak
evidence must not become an alert."""

from __future__ import annotations

from pipeline.analyzers import offline_teacher as teacher_module
from pipeline.analyzers.offline import OfflineTeacher
from pipeline.clock import ManualClock
from pipeline.config.offline import OfflineConfig
from pipeline.incidents.evidence import match_safety
from pipeline.records import SAFETY_FLAGS

from test_offline_analyzer import escalation, scene


def test_weak_evidence_stays_in_the_explanation_not_in_the_observations(monkeypatch) -> None:  # noqa: ANN001
    def weak_smoke(frames, motions, ev):  # noqa: ANN001, ANN202 - held, but below the teacher's own bar
        ev.hold("smoke", teacher_module.OWN_FLAG_STRENGTH - 0.15, "smoke rising", "Smoke: a faint grey veil.")

    monkeypatch.setattr(teacher_module, "_smoke", weak_smoke)
    teacher = OfflineTeacher(OfflineConfig(), [], ManualClock())
    verdict = teacher.review(escalation(scene(), [0.0, 0.5, 1.0, 1.5], set(), reason="audit"))
    assert "smoke" not in verdict.safety_flags
    assert not match_safety((), verdict.observations, SAFETY_FLAGS), verdict.observations
    assert "faint grey veil" in verdict.explanation


def test_strong_evidence_is_asserted_and_named(monkeypatch) -> None:  # noqa: ANN001
    def strong_smoke(frames, motions, ev):  # noqa: ANN001, ANN202
        ev.hold("smoke", 0.95, "smoke rising", "Smoke: rising and spreading.")

    monkeypatch.setattr(teacher_module, "_smoke", strong_smoke)
    teacher = OfflineTeacher(OfflineConfig(), [], ManualClock())
    verdict = teacher.review(escalation(scene(), [0.0, 0.5, 1.0, 1.5], set(), reason="audit"))
    assert "smoke" in verdict.safety_flags and "smoke rising" in verdict.observations
