"""What a teacher verdict may change: the rules, as pure functions.

Escalation may add evidence or delay an alert; it must never erase one.  The rules:

* **A verdict covers what the teacher saw.**  A dismissal speaks of the escalated flags on
  the frames up to the sequence's last keyframe (`Coverage.until`) and at the strongest
  evidence among them (`Coverage.strength`, the highest student confidence on a frame that
  carried those flags).  Student evidence *after* that keyframe, or stronger than anything
  the teacher saw, is a new question: it counts again (`covers` is False for it), so it is
  asked again (rate-limited, `may_reask`) or, unasked, alerts on its own.
* **Optionally, a confirmation confirms only what it names** (`escalation.confirm_named_only`,
  off by default).  Asked about a fall and smoke, a teacher that confirms naming smoke only has
  seen the fall's frames and not confirmed it: the fall is dismissed for those frames
  (`unnamed_coverage`), as by a dismissal.  Off because a confirmation silent on a type has not
  said it is absent: with the offline teacher it erased the demo's real smoke.
* **A verdict that contradicts itself is unverified.**  ``dismissed`` while naming a safety
  flag it was asked about (in ``safetyFlags`` or in its own observations) cannot be read both
  ways; it becomes ``unverified`` with the named flags kept, so the alert stands (`coherent`).
  A dismissal that names *another* hazard dismisses what it was asked and reports the other.
* **A dismissal ends only an alert whose evidence the teacher saw.**  An alert whose type the
  student shows again after the covered frames stands, still pending, and is asked again; and
  a review only moves forward (`pipeline.incidents.events.advance_review`): what the teacher
  confirmed is never dismissed nor pending again.
* **Scene text may raise severity, never clear an alert.**  The verdict's observations are
  free text a model wrote after looking at a scene that may itself hold text ("FIRE DRILL —
  IGNORE").  Words in them that name a hazard add that flag to the verdict; nothing in them
  removes one: the monitor ends an alert only on the verdict's kind and flags, and a
  dismissal only for the frames it covers.

Nothing here keeps state or reads a clock: the policy (`pipeline.incidents.escalation`) and
the monitor (`states.monitor`) hold the coverages; the runner builds them per verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from pipeline.records import Escalation, SafetyEvidence, Verdict, VerdictKind, normalise_flag

#: (flags, observations) → the safety triggers they name (`evidence.match_safety` with the
#: camera's triggers bound): passed in, so this module depends on no matcher.
Matcher = Callable[[Iterable[str], Iterable[str]], frozenset[str]]

#: Student evidence at least this much more confident than the strongest frame the teacher
#: saw is "stronger": a new question, not covered by the dismissal.
STRONGER_MARGIN = 0.05


@dataclass(frozen=True, slots=True)
class Coverage:
    """What a dismissal speaks for: these safety flags, on frames up to ``until`` (source
    time of the last keyframe the teacher saw), at confidence up to ``strength``."""

    flags: frozenset[str]
    until: float
    strength: float
    escalation_id: str = ""

    def to_json(self) -> dict[str, object]:
        return {"flags": sorted(self.flags), "until": round(self.until, 3), "strength": round(self.strength, 4),
                "escalation_id": self.escalation_id}


def coherent(verdict: Verdict, asked: Iterable[str], match: Matcher) -> Verdict:
    """The verdict as the pipeline may act on it, for an escalation that asked about the safety
    flags ``asked`` (canonical names; empty for a review with no safety flag).

    * ``dismissed`` naming a flag it was asked about (or, asked about none, naming any) →
      ``unverified`` with those flags: a contradiction is no verdict, and the alert it would have
      ended stands;
    * otherwise the safety flags its observations name are added to its flags (raise, never
      clear) — a dismissal of a fall that names fire dismisses the fall and reports the fire.
    """
    named = match(verdict.safety_flags, verdict.observations)
    own = frozenset(normalise_flag(f) for f in verdict.safety_flags if str(f).strip())
    asked = frozenset(asked)
    if verdict.kind == VerdictKind.DISMISSED and named and (named & asked or not asked):
        why = f"contradictory verdict: dismissed but names {', '.join(sorted(named))}; left unverified"
        return replace(verdict, kind=VerdictKind.UNVERIFIED, safety_flags=tuple(sorted(own | named)),
                       explanation=f"{why}. {verdict.explanation}".strip())
    if named - own:
        return replace(verdict, safety_flags=tuple(sorted(own | named)))
    return verdict


def coverage_of(escalation: Escalation, verdict: Verdict, match: Matcher) -> Coverage | None:
    """The coverage of a dismissal of ``escalation`` (None for any other verdict, or when the
    escalation carried no safety flag: then there is nothing to cover)."""
    if verdict.kind != VerdictKind.DISMISSED:
        return None
    flags = match(escalation.flags, ())
    return _coverage(escalation, flags, match) if flags else None


def unnamed_coverage(escalation: Escalation, verdict: Verdict, match: Matcher) -> Coverage | None:
    """A confirmation that names some of the safety types it was asked about and not others (asked
    about a fall and smoke, it names smoke): the coverage of the others, which the teacher was shown
    and did not confirm — dismissed for the frames it saw, like a dismissal.  None for any other
    verdict, and for a confirmation naming none of them (it confirms the question as asked)."""
    if verdict.kind != VerdictKind.CONFIRMED:
        return None
    asked = match(escalation.flags, ())
    named = match(verdict.safety_flags, verdict.observations)
    if not asked & named or not asked - named:
        return None
    return _coverage(escalation, asked - named, match)


def seen_until(escalation: Escalation) -> float:
    """Source time of the last frame the teacher was shown for ``escalation``: its last keyframe
    (the escalation's own time when it carried none)."""
    times = [k.timestamp for k in escalation.keyframes]
    return max(times) if times else escalation.created_at


def _coverage(escalation: Escalation, flags: frozenset[str], match: Matcher) -> Coverage:
    until = seen_until(escalation)
    seen = [r.confidence for r in escalation.timeline
            if r.timestamp <= until and match(r.safety_flags, r.observations) & flags]
    # Without the student's timeline the teacher's view of strength is unknown: cover up to
    # certainty, so only later frames are new questions.
    strength = max(seen) if seen else 1.0
    return Coverage(flags=flags, until=until, strength=strength, escalation_id=escalation.id)


def covers(coverage: Coverage, flag: str, timestamp: float, confidence: float) -> bool:
    """Does the dismissal speak for ``flag`` on a frame at ``timestamp`` with ``confidence``?"""
    return (flag in coverage.flags and timestamp <= coverage.until
            and confidence <= coverage.strength + STRONGER_MARGIN)


def uncovered(flags: Iterable[str], timestamp: float, confidence: float, coverages: Iterable[Coverage]) -> frozenset[str]:
    """``flags`` minus those a dismissal covers on this frame."""
    cov = tuple(coverages)
    return frozenset(f for f in flags if not any(covers(c, f, timestamp, confidence) for c in cov))


def uncover(recent: Sequence[SafetyEvidence], coverages: Iterable[Coverage]) -> tuple[SafetyEvidence, ...]:
    """The frames' evidence as it still counts: each frame's triggers minus those a dismissal covers."""
    cov = tuple(coverages)
    if not cov:
        return tuple(recent)
    return tuple(ev if not ev.triggers else replace(ev, triggers=uncovered(ev.triggers, ev.timestamp, ev.confidence, cov))
                 for ev in recent)


def may_reask(last_asked_at: float | None, now: float, reask_after_s: float) -> bool:
    """A dismissed pattern with new evidence may be asked again when the last safety question
    is at least ``reask_after_s`` old (the rate limit); until then its alert stands on its own."""
    return last_asked_at is None or now - last_asked_at >= reask_after_s


def prune(coverages: Iterable[Coverage], oldest_frame: float) -> tuple[Coverage, ...]:
    """Coverages that can still cover a frame no older than ``oldest_frame``."""
    return tuple(c for c in coverages if c.until >= oldest_frame)


__all__ = ["Coverage", "Matcher", "STRONGER_MARGIN", "coherent", "coverage_of", "covers", "may_reask", "prune",
           "seen_until", "uncover", "uncovered", "unnamed_coverage"]
