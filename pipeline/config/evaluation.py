"""`evaluation:` the simulated models used only to compare routing policies."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class EvaluationConfig(Section):
    """Parameters of the *simulated* student/teacher used only by `evaluate` to compare routing policies."""

    student_accuracy: float = Field(0.68, ge=0.0, le=1.0, description="Simulated student: share of right answers on labelled edge cases (frames inside a labelled event or decoy).")
    teacher_accuracy: float = Field(0.94, ge=0.0, le=1.0, description="Simulated teacher: share of right answers on labelled edge cases.")
    student_calm_accuracy: float = Field(0.95, ge=0.0, le=1.0, description="Simulated student: share of right answers on frames where nothing is labelled.")
    teacher_calm_accuracy: float = Field(0.99, ge=0.0, le=1.0, description="Simulated teacher: share of right answers on frames where nothing is labelled.")
    error_burst_s: float = Field(3.0, ge=0.0, le=600, description="Correlation time (source seconds) of the simulated models' errors: errors come in bursts of about this length; 0 = independent per frame.")
    confidence_informativeness: float = Field(0.0, ge=0.0, le=1.0, description="0: wrong answers carry confidence from the same distribution as right ones (overconfident); 1: wrong answers always carry the low-confidence distribution.")
    student_latency_ms: float = Field(110.0, ge=0.0, le=600000, description="Latency reported (not slept) per simulated student call.")
    teacher_latency_ms: float = Field(820.0, ge=0.0, le=600000, description="Latency reported (not slept) per simulated teacher call.")
    match_tolerance_s: float = Field(2.0, ge=0.0, le=3600, description="An alert (or activity event) matches a labelled event of its type when it overlaps the event widened by this much on both sides.")
