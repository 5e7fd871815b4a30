"""Soak: four looped file cameras through the whole pipeline (offline analyzers) for N minutes.

Each camera loops the bundled demo clip paced to its frame rate, as `edgewatch --config` runs a
file camera; grabbers, per-camera pipelines, the shared student and teacher queue run in this
process.  Resident memory, threads and open files are sampled every 10 s; warm-up is the first
fifth of the run (at least 60 s, at most 5 min), when caches, the analyzers' models and the
sliding windows fill.  Prints a table per minute, then threads, open files and, last,

    RSS growth after warm-up: X%

(from the median of the first minute after warm-up to the median of the last minute, so a single
garbage-collection spike does not decide it; target < 5%).

    python bench/soak.py --minutes 30 [--cameras 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.cameras import CameraConfig  # noqa: E402
from pipeline.config.loading import settings_from_dict  # noqa: E402
from pipeline.memory import limit_malloc_arenas  # noqa: E402
from pipeline.runner import Runner
from pipeline.analyzers.backends import select_backends


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--clip", type=Path, default=ROOT / "fixtures" / "demo" / "demo.mp4")
    args = ap.parse_args()
    limit_malloc_arenas()  # as `edgewatch` does at start (commands/main.py)
    logging.basicConfig(level=logging.ERROR)
    seconds = args.minutes * 60.0
    warm_up_s = min(300.0, max(60.0, seconds / 5.0))
    samples: list[tuple[float, float, int, int]] = []  # (t, rss, threads, open files)
    with tempfile.TemporaryDirectory() as out:
        settings = settings_from_dict({
            "output": {"out_dir": out},
            "student": {"backend": "offline"}, "teacher": {"backend": "offline"},
            "adaptive": {"enabled": True, "state_file": str(Path(out) / "state.json")},
        })
        cameras = [CameraConfig(id=f"cam{i}", source=str(args.clip)) for i in range(args.cameras)]
        clock = SystemClock()
        runner = Runner(settings, select_backends(settings, clock), clock=clock)
        stop_sampling = threading.Event()
        start = time.monotonic()

        def sample() -> None:
            while not stop_sampling.wait(10.0):
                samples.append((time.monotonic() - start, rss_mib(), threads(), open_files()))

        rss_start = rss_mib()
        cpu_start = time.process_time()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        summaries = runner.run_cameras(cameras, duration_s=seconds)
        wall = time.monotonic() - start
        cpu = time.process_time() - cpu_start
        stop_sampling.set()

    print(f"soak: {args.cameras} looped file cameras ({args.clip.name}), {wall / 60:.1f} min, "
          f"student/teacher: offline OpenCV analyzers (backend 'offline'), {os.cpu_count()} cores")
    print(f"{'minute':>6} {'RSS MiB':>8} {'threads':>8} {'open files':>11}")
    for minute in range(int(wall // 60) + 1):
        rows = [s for s in samples if minute * 60 <= s[0] < (minute + 1) * 60]
        if rows:
            print(f"{minute:6d} {statistics.median(r[1] for r in rows):8.1f} {max(r[2] for r in rows):8d} {max(r[3] for r in rows):11d}")
    analysed = sum(s.frames_analysed for s in summaries)
    events = sum(sum(s.events_by_type.values()) for s in summaries)
    print(f"frames analysed {analysed} ({analysed / wall:.1f}/s), events {events}, CPU {100 * cpu / wall:.0f}% of one core")
    after = [s for s in samples if s[0] >= warm_up_s]
    if len(after) < 2:
        print(f"RSS growth after warm-up: n/a (run longer than the {warm_up_s:.0f} s warm-up)")
        return
    first = [s for s in after if s[0] < after[0][0] + 60.0]
    last = [s for s in after if s[0] > after[-1][0] - 60.0]
    rss_warm = statistics.median(s[1] for s in first)
    rss_end = statistics.median(s[1] for s in last)
    print(f"RSS: {rss_start:.0f} MiB at start, {rss_warm:.0f} MiB after the {warm_up_s:.0f} s warm-up, {rss_end:.0f} MiB at the end")
    # Per minute the most seen: a sample taken while the run shuts down (threads ending) is not "the end".
    print(f"threads: first minute after warm-up {max(s[2] for s in first)}, last minute {max(s[2] for s in last)} "
          f"(max {max(s[2] for s in after)}); open files: {max(s[3] for s in first)}, {max(s[3] for s in last)} "
          f"(max {max(s[3] for s in after)})")
    print(f"RSS growth after warm-up: {100 * (rss_end - rss_warm) / rss_warm:+.1f}%")


if __name__ == "__main__":
    main()
