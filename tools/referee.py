"""Scoring an event log the way ``../shared/tools/real_clips.py`` does (the project's referee).

Kept independent of `tools.evaluation`'s own matching on purpose, and identical in its rules:

* every event *line* counts with its type and its flags (a dismissed alert was still shown);
* a labelled event of type T is found when a line carrying T overlaps it, widened
  `BEFORE_S` before its start and `AFTER_S` after its end;
* a wrong safety alert is an (event id, safety type) pair that no labelled event of that type
  explains within the same tolerance;
* a quiet interval is falsely alarmed when any line carrying a safety type overlaps it.

On top, per type: **precision** = event ids carrying T that overlap a labelled T / event ids
carrying T (the referee prints wrong alerts for safety types only; precision covers person
and vehicle too).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tools.labels import ClipLabels, LabelledEvent

BEFORE_S = 1.0
AFTER_S = 2.0
#: The referee's safety types (real_clips.py's SAFETY).
SAFETY = frozenset({"fall", "fire", "smoke", "tamper", "intrusion", "weapon", "blood"})


def is_safety_type(t: str) -> bool:
    return t in SAFETY


@dataclass(frozen=True, slots=True)
class EventLine:
    id: str
    types: frozenset[str]
    start: float
    end: float


def event_lines(lines: Iterable[Mapping[str, Any]]) -> list[EventLine]:
    """Each event-log line as the referee reads it (type plus flags, start, end or start)."""
    out = []
    for line in lines:
        start = line.get("start")
        if not isinstance(start, (int, float)):
            continue
        end = line.get("end")
        end = end if isinstance(end, (int, float)) else start
        types = {str(line["type"]).lower()} if isinstance(line.get("type"), str) else set()
        types |= {str(f).lower() for f in line.get("flags") or () if isinstance(f, str)}
        out.append(EventLine(str(line.get("id", f"{sorted(types)}@{start}")), frozenset(types), float(start), float(end)))
    return out


def _overlaps(line: EventLine, event: LabelledEvent) -> bool:
    return line.start <= event.end + AFTER_S and line.end >= event.start - BEFORE_S


@dataclass
class RefereeScore:
    """Counts on one clip (summed over clips before ratios are taken)."""

    total: Counter = field(default_factory=Counter)
    found: Counter = field(default_factory=Counter)
    ids: Counter = field(default_factory=Counter)
    """Event ids carrying each type."""
    true_ids: Counter = field(default_factory=Counter)
    """Event ids carrying each type that overlap a labelled event of it."""
    wrong_safety: Counter = field(default_factory=Counter)
    quiet_alarmed: int = 0
    quiet_intervals: int = 0

    def add(self, other: "RefereeScore") -> None:
        for mine, theirs in ((self.total, other.total), (self.found, other.found), (self.ids, other.ids),
                             (self.true_ids, other.true_ids), (self.wrong_safety, other.wrong_safety)):
            mine.update(theirs)
        self.quiet_alarmed += other.quiet_alarmed
        self.quiet_intervals += other.quiet_intervals

    def to_json(self) -> dict[str, Any]:
        return {"total": dict(self.total), "found": dict(self.found), "ids": dict(self.ids), "true_ids": dict(self.true_ids),
                "wrong_safety": dict(self.wrong_safety), "quiet_alarmed": self.quiet_alarmed,
                "quiet_intervals": self.quiet_intervals}


def score(clip: ClipLabels, lines: Sequence[EventLine]) -> RefereeScore:
    s = RefereeScore()
    for ev in clip.events:
        s.total[ev.type] += 1
        if any(ev.type in ln.types and _overlaps(ln, ev) for ln in lines):
            s.found[ev.type] += 1
    by_id: dict[str, list[EventLine]] = {}
    for ln in lines:
        by_id.setdefault(ln.id, []).append(ln)
    for eid, its in by_id.items():
        for t in frozenset().union(*(ln.types for ln in its)) - {"motion"}:
            s.ids[t] += 1
            if any(t in ln.types and ev.type == t and _overlaps(ln, ev) for ln in its for ev in clip.events):
                s.true_ids[t] += 1
    wrong = {(ln.id, t) for ln in lines for t in ln.types if is_safety_type(t)
             and not any(ev.type == t and _overlaps(ln, ev) for ev in clip.events)}
    s.wrong_safety.update(t for _, t in wrong)
    s.quiet_intervals = len(clip.quiet)
    s.quiet_alarmed = sum(any(any(is_safety_type(t) for t in ln.types) and ln.start <= q1 and ln.end >= q0 for ln in lines)
                          for q0, q1 in clip.quiet)
    return s


def per_type_table(scores: Mapping[str, RefereeScore]) -> str:
    """One row per (policy, type): found / labelled, recall, precision, wrong safety alerts; and
    each policy's quiet intervals alarmed."""
    rows = ["| policy | type | found / labelled | recall | precision | wrong safety alerts |", "|---|---|---:|---:|---:|---:|"]
    for name, s in scores.items():
        for t in sorted(set(s.total) | set(s.ids)):
            recall = f"{s.found[t] / s.total[t] * 100:.0f}%" if s.total[t] else "n/a"
            precision = f"{s.true_ids[t] / s.ids[t] * 100:.0f}%" if s.ids[t] else "n/a"
            wrong = str(s.wrong_safety[t]) if is_safety_type(t) else "-"
            rows.append(f"| {name} | {t} | {s.found[t]} / {s.total[t]} | {recall} | {precision} | {wrong} |")
        rows.append(f"| {name} | *quiet intervals alarmed* | {s.quiet_alarmed} / {s.quiet_intervals} | | | "
                    f"{sum(s.wrong_safety.values())} in all |")
    return "\n".join(rows)


__all__ = ["AFTER_S", "BEFORE_S", "SAFETY", "is_safety_type", "EventLine", "RefereeScore", "event_lines", "per_type_table", "score"]
