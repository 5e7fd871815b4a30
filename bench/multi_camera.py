"""Four simulated 30 fps cameras through the whole pipeline with the offline student, for a fixed time.

Each "camera" is a real HTTP MJPEG stream served on 127.0.0.1 by a subprocess (tests/servers.py)
looping the bundled demo clip at 30 fps; edgewatch's live grabbers, per-camera pipelines, shared
student and teacher queue run in this process, as `edgewatch --config` would run them.

Prints per camera: frames received and analysed per second, analysis lag behind the newest
frame (p50/p95/max: a growing backlog would show as a large max), and for the
process: CPU share (of one core) and resident memory at start and end (growth under 10%).

Memory: warm-up is the first 30 s (three sliding windows of 10 s: every per-frame structure has
filled and cycled, the analyzers' models are loaded); growth compares the median of the 10 s after
it with the median of the last 10 s (one garbage-collection spike does not decide it).  Over
longer times see bench/soak.py.

    python bench/multi_camera.py [--seconds 90] [--cameras 4]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.cameras import CameraConfig  # noqa: E402
from pipeline.config.loading import settings_from_dict  # noqa: E402
from pipeline.memory import limit_malloc_arenas  # noqa: E402
from pipeline.runner import Runner
from pipeline.analyzers.backends import select_backends
from servers import start_mjpeg  # noqa: E402


#: Three sliding windows (window.window_s = 10 s): every per-frame structure has filled and cycled.
_WARM_UP_S = 30.0


def rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--cameras", type=int, default=4)
    args = ap.parse_args()
    limit_malloc_arenas()  # as `edgewatch` does at start (commands/main.py)
    logging.basicConfig(level=logging.ERROR)
    demo = ROOT / "fixtures" / "demo" / "demo.mp4"
    servers = [start_mjpeg(demo, fps=30.0) for _ in range(args.cameras)]
    try:
        with tempfile.TemporaryDirectory() as out:
            settings = settings_from_dict({
                "output": {"out_dir": out},
                "student": {"backend": "offline"}, "teacher": {"backend": "offline"},
                "adaptive": {"enabled": True, "state_file": str(Path(out) / "state.json")},
            })
            cameras = [CameraConfig(id=f"cam{i}", source=f"http://127.0.0.1:{srv.port}/stream.mjpg")
                       for i, srv in enumerate(servers)]
            clock = SystemClock()
            runner = Runner(settings, select_backends(settings, clock), clock=clock)
            samples: list[tuple[float, float]] = []
            stop_sampling = threading.Event()

            def sample_rss() -> None:
                while not stop_sampling.wait(1.0):
                    samples.append((time.monotonic(), rss_mib()))

            rss_start = rss_mib()
            cpu_start, wall_start = time.process_time(), time.monotonic()
            sampler = threading.Thread(target=sample_rss, daemon=True)
            sampler.start()
            summaries = runner.run_cameras(cameras, duration_s=args.seconds)
            wall = time.monotonic() - wall_start
            cpu = time.process_time() - cpu_start
            stop_sampling.set()
            after = [(t - wall_start, r) for t, r in samples if t - wall_start >= _WARM_UP_S]
            first = [r for t, r in after if t < _WARM_UP_S + 10.0]
            last = [r for t, r in after if t > after[-1][0] - 10.0] if after else []
            rss_warm = statistics.median(first) if first else rss_start
            rss_end = statistics.median(last) if last else rss_mib()
    finally:
        for srv in servers:
            srv.stop()

    print(f"multi_camera: {args.cameras} MJPEG cameras at 30 fps (demo clip, 640x360), {wall:.1f} s, "
          f"student/teacher: offline OpenCV analyzers (backend 'offline'), 2 cores")
    print(f"{'camera':<7} {'recv fps':>9} {'analysed/s':>11} {'lag p50':>8} {'lag p95':>8} {'lag max':>8}")
    for s in summaries:
        lag = s.lag_s or {}
        print(f"{s.camera:<7} {s.frames_read / wall:9.1f} {s.frames_analysed / wall:11.2f} "
              f"{lag.get('p50', 0):8.3f} {lag.get('p95', 0):8.3f} {lag.get('max', 0):8.3f}")
    print(f"lag bounded: max lag per camera {[round((s.lag_s or {}).get('max', 0), 2) for s in summaries]} s "
          f"(the student runs behind the newest frame by at most this much; a growing backlog would show here)")
    print(f"CPU: {100 * cpu / wall:.0f}% of one core ({cpu:.1f} s CPU in {wall:.1f} s)")
    growth = 100 * (rss_end - rss_warm) / rss_warm if rss_warm else 0.0
    print(f"resident memory: {rss_start:.0f} MiB at start, {rss_warm:.0f} MiB after the {_WARM_UP_S:.0f} s warm-up, {rss_end:.0f} MiB at the end "
          f"-> growth after warm-up {growth:+.1f}% (target < 10%): {'PASS' if growth < 10 else 'MISS'}")
    print(f"peak RSS (getrusage): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
