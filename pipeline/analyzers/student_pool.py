"""Student calls in flight, bounded, answered in frame order.

Recorded files read as fast as possible apply backpressure instead (the reader waits for a
free slot), so nothing is skipped and a replay is deterministic.  Live sources never wait:
while every slot is busy the newest frame replaces the one waiting, and the replaced frame
is counted as stale — latency never drifts behind the camera.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait, FIRST_COMPLETED
from dataclasses import dataclass

from pipeline.analyzers.base import Student, crash_report
from pipeline.records import EncodedFrame, FrameReport

log = logging.getLogger("edgewatch.student")


@dataclass
class StudentPoolStats:
    submitted: int = 0
    completed: int = 0
    stale_dropped: int = 0
    in_flight_max: int = 0
    crashed: int = 0


class StudentPool:
    def __init__(self, student: Student, max_concurrent: int, *, drop_stale: bool) -> None:
        self._student = student
        self._limit = max(1, max_concurrent)
        self._drop_stale = drop_stale
        self._executor = ThreadPoolExecutor(max_workers=self._limit, thread_name_prefix="student")
        self._in_flight: deque[tuple[EncodedFrame, Future[FrameReport]]] = deque()
        self._waiting: EncodedFrame | None = None
        self._lock = threading.Lock()
        self.stats = StudentPoolStats()

    def _busy(self) -> int:
        return sum(1 for _, fut in self._in_flight if not fut.done())

    def _start(self, item: EncodedFrame) -> None:
        self._in_flight.append((item, self._executor.submit(self._analyze, item)))
        self.stats.submitted += 1
        self.stats.in_flight_max = max(self.stats.in_flight_max, self._busy())

    def _analyze(self, item: EncodedFrame) -> FrameReport:
        try:
            return self._student.analyze(item)
        except Exception as exc:  # a student must not raise; if one does, the frame still gets a (failed) report
            self.stats.crashed += 1
            log.exception("student %s raised on frame %d", self._student.backend, item.frame.index)
            return crash_report(self._student, item, exc)

    def submit(self, item: EncodedFrame) -> None:
        if self._busy() < self._limit:
            self._start(item)
            return
        if self._drop_stale:
            if self._waiting is not None:
                self.stats.stale_dropped += 1
            self._waiting = item
            return
        # Backpressure for replays: wait until the oldest busy call finishes.
        wait([fut for _, fut in self._in_flight if not fut.done()], return_when=FIRST_COMPLETED)
        self._start(item)

    def completed(self) -> list[tuple[EncodedFrame, FrameReport]]:
        """Reports ready so far, in frame order (a later frame waits for an earlier one)."""
        if self._waiting is not None and self._busy() < self._limit:
            item, self._waiting = self._waiting, None
            self._start(item)
        done: list[tuple[EncodedFrame, FrameReport]] = []
        while self._in_flight and self._in_flight[0][1].done():
            item, fut = self._in_flight.popleft()
            done.append((item, fut.result()))
        self.stats.completed += len(done)
        return done

    def drain(self) -> list[tuple[EncodedFrame, FrameReport]]:
        """Wait for every call in flight (and the waiting frame) and return their reports in order."""
        if self._waiting is not None:
            item, self._waiting = self._waiting, None
            self._start(item)
        wait([fut for _, fut in self._in_flight])
        return self.completed()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
