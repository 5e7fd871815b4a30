"""Student calls in flight: bounded, answered in frame order, stale frames dropped only for live sources."""

from __future__ import annotations

import threading
import time

import numpy as np

from pipeline.records import EncodedFrame, Frame, FrameReport, GateDecision, GateReason
from pipeline.analyzers.student_pool import StudentPool


def _item(i: int) -> EncodedFrame:
    frame = Frame("c", i, i / 10, np.zeros((4, 4, 3), np.uint8))
    return EncodedFrame(frame, b"", "", 4, 4, GateDecision(True, GateReason.CHANGE, 1.0))


class SlowStudent:
    """A fake student (named as such) whose calls block until released, counting concurrency."""

    backend, model, prompt_version = "fake", "fake-student", "test"

    def __init__(self, delays: dict[int, float] | None = None) -> None:
        self.delays = delays or {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()

    def analyze(self, item: EncodedFrame) -> FrameReport:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.release.wait(5)
        time.sleep(self.delays.get(item.frame.index, 0.0))
        with self.lock:
            self.in_flight -= 1
        if item.frame.index == 13:
            raise RuntimeError("boom")
        return FrameReport("c", item.frame.index, item.timestamp, ("ok",), (), 0.9, "fake", "fake-student", "test", 1.0)

    def close(self) -> None:
        pass


def test_replay_keeps_every_frame_in_order_and_bounds_concurrency() -> None:
    student = SlowStudent(delays={0: 0.05, 1: 0.0, 2: 0.03})
    pool = StudentPool(student, 3, drop_stale=False)
    got = []
    for i in range(12):
        pool.submit(_item(i))
        got += [r.frame_index for _, r in pool.completed()]
    got += [r.frame_index for _, r in pool.drain()]
    pool.close()
    assert got == list(range(12))
    assert student.max_in_flight <= 3
    assert pool.stats.stale_dropped == 0


def test_live_drops_stale_frames_and_the_newest_wins() -> None:
    student = SlowStudent()
    student.release.clear()
    pool = StudentPool(student, 2, drop_stale=True)
    for i in range(6):
        pool.submit(_item(i))
    student.release.set()
    got = [r.frame_index for _, r in pool.drain()]
    pool.close()
    assert got == [0, 1, 5]  # 2, 3 and 4 were replaced by newer frames while both calls were busy
    assert pool.stats.stale_dropped == 3
    assert student.max_in_flight <= 2


def test_a_student_that_raises_still_yields_a_failed_report() -> None:
    pool = StudentPool(SlowStudent(), 1, drop_stale=False)
    pool.submit(_item(13))
    [(item, report)] = pool.drain()
    pool.close()
    assert report.error and "boom" in report.error
    assert report.safety_flags == ("model_error",) and report.confidence == 0.0
    assert pool.stats.crashed == 1
