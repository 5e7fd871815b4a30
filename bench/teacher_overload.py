"""Overload benchmark of the teacher queue, with a FAKE teacher (no model is called).

Escalations arrive every ``--arrival-ms`` from 4 cameras (about 10 % safety) while the fake
teacher takes ``--teacher-ms`` per review (10x slower by default).  Prints the queue depth
maximum (must stay within the bound), median/p95 wait, sheds by priority, merges, safety
escalations lost (must be 0) and memory growth.  Bounded: it submits ``--count`` escalations,
drains, and stops by itself.

    /tmp/venv/bin/python bench/teacher_overload.py [--count 300] [--arrival-ms 20] [--teacher-ms 200]
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.models import TeacherConfig  # noqa: E402
from pipeline.records import Escalation, Priority, Verdict, VerdictKind  # noqa: E402
from pipeline.teacher.queue import QueueResult, ShedRecord, TeacherQueue  # noqa: E402

CAMERAS = ("cam-a", "cam-b", "cam-c", "cam-d")
#: Share of each priority among arrivals (safety ~10 %).
MIX = ((Priority.AUDIT, 0.30), (Priority.SCENE_CHANGE, 0.20), (Priority.FLAG_FLIP, 0.20),
       (Priority.LOW_CONFIDENCE, 0.20), (Priority.SAFETY, 0.10))


class FakeSlowTeacher:
    """A fake teacher: sleeps a fixed time per review and confirms everything."""

    backend = "fake"
    model = "fake-slow-teacher"

    def __init__(self, clock: SystemClock, service_s: float) -> None:
        self._clock = clock
        self._service_s = service_s

    def review(self, escalation: Escalation) -> Verdict:
        self._clock.sleep(self._service_s)
        return Verdict(escalation.id, escalation.camera, escalation.incident_id, VerdictKind.CONFIRMED, (), (),
                       1.0, "fake teacher: always confirms", self.backend, self.model, self._service_s * 1000)

    def close(self) -> None:
        pass


def rss_kib() -> int:
    """Resident set size from /proc/self/statm (0 where /proc is absent)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    import resource

    return pages * resource.getpagesize() // 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--arrival-ms", type=float, default=20.0)
    parser.add_argument("--teacher-ms", type=float, default=200.0)
    parser.add_argument("--depth", type=int, default=15)
    parser.add_argument("--batch-ms", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--safety-share", type=float, default=0.10, help="share of safety escalations (0..1)")
    args = parser.parse_args(argv)
    if not (1 <= args.count <= 100_000 and args.arrival_ms >= 0 and args.teacher_ms >= 0 and 0 <= args.safety_share <= 1):
        parser.error("--count must be 1..100000, times >= 0 and --safety-share in 0..1")
    others = [(p, w) for p, w in MIX if p != Priority.SAFETY]
    scale = (1.0 - args.safety_share) / sum(w for _, w in others)
    mix = [(p, w * scale) for p, w in others] + [(Priority.SAFETY, args.safety_share)]

    rng = random.Random(args.seed)
    clock = SystemClock()
    cfg = TeacherConfig(max_queue_depth=args.depth, batch_window_ms=args.batch_ms, max_concurrent=1,
                        timeout_ms=60000, first_call_timeout_ms=60000)
    teacher = FakeSlowTeacher(clock, args.teacher_ms / 1000.0)

    tracemalloc.start()
    rss_before = rss_kib()
    queue = TeacherQueue(teacher, cfg, clock)
    results: list[QueueResult] = []
    shed_records: list[ShedRecord] = []
    safety_ids: set[str] = set()
    depth_seen = 0
    incident_of = {cam: 0 for cam in CAMERAS}

    def drain() -> None:
        for r in queue.poll():
            (results if isinstance(r, QueueResult) else shed_records).append(r)  # type: ignore[arg-type]

    started = clock.monotonic()
    for i in range(args.count):
        camera = rng.choice(CAMERAS)
        if rng.random() < 0.1:  # a new incident now and then, so some escalations merge and some do not
            incident_of[camera] += 1
        priority = rng.choices([p for p, _ in mix], weights=[w for _, w in mix])[0]
        # Safety follows the camera's open incident; other reasons often stand alone (as in the runner).
        alone = priority != Priority.SAFETY and rng.random() < 0.5
        incident = f"{camera}-esc-{i}" if alone else f"{camera}-inc-{incident_of[camera]}"
        esc = Escalation(id=f"esc-{i:05d}", camera=camera, incident_id=incident,
                         reason=priority.name.lower(), priority=priority, created_at=i * args.arrival_ms / 1000,
                         flags=frozenset({"fire"}) if priority == Priority.SAFETY else frozenset(),
                         keyframes=(), timeline=())
        if priority == Priority.SAFETY:
            safety_ids.add(esc.id)
        queue.submit(esc)
        depth_seen = max(depth_seen, queue.state().depth)
        drain()
        clock.sleep(args.arrival_ms / 1000.0)
    arrivals_s = clock.monotonic() - started
    queue.close(drain=True, timeout_s=60.0)
    drain()
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = rss_kib()

    stats = queue.stats
    reviewed = {r.escalation.id for r in results} | {m for r in results for m in r.escalation.merged_ids}
    shed_ids = {s.escalation_id for s in shed_records} | {m for s in shed_records for m in s.merged_ids}
    unaccounted = args.count - len(reviewed | shed_ids)
    safety_lost = len(safety_ids - reviewed)
    safety_shed = sum(1 for s in shed_records if s.priority == Priority.SAFETY)
    threads_left = [t.name for t in threading.enumerate() if t.name.startswith("teacher-")]

    print("teacher queue overload benchmark — FAKE teacher (fake-slow-teacher), no model called")
    print(f"  arrivals: {args.count} escalations every {args.arrival_ms:.0f} ms over {arrivals_s:.1f} s, "
          f"{len(CAMERAS)} cameras, {len(safety_ids)} safety")
    print(f"  fake teacher: {args.teacher_ms:.0f} ms per review, 1 worker; queue bound {args.depth}, batch window {args.batch_ms} ms")
    print(f"  queue depth max: {max(depth_seen, stats.depth_max)} (bound {args.depth}) "
          f"{'OK' if max(depth_seen, stats.depth_max) <= args.depth else 'EXCEEDED'}; safety overflow max {stats.overflow_max}")
    print(f"  wait: median {stats.wait_median_s:.3f} s, p95 {stats.wait_p95_s:.3f} s; "
          f"service median {stats.service_median_s:.3f} s")
    print(f"  reviewed: {stats.served} requests covering {len(reviewed)} escalations; merges {stats.merged}")
    by_priority = ", ".join(f"{p.name} {stats.shed_by_priority.get(p.name, 0)}" for p, _ in MIX)
    print(f"  shed: {stats.shed} ({by_priority}); by reason {stats.shed_by_reason}")
    print(f"  accounted: {len(reviewed)} reviewed + {len(shed_ids)} shed of {args.count} submitted; unaccounted {unaccounted}")
    print(f"  safety escalations lost: {safety_lost} (shed {safety_shed}) {'OK' if safety_lost == 0 else 'LOST'}")
    print(f"  memory: tracemalloc peak {peak_bytes / 1024:.0f} KiB; RSS {rss_before} -> {rss_after} KiB "
          f"(+{rss_after - rss_before} KiB)")
    print(f"  teacher threads left running: {len(threads_left)}")
    ok = safety_lost == 0 and unaccounted == 0 and max(depth_seen, stats.depth_max) <= args.depth
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
