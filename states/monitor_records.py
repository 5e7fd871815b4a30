"""What the monitor hands out and keeps: one call's output (`MonitorOutput`), an escalation awaiting
its verdict (`PendingEscalation`) and a verdict as the monitor reads it (`VerdictContext`)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.incidents.events import fold
from pipeline.records import Event, Transition, Verdict


@dataclass(frozen=True, slots=True)
class MonitorOutput:
    """What one call produced: the transitions taken and the event lines to write."""

    transitions: tuple[Transition, ...] = ()
    events: tuple[Event, ...] = ()

    def then(self, later: MonitorOutput) -> MonitorOutput:
        """This output followed by ``later`` (of the same frame): one line per event change (`events.fold`)."""
        return MonitorOutput(self.transitions + later.transitions, fold(self.events + later.events))


@dataclass(frozen=True, slots=True)
class PendingEscalation:
    """An escalation sent to the teacher whose verdict has not come back."""

    escalation_id: str
    incident_id: str
    reason: str
    flags: frozenset[str]
    safety: bool

    @property
    def why(self) -> str:
        return f"escalated {self.escalation_id} to the teacher for {'safety' if self.safety else 'review'}: {self.reason}"


@dataclass(frozen=True, slots=True)
class VerdictContext:
    """A verdict as the monitor reads it."""

    verdict: Verdict
    escalation_ids: frozenset[str]
    """The escalations it resolves (its own and the incident's others still waiting)."""
    teacher_flags: frozenset[str]
    alert_types: tuple[str, ...]
    """Safety types to alert on: the escalation's and the teacher's (less those already reported)."""
    why: str
    seen_until: float | None = None
    """Source time of the last frame the teacher was shown, when known."""
