"""Which frames of the window the teacher sees, and the `Escalation` that carries them.

Keyframes are chosen from the window's (report, encoded frame) entries: the first frame of
the escalated pattern, the frames where the student's answer changed most, and the latest
frame; evenly spread over the window when nothing stands out.  Images are the frames'
existing base64 (encoded once by `pipeline.frames.encode`), never re-encoded here.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from pipeline.incidents.escalation import Decision
from pipeline.incidents.evidence import match_safety
from pipeline.incidents.verdicts import Coverage
from pipeline.records import EncodedFrame, Escalation, FrameReport

#: A change scores at least this much to "stand out" (one flag on/off scores 1).
STAND_OUT_SCORE = 0.25
#: Frames at most this many source seconds before the pattern's first frame serve as context.
CONTEXT_BEFORE_S = 3.0

Entry = tuple[FrameReport, EncodedFrame | None]


def _change_score(prev: FrameReport, cur: FrameReport) -> float:
    return len(prev.flags ^ cur.flags) + abs(cur.confidence - prev.confidence)


def _spread(count: int, candidates: Sequence[int], taken: set[int]) -> list[int]:
    """Up to ``count`` of ``candidates`` (not in ``taken``), each time the one farthest from
    everything chosen so far, so the picks spread evenly over the gaps."""
    picks: list[int] = []
    chosen = set(taken)
    free = [i for i in candidates if i not in chosen]
    while free and len(picks) < count:
        best = max(free, key=lambda i: (min((abs(i - c) for c in chosen), default=0), -i))
        picks.append(best)
        chosen.add(best)
        free.remove(best)
    return picks


def select_keyframes(
    entries: Sequence[Entry],
    max_keyframes: int,
    pattern_start: float | None = None,
    *,
    flags: Iterable[str] = (),
) -> tuple[EncodedFrame, ...]:
    """Up to ``max_keyframes`` encoded frames of ``entries``, in time order, never duplicated.

    Chosen: the first frame of the pattern, the latest, the frames where the student's answer
    changed most (flag set symmetric difference + |Δconfidence|, when at least
    ``STAND_OUT_SCORE``), then frames spread evenly over the pattern, then context from the
    ``CONTEXT_BEFORE_S`` seconds before it.

    The first frame of the pattern is the first entry at or after ``pattern_start`` whose
    flags or observations speak of ``flags`` (the escalated ones), else the first at or
    after ``pattern_start``, else the oldest.  Entries without an encoded frame are skipped.
    """
    if max_keyframes < 1:
        return ()
    seen: set[int] = set()
    usable: list[tuple[FrameReport, EncodedFrame]] = []
    for report, item in sorted(((r, e) for r, e in entries if e is not None), key=lambda re_: re_[0].timestamp):
        if id(item) in seen:
            continue
        seen.add(id(item))
        usable.append((report, item))
    if not usable:
        return ()
    wanted = frozenset(flags)
    after_start = [i for i, (r, _) in enumerate(usable) if pattern_start is None or r.timestamp >= pattern_start]
    carrying = [i for i in after_start if wanted and match_safety(usable[i][0].flags, usable[i][0].observations, wanted)]
    first = carrying[0] if carrying else (after_start[0] if after_start else 0)
    # Context before the pattern shows what it changed from (upright before a fall, the view
    # before a cover) — but only the last few seconds of it: older frames may hold an earlier,
    # unrelated incident still in the window, and the teacher would rule on that instead.
    context_from = usable[first][0].timestamp - CONTEXT_BEFORE_S
    skip = next(i for i, (r, _) in enumerate(usable) if i == first or r.timestamp >= context_from)
    usable, first = usable[skip:], first - skip
    if len(usable) <= max_keyframes:
        return tuple(item for _, item in usable)

    last = len(usable) - 1
    if max_keyframes == 1:
        return (usable[last][1],)

    # The pattern's own frames come first; frames before it only fill slots left over (context).
    chosen = {first, last}
    scores = sorted(
        ((_change_score(usable[i - 1][0], usable[i][0]), i) for i in range(max(first, 1), last)),
        key=lambda si: (-si[0], si[1]),
    )
    for score, i in scores:
        if len(chosen) >= max_keyframes or score < STAND_OUT_SCORE:
            break
        chosen.add(i)
    chosen.update(_spread(max_keyframes - len(chosen), range(first, last + 1), chosen))
    chosen.update(_spread(max_keyframes - len(chosen), range(0, first), chosen))
    return tuple(usable[i][1] for i in sorted(chosen))


def pattern_onset(entries: Sequence[Entry], flags: Iterable[str], rearm_after_s: float) -> float | None:
    """Source time the current run of ``flags`` began, looking back from the newest entry.

    The run ends (going back) where the flags were absent from an analysed report and had last
    been seen at least ``rearm_after_s`` earlier — the same rule that makes a new onset in the
    escalation policy, so the teacher is shown this incident, not an earlier one in the window.
    None when no entry carries the flags.
    """
    wanted = frozenset(flags)
    if not wanted:
        return None
    onset: float | None = None
    absent_since_onset = False
    for report, _ in sorted(entries, key=lambda e: e[0].timestamp, reverse=True):
        if match_safety(report.flags, report.observations, wanted):
            if onset is not None and absent_since_onset and onset - report.timestamp >= rearm_after_s:
                break
            onset, absent_since_onset = report.timestamp, False
        elif onset is not None:
            absent_since_onset = True
    return onset


def unseen_start(entries: Sequence[Entry], flags: Iterable[str], coverages: Iterable[Coverage]) -> float | None:
    """Source time of the first entry carrying ``flags`` after the newest frame a dismissal of them
    covered, or None when no dismissal covers them or nothing after it carries them.

    A question asked again after a dismissal is about what the teacher has not seen: its keyframes
    start there, not at the pattern's onset the teacher already looked at (a fall dismissed on its
    first frames and flagged again while it happens is shown while it happens)."""
    wanted = frozenset(flags)
    seen_until = max((c.until for c in coverages if c.flags & wanted), default=None)
    if seen_until is None:
        return None
    later = [r.timestamp for r, _ in entries if r.timestamp > seen_until and match_safety(r.flags, r.observations, wanted)]
    return min(later) if later else None


def build_escalation(
    *,
    escalation_id: str,
    camera: str,
    incident_id: str,
    decision: Decision,
    entries: Sequence[Entry],
    max_keyframes: int,
    created_at: float,
    pattern_start: float | None = None,
) -> Escalation:
    """The `Escalation` for an escalating decision: keyframes plus the window's reports as timeline."""
    if not decision.escalate or decision.priority is None:
        raise ValueError(f"decision '{decision.reason}' does not escalate; no escalation to build")
    timeline = tuple(sorted((r for r, _ in entries), key=lambda r: r.timestamp))
    keyframes = select_keyframes(entries, max_keyframes, pattern_start, flags=decision.flags)
    return Escalation(
        id=escalation_id,
        camera=camera,
        incident_id=incident_id,
        reason=decision.reason,
        priority=decision.priority,
        created_at=created_at,
        flags=decision.flags,
        keyframes=keyframes,
        timeline=timeline,
    )
