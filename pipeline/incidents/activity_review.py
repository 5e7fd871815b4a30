"""What a teacher's look says about the camera's person/vehicle activity events.

Every verdict comes with the teacher's observations of the keyframes it saw, whatever the
question was (a fall, a cut, an audit).  Those observations also say whether a person or a
vehicle is in view, so each look reviews the open activity events for free:

* **A dismissal covers what the teacher saw.**  An activity event of a kind the student named
  on a keyframe the teacher saw, and the teacher's observations do not name, is dismissed (the
  simulated student's phantom person on a fire; a real student's "person" that is a coat on a
  chair).  The event stays open and dismissed while the student goes on reporting that kind,
  so a run of the same phantom is one dismissed event, not a stream of new ones.
* **Positive evidence re-opens.**  When a later look *does* show that kind, the dismissed event
  ends and a new, confirmed event of the kind opens: the teacher has now seen it.  A look that
  shows the kind confirms an open event not yet reviewed.
* **An unverified verdict says nothing** (no answer, or one that contradicts itself).

The decision is pure (`activity_looks`); `review_activity` applies it to an `EventBook`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.incidents.evidence import activity_kinds
from pipeline.incidents.events import EventBook, OpenEvent, Review
from pipeline.records import Escalation, Verdict, VerdictKind

#: Activity kinds whose events a teacher's look reviews (motion is no claim about what moves).
REVIEWED_KINDS = frozenset({"person", "vehicle"})

#: Two timestamps closer than this are the same frame (keyframes and reports carry the frame's time).
SAME_FRAME_S = 1e-3


@dataclass(frozen=True, slots=True)
class ActivityLook:
    """What one verdict says about one activity kind: ``shown`` or not, on frames up to ``until``."""

    kind: str
    shown: bool
    until: float
    """Source time of the newest keyframe the teacher saw with this kind in question."""


def activity_looks(escalation: Escalation, verdict: Verdict) -> tuple[ActivityLook, ...]:
    """Per kind: shown when the teacher's observations name it; not shown when the student named it
    on a keyframe the teacher saw and the teacher's observations do not.  Kinds neither named are
    not looked at (a teacher asked about a fire on an empty street says nothing about people)."""
    if verdict.kind == VerdictKind.UNVERIFIED or not escalation.keyframes:
        return ()
    key_times = [k.timestamp for k in escalation.keyframes]
    newest = max(key_times)
    teacher = activity_kinds(verdict.observations) & REVIEWED_KINDS
    student: dict[str, float] = {}
    for report in escalation.timeline:
        if not any(abs(report.timestamp - k) <= SAME_FRAME_S for k in key_times):
            continue
        for kind in activity_kinds(report.observations) & REVIEWED_KINDS:
            student[kind] = max(student.get(kind, report.timestamp), report.timestamp)
    looks = [ActivityLook(kind, True, newest) for kind in sorted(teacher)]
    looks += [ActivityLook(kind, False, until) for kind, until in sorted(student.items()) if kind not in teacher]
    return tuple(looks)


def _open_of_kind(book: EventBook, kind: str) -> list[OpenEvent]:
    events = [book.activity] if book.activity is not None and book.activity.type == kind else []
    return events + [ev for k, ev in book.alongside.items() if k == kind]


def review_activity(book: EventBook, looks: Iterable[ActivityLook], t: float, why: str) -> None:
    """Apply ``looks`` to the open activity events of ``book`` at source time ``t`` (module doc)."""
    for look in looks:
        for ev in _open_of_kind(book, look.kind):
            if not look.shown:
                if ev.review == Review.NOT_REVIEWED and ev.start <= look.until + SAME_FRAME_S:
                    book.review(ev, Review.DISMISSED, f"{why}: no {look.kind} on the keyframes the teacher saw")
            elif ev.review == Review.DISMISSED:
                reason = f"{why}: the teacher sees a {look.kind} after dismissing {ev.id}"
                if ev is book.activity:
                    book.end_activity(t, reason)
                    book.open_activity(look.kind, t, t, (), ev.peak_confidence, reason, previous_id=ev.id,
                                       review=Review.CONFIRMED)
                else:
                    book.end_alongside(look.kind, t, reason)
                    book.open_alongside(look.kind, t, ev.peak_confidence, reason, review=Review.CONFIRMED)
            elif ev.review == Review.NOT_REVIEWED:
                book.review(ev, Review.CONFIRMED, f"{why}: the teacher sees a {look.kind}")


__all__ = ["ActivityLook", "REVIEWED_KINDS", "activity_looks", "review_activity"]
