"""What a run cost: calls, images and model-seconds, read from its decision log.

The decision log is read through `pipeline.sinks.decision_log.read_decisions` (the one reader):
each analysed frame is a `FrameDecision` (the model in the student's slot answered it), each
teacher review an `EscalationSent` (its keyframes) answered by a `VerdictReceived`.  The cost
model (`Settings.cost`) charges per call, per image and per reported output token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.config.cost import CostConfig
from pipeline.sinks.decision_log import EscalationSent, FrameDecision, VerdictReceived


@dataclass(frozen=True, slots=True)
class RunCosts:
    analysed: int
    """Frames the model in the student's slot answered."""
    slot_ms: float
    """Summed latency of those answers (measured, or the simulated models' configured figure)."""
    slot_tokens: float
    escalations: int
    verdicts: int
    reviewed_images: int
    """Keyframes of the escalations the teacher answered (a frame in two sequences counts twice)."""
    teacher_frames: int
    """Distinct frames the teacher saw in its reviews."""
    verdict_ms: float
    verdict_tokens: float


def run_costs(decisions: Iterable[object]) -> RunCosts:
    """Count one run's calls, images, latencies and output tokens from its decision records."""
    analysed, slot_ms, slot_tokens = 0, 0.0, 0.0
    keyframes: dict[str, list[float]] = {}
    verdicts: list[VerdictReceived] = []
    for record in decisions:
        if isinstance(record, FrameDecision):
            student = record.student or {}
            analysed += 1
            slot_ms += float(student.get("latency_ms", 0.0))
            slot_tokens += float((student.get("timings") or {}).get("eval_count", 0.0))
        elif isinstance(record, EscalationSent):
            keyframes[record.id] = list(record.keyframes or [])
        elif isinstance(record, VerdictReceived):
            verdicts.append(record)
    reviewed = [keyframes.get(v.escalation_id or "", []) for v in verdicts]
    return RunCosts(
        analysed=analysed, slot_ms=slot_ms, slot_tokens=slot_tokens, escalations=len(keyframes), verdicts=len(verdicts),
        reviewed_images=sum(len(k) for k in reviewed),
        teacher_frames=len({round(float(t), 3) for k in reviewed for t in k}),
        verdict_ms=sum(float(v.verdict.get("latency_ms", 0.0)) for v in verdicts),
        verdict_tokens=sum(float((v.verdict.get("timings") or {}).get("eval_count", 0.0)) for v in verdicts),
    )


def model_seconds(costs: RunCosts, cost: CostConfig, *, teacher_slot: bool, slot_images: int) -> float:
    """Model-seconds of a run: the teacher's reviews, plus the slot's calls charged at the rate of
    the model in it (the teacher for teacher-only and fixed interval, else the student)."""
    reviews = cost.teacher_s(costs.verdicts, costs.reviewed_images, costs.verdict_tokens)
    if teacher_slot:
        return reviews + cost.teacher_s(costs.analysed, slot_images, costs.slot_tokens)
    return reviews + cost.student_s(costs.analysed, costs.analysed, costs.slot_tokens)


__all__ = ["RunCosts", "model_seconds", "run_costs"]
