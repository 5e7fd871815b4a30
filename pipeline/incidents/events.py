"""The event lifecycle: how an event opens, changes and ends, and how its review may move.

An event is one thing that happened on one camera: activity (``person``, ``vehicle``, ``motion``)
or an alert (a safety type).  Its lines in ``events.jsonl`` share an id: ``new`` once, ``update``
whenever what the log says about it changes, ``end`` once.  The monitor (`states.monitor`)
decides *when*; this module is *what* each of those moves writes.

* **Ids are unique across runs and restarts** (`EventIds`): ``{camera}-{start in ms}-{6 base32}``,
  the event's source time plus a random suffix (injectable, so tests are deterministic).
* **An event keeps its type.**  Activity first seen as motion and then as a person is a new
  ``person`` event whose ``previous_id`` names the motion event, which ends there.
* **A review moves only forward** (`advance_review`): not_reviewed → pending_review →
  unverified → dismissed or confirmed; dismissed and confirmed are final.
* **An event ends when it was last seen**: the ``end`` line is written when the monitor closes
  the event (its reason says why: quiet for ``quiet_after_s``, input ended, a new type), but its
  ``end`` is the source time of the last report that showed it, so the log never claims a fire
  burned on through the quiet seconds the monitor waited before closing it.
* **One call, one line per event** (`fold`): an event opened and changed within one frame's
  calls is written once, as ``new`` with its latest content, so an alert sent to the teacher on
  the frame it was raised says ``pending_review`` from its first line.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from pipeline.records import Event, ReviewStatus

log = logging.getLogger("edgewatch.events")

Review = ReviewStatus

#: How far along each review is; a review never moves to a lower rank, nor within the final rank.
_RANK: dict[ReviewStatus, int] = {
    Review.NOT_REVIEWED: 0,
    Review.PENDING_REVIEW: 1,
    Review.UNVERIFIED: 2,
    Review.DISMISSED: 3,
    Review.CONFIRMED: 3,
}

_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

#: Kinds of activity that get an event of their own when seen alongside the activity event's type.
ALONGSIDE_KINDS = frozenset({"person", "vehicle"})

#: Random characters after the time in an event id (30 bits: a clash within one millisecond of
#: one camera is about one in a billion).
ID_SUFFIX_CHARS = 6


def advance_review(current: ReviewStatus, proposed: ReviewStatus) -> ReviewStatus:
    """The review after ``proposed`` reaches an event whose review is ``current``: the proposal
    when it moves forward, else ``current`` (a confirmed alert is never pending or dismissed again)."""
    return proposed if _RANK[proposed] > _RANK[current] else current


class EventIds:
    """Makes event ids: ``{camera}-{t_ms}-{suffix}``, the event's start (source time, ms) and
    `ID_SUFFIX_CHARS` random base32 characters (``rng``: a seeded `random.Random` in tests)."""

    def __init__(self, camera: str, rng: random.Random | None = None) -> None:
        self.camera = camera
        self.rng = rng if rng is not None else random.SystemRandom()

    def new(self, t: float) -> str:
        bits = self.rng.getrandbits(5 * ID_SUFFIX_CHARS)
        suffix = "".join(_BASE32[(bits >> (5 * i)) & 31] for i in range(ID_SUFFIX_CHARS))
        return f"{self.camera}-{max(0, int(round(t * 1000)))}-{suffix}"


@dataclass(slots=True)
class OpenEvent:
    """An event still open; written out as immutable `Event` lines."""

    id: str
    type: str
    severity: Literal["activity", "alert"]
    start: float
    flags: set[str] = field(default_factory=set)
    peak_confidence: float = 0.0
    reasons: list[str] = field(default_factory=list)
    review: ReviewStatus = ReviewStatus.NOT_REVIEWED
    explanation: str = ""
    escalation_ids: set[str] = field(default_factory=set)
    last_seen: float = 0.0
    previous_id: str | None = None

    def add_reason(self, reason: str) -> None:
        if reason and (not self.reasons or self.reasons[-1] != reason):
            self.reasons.append(reason)

    def see(self, t: float, confidence: float, flags: frozenset[str] = frozenset()) -> bool:
        """Fold one report into the open event; returns whether its flags grew (worth an update line)."""
        self.peak_confidence = max(self.peak_confidence, confidence)
        self.last_seen = t
        if flags <= self.flags:
            return False
        self.flags |= flags
        return True

    def seen_by_teacher(self, t: float) -> None:
        """The teacher named this event's type on frames up to ``t``: it was seen until then."""
        self.last_seen = max(self.last_seen, t)

    def line(self, phase: Literal["new", "update", "end"], state: str, camera: str, end: float | None = None) -> Event:
        return Event(id=self.id, camera=camera, type=self.type, severity=self.severity, phase=phase, state=state,
                     start=self.start, end=end, flags=tuple(sorted(self.flags)), peak_confidence=self.peak_confidence,
                     reasons=tuple(self.reasons), review=self.review, explanation=self.explanation, snapshot=None,
                     previous_id=self.previous_id)


