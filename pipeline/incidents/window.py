"""The per-camera sliding window over the student's reports.

The window holds the reports whose source timestamp lies within ``window_s`` seconds of the
newest one (eviction by *source time*, never by count, so a 2 fps camera and a 10 fps camera
look back over the same span), plus the encoded frame each report was made from (for
keyframe selection and the teacher's timeline).  A hard cap (`MAX_ENTRIES`) bounds memory
whatever the frame rate.

After every ``add`` the aggregates the state machine and the escalation policy need are
computed once (`WindowStats`) and cached; ``stats()`` returns that cached value.  The
computation is O(window) in plain Python — a 20-report window costs a few tens of
microseconds.

Not thread-safe: one window per camera, driven from the runner's thread.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections import deque
from dataclasses import dataclass

from pipeline.incidents.evidence import EvidenceReader
from pipeline.config.escalation import DEFAULT_SAFETY_TRIGGERS
from pipeline.records import EncodedFrame, FrameReport, GateReason, SafetyEvidence, WindowStats

log = logging.getLogger("edgewatch.window")

#: Hard cap on entries: a window of ``window_s`` seconds at an absurd report rate must still
#: not grow without bound.  The oldest entries go first.
MAX_ENTRIES = 4096


@dataclass(frozen=True, slots=True)
class _Entry:
    report: FrameReport
    item: EncodedFrame | None
    flags: frozenset[str]
    confidence: float
    evidence: SafetyEvidence


class SlidingWindow:
    """Reports of one camera over the last ``window_s`` seconds of source time."""

    def __init__(self, camera: str, window_s: float, *, max_entries: int = MAX_ENTRIES,
                 reader: EvidenceReader | None = None) -> None:
        if not (isinstance(window_s, (int, float)) and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a finite number > 0 (got {window_s!r})")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1 (got {max_entries!r})")
        self.camera = camera
        self.reader = reader or EvidenceReader(DEFAULT_SAFETY_TRIGGERS)
        """Reads each report's safety evidence, once, as it enters the window."""
        self.window_s = float(window_s)
        self.max_entries = int(max_entries)
        self._entries: deque[_Entry] = deque()
        self._stats: WindowStats = self._empty_stats()
        self.skipped = 0
        """Reports refused as malformed (non-finite timestamp, another camera's report)."""

    # -- public ------------------------------------------------------------------------

    def add(self, report: FrameReport, item: EncodedFrame | None = None) -> WindowStats:
        """Add one report (and the frame it was made from) and return the new aggregates.

        A malformed report (non-finite timestamp, another camera) is logged, counted in
        ``skipped`` and ignored; the previous aggregates are returned.
        """
        if not math.isfinite(report.timestamp):
            self.skipped += 1
            log.warning("window %s: skipped report of frame %s with non-finite timestamp %r",
                        self.camera, report.frame_index, report.timestamp)
            return self._stats
        if report.camera != self.camera:
            self.skipped += 1
            log.warning("window %s: skipped a report of camera %r", self.camera, report.camera)
            return self._stats
        confidence = _clean_confidence(report.confidence)
        gate = item.gate if item is not None else None
        # The gate's whole-view reading: a global change, or a first frame that is already blank (covered).
        hint = gate.global_kind if gate is not None and gate.reason in (GateReason.GLOBAL_CHANGE, GateReason.FIRST) else None
        entry = _Entry(report=report, item=item, flags=frozenset(f for f in report.flags if f), confidence=confidence,
                       evidence=self.reader.read(report, confidence, hint))
        entries = self._entries
        if not entries or report.timestamp >= entries[-1].report.timestamp:
            entries.append(entry)
        else:
            # Out of order (a slow analysis finishing late): keep the window sorted by source
            # time; equal timestamps keep arrival order.
            keys = [e.report.timestamp for e in entries]
            pos = bisect.bisect_right(keys, report.timestamp)
            if pos == 0:
                if report.timestamp < entries[-1].report.timestamp - self.window_s:
                    log.debug("window %s: report at t=%.3f is older than the window; ignored",
                              self.camera, report.timestamp)
                    return self._stats
            entries.insert(pos, entry)
        self._evict()
        self._stats = self._compute()
        return self._stats

    def stats(self) -> WindowStats:
        """The aggregates after the last ``add`` (an empty window gives n_reports == 0)."""
        return self._stats

    def entries(self) -> tuple[tuple[FrameReport, EncodedFrame | None], ...]:
        """(report, frame) pairs in the window, oldest first."""
        return tuple((e.report, e.item) for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    # -- internals ---------------------------------------------------------------------

    def _evict(self) -> None:
        entries = self._entries
        horizon = entries[-1].report.timestamp - self.window_s
        while entries and (entries[0].report.timestamp < horizon or len(entries) > self.max_entries):
            entries.popleft()

    def _empty_stats(self) -> WindowStats:
        return WindowStats(
            camera=self.camera, timestamp=0.0, window_s=self.window_s, n_reports=0,
            flag_streak={}, flips={}, confidence_mean=0.0, confidence_last=0.0,
            active_flags=frozenset(), observations=(),
        )

    def _compute(self) -> WindowStats:
        entries = self._entries
        n = len(entries)
        newest = entries[-1]

        seen: dict[str, None] = {}  # flags in the window, in order of first appearance
        flips: dict[str, int] = {}
        recent: list[frozenset[str]] = []
        errors = 0
        conf_sum = 0.0
        previous: frozenset[str] | None = None
        for e in entries:
            flags = e.flags
            recent.append(flags)
            seen.update(dict.fromkeys(flags))
            if previous is not None and flags != previous:
                for f in flags ^ previous:
                    flips[f] = flips.get(f, 0) + 1
            previous = flags
            if e.report.error:
                errors += 1
            conf_sum += e.confidence
        for f in seen:
            flips.setdefault(f, 0)

        # Streak of each flag of the newest report, walking back from the newest.
        streak: dict[str, int] = {}
        for f in newest.flags:
            k = 0
            for flags in reversed(recent):
                if f not in flags:
                    break
                k += 1
            streak[f] = k

        gate = newest.item.gate if newest.item is not None else None
        return WindowStats(
            camera=self.camera,
            timestamp=newest.report.timestamp,
            window_s=self.window_s,
            n_reports=n,
            flag_streak=streak,
            flips=flips,
            confidence_mean=conf_sum / n,
            confidence_last=newest.confidence,
            active_flags=newest.flags,
            observations=newest.report.observations,
            scene_change=gate is not None and gate.reason == GateReason.GLOBAL_CHANGE,
            scene_change_kind=newest.evidence.gate_hint,
            errors=errors,
            evidence=newest.evidence,
            recent_evidence=tuple(e.evidence for e in entries),
        )


def _clean_confidence(value: float) -> float:
    """Confidence clamped to 0..1; a non-number counts as 0 (no confidence at all)."""
    try:
        c = float(value)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(c):
        return 0.0
    return min(1.0, max(0.0, c))


__all__ = ["MAX_ENTRIES", "SlidingWindow"]
