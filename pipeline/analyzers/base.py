"""What every analyzer answers: a student reports on one frame, a teacher rules on a sequence."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pipeline.records import EncodedFrame, Escalation, FrameReport, Verdict


@runtime_checkable
class Student(Protocol):
    """Analyses one encoded frame and returns a `FrameReport` (never raises for a model failure:
    a failed analysis is `FrameReport.failed(...)`)."""

    backend: str
    model: str
    prompt_version: str

    def analyze(self, item: EncodedFrame) -> FrameReport: ...

    def close(self) -> None: ...


@runtime_checkable
class Teacher(Protocol):
    """Reviews an escalated sequence and returns a `Verdict` (``unverified`` when it could not decide)."""

    backend: str
    model: str

    def review(self, escalation: Escalation) -> Verdict: ...

    def close(self) -> None: ...


def crash_report(student: Student, item: EncodedFrame, exc: BaseException) -> FrameReport:
    """The failed report for a student that raised (it must not): the frame still gets an honest
    report — confidence 0, flag ``model_error`` — that counts toward escalation."""
    return FrameReport.failed(
        frame=item.frame,
        backend=student.backend,
        model=student.model,
        prompt_version=student.prompt_version,
        latency_ms=0.0,
        error=f"student crashed: {exc.__class__.__name__}: {exc}",
    )