def fold(lines: Iterable[Event]) -> tuple[Event, ...]:
    """Lines of one frame, one per change: an ``update`` of an event whose ``new`` line is among
    them replaces that line (still ``new``, now with the latest content); ends stay."""
    out: list[Event] = []
    opened: dict[str, int] = {}
    for line in lines:
        at = opened.get(line.id)
        if line.phase == "update" and at is not None:
            out[at] = replace(line, phase="new")
            continue
        if line.phase == "new":
            opened[line.id] = len(out)
        elif line.phase == "end":
            opened.pop(line.id, None)
        out.append(line)
    return tuple(out)


class EventBook:
    """The open events of one camera (one activity event, others of another kind seen alongside
    it, one alert per type) and the lines
    their moves write; ``state`` names the monitor state each line records."""

    def __init__(self, camera: str, state: Callable[[], str], ids: EventIds | None = None) -> None:
        self.camera = camera
        self._state = state
        self.ids = ids or EventIds(camera)
        self.activity: OpenEvent | None = None
        self.alongside: dict[str, OpenEvent] = {}
        """Activity of another kind seen while the activity event is open (a car passing while a
        person is in view): one event per kind, each with its own start and end."""
        self.alerts: dict[str, OpenEvent] = {}
        self.reported_until: dict[str, float] = {}
        """Alert type → when its last alert that was not dismissed ended (a later teacher mention
        of that type within the cooldown is the same incident, not a new one)."""
        self._lines: list[Event] = []

    def take(self) -> tuple[Event, ...]:
        """The lines written since the last call."""
        lines, self._lines = tuple(self._lines), []
        return lines

    def _write(self, ev: OpenEvent, phase: Literal["new", "update", "end"], end: float | None = None) -> None:
        self._lines.append(ev.line(phase, self._state(), self.camera, end=end))

    # -- activity ---------------------------------------------------------------------------

    def open_activity(self, kind: str, start: float, t: float, flags: Iterable[str], confidence: float,
                      reason: str, previous_id: str | None = None, review: ReviewStatus = Review.NOT_REVIEWED) -> OpenEvent:
        ev = OpenEvent(id=self.ids.new(start), type=kind, severity="activity", start=start, flags=set(flags),
                       peak_confidence=confidence, last_seen=t, previous_id=previous_id, review=review)
        ev.add_reason(reason)
        self.activity = ev
        self._write(ev, "new")
        return ev

    def see_activity(self, kind: str, t: float, flags: frozenset[str], confidence: float) -> None:
        """Fold one report into the open activity event; a more specific kind (a person where
        motion was) ends it and opens a new event of that kind, linked to it."""
        ev = self.activity
        if ev is None:
            return
        if ev.type == "motion" and kind != "motion":
            self.end_activity(t, f"activity is a {kind}")
            self.open_activity(kind, t, t, flags, confidence, f"activity is a {kind} (was {ev.id})", previous_id=ev.id)
            return
        if ev.see(t, confidence, flags):
            self._write(ev, "update")

    def end_activity(self, t: float, reason: str) -> None:
        ev, self.activity = self.activity, None
        if ev is not None:
            ev.add_reason(reason)
            self._write(ev, "end", end=ev.last_seen)

    def see_alongside(self, kinds: Iterable[str], t: float, confidence: float) -> None:
        """Kinds of activity a report shows besides the activity event's own type: each opens (or
        continues) its own event, whose first reason names the activity event it was seen with."""
        main = self.activity
        if main is not None and main.type in self.alongside:
            self.end_alongside(main.type, t, f"the activity event {main.id} is now a {main.type}")
        for kind in sorted(kinds):
            if main is None or kind == main.type:
                continue
            ev = self.alongside.get(kind)
            if ev is None:
                self.open_alongside(kind, t, confidence, f"{kind} seen alongside the {main.type} of {main.id}")
            else:
                ev.see(t, confidence)

    def open_alongside(self, kind: str, t: float, confidence: float, reason: str,
                       review: ReviewStatus = Review.NOT_REVIEWED) -> OpenEvent:
        ev = OpenEvent(id=self.ids.new(t), type=kind, severity="activity", start=t, peak_confidence=confidence, last_seen=t,
                       review=review)
        ev.add_reason(reason)
        self.alongside[kind] = ev
        self._write(ev, "new")
        return ev

    def end_quiet_alongside(self, t: float, quiet_s: float) -> None:
        for kind, ev in list(self.alongside.items()):
            if t - ev.last_seen >= quiet_s:
                self.end_alongside(kind, t, f"no {kind} for {t - ev.last_seen:.1f}s >= quiet_after_s {quiet_s:g}s")

    def end_alongside(self, kind: str, t: float, reason: str) -> None:
        ev = self.alongside.pop(kind, None)
        if ev is not None:
            ev.add_reason(reason)
            self._write(ev, "end", end=ev.last_seen)

    # -- alerts -----------------------------------------------------------------------------

    def open_alert(self, kind: str, t: float, reason: str, *, flags: Iterable[str], peak: float,
                   review: ReviewStatus = Review.NOT_REVIEWED, explanation: str = "",
                   escalation_ids: Iterable[str] = ()) -> OpenEvent:
        ev = OpenEvent(id=self.ids.new(t), type=kind, severity="alert", start=t, flags={kind, *flags},
                       peak_confidence=peak, review=review, explanation=explanation, last_seen=t,
                       escalation_ids=set(escalation_ids))
        ev.add_reason(reason)
        self.alerts[kind] = ev
        self._write(ev, "new")
        return ev

    def see_alert(self, kind: str, t: float, flags: frozenset[str], confidence: float) -> None:
        """Fold one report that shows ``kind`` into its open alert (peak confidence, flags)."""
        ev = self.alerts.get(kind)
        if ev is None:
            return
        if ev.see(t, confidence, flags):
            self._write(ev, "update")

    def review(self, ev: OpenEvent, proposed: ReviewStatus, reason: str, *, escalation_id: str | None = None,
               explanation: str | None = None, flags: Iterable[str] = ()) -> None:
        """Move ``ev``'s review towards ``proposed`` (forward only, `advance_review`) for the
        escalation ``escalation_id``, with the teacher's explanation and flags; an update line when
        anything the log shows changed."""
        if escalation_id is not None:
            ev.escalation_ids.add(escalation_id)
        review = advance_review(ev.review, proposed)
        if review != proposed:
            log.debug("%s: %s stays %s (%s refused: a review never goes backwards)", self.camera, ev.id,
                     ev.review.value, proposed.value)
        new_flags = set(flags) - ev.flags
        changed = review != ev.review or bool(new_flags) or (explanation is not None and explanation != ev.explanation)
        if not changed:
            return
        ev.review = review
        ev.flags |= new_flags
        if explanation is not None:
            ev.explanation = explanation
        ev.add_reason(reason)
        self._write(ev, "update")

    def end_alert(self, kind: str, t: float, reason: str) -> None:
        ev = self.alerts.pop(kind, None)
        if ev is None:
            return
        if ev.review == Review.DISMISSED:
            # A dismissed alert was never reported as real: the teacher naming its type later is new.
            self.reported_until.pop(kind, None)
        else:
            self.reported_until[kind] = t
        ev.add_reason(reason)
        self._write(ev, "end", end=ev.last_seen)

    def note(self, reason: str) -> None:
        """Every open alert records why the camera's state changed."""
        for ev in self.alerts.values():
            ev.add_reason(reason)

    def linked(self, escalation_ids: Iterable[str]) -> list[OpenEvent]:
        """Open alerts that any of these escalations concerned."""
        ids = set(escalation_ids)
        return [ev for ev in self.alerts.values() if ev.escalation_ids & ids]

    def end_all(self, t: float, reason: str) -> None:
        for kind in list(self.alerts):
            self.end_alert(kind, t, reason)
        for kind in list(self.alongside):
            self.end_alongside(kind, t, reason)
        self.end_activity(t, reason)


__all__ = ["ALONGSIDE_KINDS", "EventBook", "EventIds", "ID_SUFFIX_CHARS", "OpenEvent", "advance_review", "fold"]
