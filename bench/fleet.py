"""Edge boxes sharing teacher workers over Redis Streams: the scaling curve and a worker killed.

N box processes (`tools.fleet_loadgen`: a real `FleetTeacherQueue`, made-up escalations of
M cameras each, all sent at once) against 1, 2 and 4 `edgewatch teacher-worker` processes
with the **offline** teacher plus an added latency standing in for a GPU teacher
(``--added-latency-ms``).  Each run gets a fresh redis-server (docs/redis-edgewatch.conf: AOF,
fsync always) on a free loopback port.

Prints, per worker count: escalations, throughput (answers per second, from the first send to
the last answer, the slowest box) and median/p95 verdict latency (queued on the box → verdict
applied there).  Then a run with 2 workers where one is SIGKILLed while it holds a request:
``escalations lost`` and ``applied twice`` are counted from what the boxes applied.

    .venv/bin/python bench/fleet.py [--boxes 3] [--cameras 4] [--escalations 2] [--latency-ms 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import servers  # noqa: E402
from pipeline.fleet.bus import RedisBus  # noqa: E402
from tools.fleet_loadgen import tally  # noqa: E402

#: Bounded waits: worker start, a whole run, the victim taking a request.
WORKER_READY_S = 60.0
RUN_TIMEOUT_S = 600.0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))] if ordered else 0.0


def start_worker(port: int, name: str, tmp: Path, latency_ms: int, visibility_s: float) -> subprocess.Popen[bytes]:
    out = tmp / f"{name}.out"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_camera.py"), "teacher-worker", "--redis", f"redis://127.0.0.1:{port}/0",
         "--name", name, "--teacher", "offline", "--added-latency-ms", str(latency_ms)],
        cwd=ROOT, stdout=out.open("w"), stderr=(tmp / f"{name}.err").open("w"),
        env={**os.environ, "EDGEWATCH_FLEET__VISIBILITY_TIMEOUT_S": str(visibility_s)},
    )
    deadline = time.monotonic() + WORKER_READY_S
    while time.monotonic() < deadline and "READY" not in out.read_text():
        if proc.poll() is not None:
            raise SystemExit(f"worker {name} exited: {(tmp / f'{name}.err').read_text()[-500:]}")
        time.sleep(0.05)
    return proc


def run(args: argparse.Namespace, workers: int, tmp: Path, *, kill_one: bool = False) -> dict[str, float]:
    redis = servers.start_redis(tmp / "redis")
    port = redis.port
    procs = [start_worker(port, f"w{i}", tmp, args.latency_ms, args.visibility_s) for i in range(workers)]
    boxes = [subprocess.Popen(
        [sys.executable, "-m", "tools.fleet_loadgen", "--redis", f"redis://127.0.0.1:{port}/0", "--box", f"box{b}",
         "--cameras", str(args.cameras), "--escalations", str(args.escalations), "--max-depth", "100000",
         "--timeout-s", str(RUN_TIMEOUT_S), "--out", str(tmp / f"box{b}.json")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(tmp / f"box{b}.err").open("w")) for b in range(args.boxes)]
    killed = ""
    try:
        if kill_one:
            bus = RedisBus(f"redis://127.0.0.1:{port}/0")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                bus.ensure_request_groups()
                if any(bus._redis.xpending_range(s, bus.group, "-", "+", 1, consumername="w0") for s in bus.request_streams):  # noqa: SLF001
                    procs[0].kill()
                    killed = "w0"
                time.sleep(0.02)
            bus.close()
        for box in boxes:
            box.wait(RUN_TIMEOUT_S + 30)
    finally:
        for p in [*procs, *boxes]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        redis.kill()
    reports = [json.loads((tmp / f"box{b}.json").read_text()) for b in range(args.boxes)]
    latencies = [a["latency_s"] for r in reports for a in r["answers"] if a["kind"] == "verdict"]
    seconds = max(r["seconds"] for r in reports)
    counts = tally(reports)
    reclaimed = sum(int(line.split(" reclaimed")[0].rsplit(",", 1)[-1].strip() or 0)
                    for i in range(workers) for line in (tmp / f"w{i}.out").read_text().splitlines() if " reclaimed" in line)
    return {**counts, "seconds": seconds, "throughput": counts["answered"] / seconds if seconds else 0.0,
            "p50": _percentile(latencies, 0.5), "p95": _percentile(latencies, 0.95), "killed": killed, "reclaimed": reclaimed}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--boxes", type=int, default=3)
    p.add_argument("--cameras", type=int, default=4, help="per box")
    p.add_argument("--escalations", type=int, default=2, help="per camera, all sent at once")
    p.add_argument("--latency-ms", type=int, default=2000, help="added to each offline review (stands in for a GPU teacher)")
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--visibility-s", type=float, default=3.0, help="fleet.visibility_timeout_s of the workers")
    args = p.parse_args()
    if not servers.redis_available():
        raise SystemExit("redis-server not installed (apt-get install redis-server)")
    total = args.boxes * args.cameras * args.escalations
    print(f"{args.boxes} boxes x {args.cameras} cameras x {args.escalations} escalations = {total}; "
          f"workers: offline teacher + {args.latency_ms} ms added latency; Redis with AOF (fsync always) on loopback")
    print(f"{'workers':>7}  {'answered':>8}  {'seconds':>7}  {'verdicts/s':>10}  {'p50 s':>6}  {'p95 s':>6}")
    for workers in (int(w) for w in args.workers.split(",")):
        with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
            r = run(args, workers, Path(tmp))
        print(f"{workers:>7}  {r['answered']:>8}  {r['seconds']:>7.2f}  {r['throughput']:>10.2f}  {r['p50']:>6.2f}  {r['p95']:>6.2f}")
    with tempfile.TemporaryDirectory(prefix="fleet-bench-kill-") as tmp:
        r = run(args, 2, Path(tmp), kill_one=True)
    print(f"2 workers, {r['killed'] or 'NO WORKER'} SIGKILLed while holding a request (visibility timeout {args.visibility_s:g} s): "
          f"sent {r['sent']}, answered {r['answered']} in {r['seconds']:.2f} s, reclaimed {r['reclaimed']}")
    print(f"escalations lost: {r['lost']}")
    print(f"applied twice: {r['applied_twice']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
