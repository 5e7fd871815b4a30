"""Baseline routing policies with the `EscalationPolicy` interface, for `evaluate` only.

Each has ``evaluate(stats, queue_state, unreviewed) -> Decision``, ``suppress(flags, until, reason=None)``,
``cover(coverage)`` and ``thresholds_in_force() -> dict``, so the runner drives them exactly as it drives ours
(`Runner(..., policy_factory=...)`).  Monitoring always uses `pipeline.incidents.escalation.EscalationPolicy`.
"""

from __future__ import annotations

from typing import Any, Iterable

from pipeline.incidents.escalation import Decision, QueueState
from pipeline.incidents.verdicts import Coverage
from pipeline.records import Priority, WindowStats


class NeverEscalate:
    """Never asks the teacher: alerts come from the monitor's k-of-n persistence alone.

    Used for student-only, and for the runs where the teacher itself sits in the student's
    slot (teacher-only, fixed-interval): there is nobody further to escalate to.
    """

    name = "never"

    def __init__(self) -> None:
        self.decisions = 0

    def evaluate(self, stats: WindowStats, queue: QueueState, unreviewed: frozenset[str] = frozenset()) -> Decision:
        self.decisions += 1
        return Decision(False, "never_escalates", None, frozenset())

    def suppress(self, flags: Iterable[str], until: float, reason: str | None = None) -> None:
        return None

    def cover(self, coverage: Coverage) -> None:
        return None

    def thresholds_in_force(self) -> dict[str, Any]:
        return {"policy": self.name}


class ConfidenceOnly:
    """The naive router: every single frame whose confidence is below ``min_confidence`` goes
    to the teacher on its own — no persistence, no sequence, no cool-off, no suppression."""

    name = "confidence_only"

    def __init__(self, min_confidence: float) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in 0..1 (got {min_confidence})")
        self.min_confidence = min_confidence
        self.decisions = 0
        self.escalations = 0

    def evaluate(self, stats: WindowStats, queue: QueueState, unreviewed: frozenset[str] = frozenset()) -> Decision:
        self.decisions += 1
        if stats.n_reports and stats.confidence_last < self.min_confidence:
            self.escalations += 1
            return Decision(True, "low_confidence_frame", Priority.LOW_CONFIDENCE, stats.active_flags,
                            {"confidence": round(stats.confidence_last, 4)})
        return Decision(False, "calm", None, stats.active_flags)

    def suppress(self, flags: Iterable[str], until: float, reason: str | None = None) -> None:
        return None  # the naive policy has no memory

    def cover(self, coverage: Coverage) -> None:
        return None

    def thresholds_in_force(self) -> dict[str, Any]:
        return {"policy": self.name, "min_confidence": self.min_confidence}
