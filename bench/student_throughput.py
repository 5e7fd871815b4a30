"""Student throughput and lag through the REAL Ollama client, against the Ollama-protocol test server.

Backend: the ollama-protocol test server (tests/ollama_server.py) with SCRIPTED latency —
no model runs; the figures measure the client, the concurrency limit and the dispatcher,
not Gemma.  Frames arrive at ``--fps`` (real time) for ``--frames`` frames; a latest-frame-wins
dispatcher hands them to up to N concurrent student calls: while every slot is busy the newest
frame replaces the waiting one and the replaced frame is counted as stale, so lag stays bounded.
Meanwhile one teacher review (scripted ``--teacher-ms``) is sent every ``--teacher-every`` frames
when the teacher is idle.  Prints, per concurrency: frames analysed per second, stale skips, and
end-to-end lag (frame arrival → report) p50/p95/max.  Bounded: stops by itself.

    /tmp/venv/bin/python bench/student_throughput.py [--frames 100] [--fps 20] [--student-ms 110]
        [--teacher-ms 820] [--concurrency 1,2,4]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from ollama_server import OllamaTestServer, Script  # noqa: E402

from pipeline.analyzers.ollama_client import OllamaStudent, OllamaTeacher  # noqa: E402
from pipeline.analyzers.prompts import STUDENT_PROMPT, TEACHER_PROMPT  # noqa: E402
from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.encode import EncodeConfig  # noqa: E402
from pipeline.config.models import StudentConfig, TeacherConfig  # noqa: E402
from pipeline.frames.encode import encode_frame  # noqa: E402
from pipeline.records import EncodedFrame, Escalation, Frame, GateDecision, GateReason, Priority  # noqa: E402

BACKEND = "ollama-protocol test server, scripted latency"


def synthetic_frames(count: int, fps: float) -> list[EncodedFrame]:
    """A 1280x720 scene with a moving orange block, encoded once like the pipeline does (896 px side)."""
    out = []
    cfg = EncodeConfig()
    for i in range(count):
        image = np.full((720, 1280, 3), 90, np.uint8)
        x = 40 + (i * 11) % 1100
        image[300:460, x : x + 140] = (0, 140, 255)
        frame = Frame("bench", i, i / fps, image)
        out.append(encode_frame(frame, GateDecision(True, GateReason.CHANGE, 25.0), cfg))
    return out


@dataclass
class RunResult:
    concurrency: int
    analysed: int
    stale: int
    errors: int
    span_s: float
    lags_ms: list[float]
    teacher_ms: list[float]
    server_max_in_flight: int


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class LatestFrameDispatcher:
    """N workers; at most one frame waits; a newer frame replaces the waiting one (counted stale)."""

    def __init__(self, student: OllamaStudent, workers: int, clock: SystemClock) -> None:
        self._student = student
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting: tuple[EncodedFrame, float] | None = None
        self._closing = False
        self.stale = 0
        self.lags_ms: list[float] = []
        self.errors = 0
        self.last_done = 0.0
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for t in self._threads:
            t.start()

    def submit(self, item: EncodedFrame, arrived: float) -> None:
        with self._cond:
            if self._waiting is not None:
                self.stale += 1
            self._waiting = (item, arrived)
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._waiting is None and not self._closing:
                    self._cond.wait()
                if self._waiting is None:
                    return
                item, arrived = self._waiting
                self._waiting = None
            report = self._student.analyze(item)
            done = self._clock.monotonic()
            with self._cond:
                self.lags_ms.append((done - arrived) * 1000.0)
                self.errors += report.error is not None
                self.last_done = max(self.last_done, done)

    def drain(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30)


def run(concurrency: int, frames: list[EncodedFrame], fps: float, student_ms: float, teacher_ms: float,
        teacher_every: int) -> RunResult:
    clock = SystemClock()
    script = Script(latency_s=student_ms / 1000.0, teacher_latency_s=teacher_ms / 1000.0)
    with OllamaTestServer(script) as srv:
        student = OllamaStudent(StudentConfig(host=srv.url, max_concurrent=concurrency, timeout_ms=3000), STUDENT_PROMPT, clock)
        teacher = OllamaTeacher(TeacherConfig(host=srv.url, timeout_ms=10000), TEACHER_PROMPT, clock)
        student.warm_up()
        teacher.warm_up()
        dispatcher = LatestFrameDispatcher(student, concurrency, clock)
        teacher_ms_seen: list[float] = []
        teacher_busy = threading.Event()

        def review(esc: Escalation) -> None:
            try:
                teacher_ms_seen.append(teacher.review(esc).latency_ms)
            finally:
                teacher_busy.clear()

        teacher_threads = []
        start = clock.monotonic()
        for i, item in enumerate(frames):
            clock.sleep(start + i / fps - clock.monotonic())
            dispatcher.submit(item, clock.monotonic())
            if teacher_every and i % teacher_every == teacher_every - 1 and not teacher_busy.is_set():
                teacher_busy.set()
                keyframes = tuple(frames[max(0, i - 3) : i + 1])
                esc = Escalation(id=f"esc-{i}", camera="bench", incident_id="inc", reason="bench", priority=Priority.SAFETY,
                                 created_at=item.timestamp, flags=frozenset({"fire"}), keyframes=keyframes, timeline=())
                t = threading.Thread(target=review, args=(esc,), daemon=True)
                t.start()
                teacher_threads.append(t)
        dispatcher.drain()
        for t in teacher_threads:
            t.join(timeout=30)
        student.close()
        teacher.close()
        return RunResult(concurrency, len(dispatcher.lags_ms), dispatcher.stale, dispatcher.errors,
                         dispatcher.last_done - start, dispatcher.lags_ms, teacher_ms_seen, srv.max_in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--fps", type=float, default=20.0)
    parser.add_argument("--student-ms", type=float, default=110.0)
    parser.add_argument("--teacher-ms", type=float, default=820.0)
    parser.add_argument("--teacher-every", type=int, default=40, help="send a teacher review every N frames (0: none)")
    parser.add_argument("--concurrency", default="1,2,4")
    args = parser.parse_args()
    if not (1 <= args.frames <= 2000 and 0 < args.fps <= 120):
        parser.error("--frames must be 1..2000 and --fps 0..120")

    frames = synthetic_frames(args.frames, args.fps)
    kib = statistics.mean(len(f.jpeg) for f in frames) / 1024
    print(f"backend: {BACKEND}")
    print(f"input: {args.frames} frames at {args.fps:g} fps, {frames[0].width}x{frames[0].height} JPEG ~{kib:.0f} KiB; "
          f"student {args.student_ms:g} ms, teacher {args.teacher_ms:g} ms (scripted)")
    for n in (int(x) for x in args.concurrency.split(",")):
        r = run(n, frames, args.fps, args.student_ms, args.teacher_ms, args.teacher_every)
        rate = r.analysed / r.span_s if r.span_s > 0 else float("nan")
        teacher = (f"teacher reviews {len(r.teacher_ms)}, p50 {percentile(r.teacher_ms, 0.5):.0f} ms"
                   if r.teacher_ms else "teacher reviews 0")
        print(
            f"[{BACKEND}] concurrency {n}: analysed {r.analysed}/{args.frames} ({rate:.1f} frames/s), "
            f"stale skipped {r.stale}, errors {r.errors}, lag p50 {percentile(r.lags_ms, 0.5):.0f} ms "
            f"p95 {percentile(r.lags_ms, 0.95):.0f} ms max {max(r.lags_ms, default=float('nan')):.0f} ms, "
            f"server max in flight {r.server_max_in_flight}; {teacher}"
        )


if __name__ == "__main__":
    main()
