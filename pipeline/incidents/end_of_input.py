"""Safety flags the end of the input cut short.

The persistence rule (k of the last n reports) needs reports after a flag's onset; a hazard
seen in the last moments of a file (a fall in its last half second, a clip shorter than the
rule's window) never gets them.  When the input ends, such a flag is decided on the evidence
seen: it is an alert when every report since its onset carried it (nothing spoke against it),
there were fewer than n of them (the rule never had its chance), and the newest of them is
recent (the input ended before another report could come).  A flag the teacher dismissed is
not live and does not count.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from pipeline.records import WindowStats

#: The newest flagged report must be at most this many seconds before the end of the input.
CUT_SHORT_WITHIN_S = 1.5


def cut_short(stats: WindowStats | None, live: Iterable[str], open_alerts: Container[str], persistence_n: int,
              end: float) -> list[tuple[str, float, int]]:
    """(trigger, onset time, reports since onset) for each live trigger without an alert whose
    persistence the end of the input cut short."""
    if stats is None or not stats.recent_evidence or end - stats.timestamp > CUT_SHORT_WITHIN_S:
        return []
    out = []
    for kind in sorted(live):
        if kind in open_alerts:
            continue
        since = 0
        for ev in reversed(stats.recent_evidence):
            if kind not in ev.triggers:
                break
            since += 1
        if 0 < since < persistence_n:
            out.append((kind, stats.recent_evidence[-since].timestamp, since))
    return out


__all__ = ["CUT_SHORT_WITHIN_S", "cut_short"]
