"""Pipeline time outside the models, per analysed frame, as a ratio to the student's latency.

Runs the labelled demo clip through the real `Runner` (our policy) once with the offline pair
and once with the simulated pair.  The student and teacher are wrapped so the wall time spent
inside their calls is measured; everything else the run spent — capture and decode, gate,
encode, window, states, policy, teacher queue, sinks — is the pipeline's own time.

    python bench/pipeline_overhead.py [--labels fixtures/demo/demo.labels.json] [--repeat 1]

For the simulated pair the student's latency is the configured figure (110 ms by default) —
the time a real small model would take — while the simulated call itself costs microseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the project root without install

from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.settings import Settings  # noqa: E402
from tools.evaluation import DEMO_LABELS, Variant, make_backends, policy_factory, variant_settings  # noqa: E402
from tools.labels import load_labels  # noqa: E402
from pipeline.records import EncodedFrame, Escalation, FrameReport, Verdict  # noqa: E402
from pipeline.analyzers.backends import Backends
from pipeline.runner import Runner


class Timed:
    """Wraps a student or teacher and adds up the wall time spent inside its calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.model = inner.model
        self.prompt_version = getattr(inner, "prompt_version", "")
        self.seconds = 0.0
        self.latencies_ms: list[float] = []

    def analyze(self, item: EncodedFrame) -> FrameReport:
        start = time.perf_counter()
        try:
            report = self.inner.analyze(item)
        finally:
            self.seconds += time.perf_counter() - start
        self.latencies_ms.append(report.latency_ms)
        return report

    def review(self, escalation: Escalation) -> Verdict:
        start = time.perf_counter()
        try:
            return self.inner.review(escalation)
        finally:
            self.seconds += time.perf_counter() - start

    def close(self) -> None:
        self.inner.close()


def measure(pair: str, labels_path: Path) -> dict[str, float]:
    labels = load_labels(labels_path)
    clip = labels.clips[0]
    with tempfile.TemporaryDirectory() as tmp:
        settings = variant_settings(Settings(), Variant("ours", "ours"), 0, Path(tmp))
        clock = SystemClock()
        chosen = make_backends(pair, settings, clip, 0, False, clock)
        student, teacher = Timed(chosen.student), Timed(chosen.teacher)
        runner = Runner(settings, Backends(student=student, teacher=teacher), clock=clock,
                        policy_factory=policy_factory(Variant("ours", "ours")))
        start = time.perf_counter()
        summary = runner.run(str(labels.video_path(clip)))
        wall = time.perf_counter() - start
    analysed = max(1, summary.frames_analysed)
    outside_s = wall - student.seconds - teacher.seconds
    student_ms = statistics.fmean(student.latencies_ms) if student.latencies_ms else 0.0
    per_frame_ms = outside_s * 1000.0 / analysed
    return {"wall_s": wall, "analysed": float(analysed), "frames_read": float(summary.frames_read),
            "student_s": student.seconds, "teacher_s": teacher.seconds, "outside_ms_per_frame": per_frame_ms,
            "student_latency_ms": student_ms, "ratio": per_frame_ms / student_ms if student_ms else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=DEMO_LABELS)
    parser.add_argument("--repeat", type=int, default=1, help="runs per pair (the median ratio is printed)")
    args = parser.parse_args(argv)
    print(f"clip: {args.labels} (first clip), policy: ours, {args.repeat} run(s) per pair")
    print(f"{'pair':<10} {'analysed':>8} {'wall s':>7} {'in student s':>12} {'in teacher s':>12} "
          f"{'outside ms/frame':>16} {'student ms':>10} {'ratio':>7}")
    for pair in ("offline", "simulated"):
        runs = [measure(pair, args.labels) for _ in range(max(1, args.repeat))]
        m = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]
        latency_note = "measured" if pair == "offline" else "configured"
        print(f"{pair:<10} {m['analysed']:>8.0f} {m['wall_s']:>7.2f} {m['student_s']:>12.2f} {m['teacher_s']:>12.2f} "
              f"{m['outside_ms_per_frame']:>16.1f} {m['student_latency_ms']:>10.1f} {m['ratio']:>7.3f}  ({latency_note} student latency)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
