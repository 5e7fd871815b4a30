"""A synthetic edge box for bench/fleet.py and the fleet tests: real bus, made-up escalations.

It sends ``cameras × escalations`` escalations (each its own incident, priorities in turn,
three small synthetic keyframes JPEG-encoded by the project's encoder) through a real
`FleetTeacherQueue` — with its local `TeacherQueue` and offline teacher behind it, exactly as a
box has — polls the answers as the runner does, and writes what it saw as JSON: which
escalations were sent, each answer (verdict or shed) with its latency, and the queue's summary.
Counting answers per escalation id is how the tests and the bench see "lost" and "applied twice".

    python -m tools.fleet_loadgen --redis URL --box b1 --cameras 3 --escalations 8 --out b1.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.clock import SystemClock
from pipeline.config.encode import EncodeConfig
from pipeline.config.settings import Settings
from pipeline.records import EncodedFrame, Escalation, Frame, FrameReport, GateDecision, GateReason, Priority

log = logging.getLogger("edgewatch.fleet.loadgen")

_PRIORITIES = (Priority.SAFETY, Priority.LOW_CONFIDENCE, Priority.FLAG_FLIP, Priority.AUDIT, Priority.SCENE_CHANGE)


def synthetic_escalation(camera: str, n: int, created_at: float) -> Escalation:
    """Escalation ``n`` of ``camera``: a dark block crossing a grey scene over three keyframes."""
    from pipeline.frames.encode import encode_image

    cfg = EncodeConfig(max_side=160, jpeg_quality=80)
    keyframes = []
    timeline = []
    priority = _PRIORITIES[n % len(_PRIORITIES)]
    flags = ("fall",) if priority == Priority.SAFETY else ()
    for i in range(3):
        image = np.full((120, 160, 3), 120, np.uint8)
        image[40:90, 20 + 40 * i:60 + 40 * i] = (30, 40, 60)
        jpeg, w, h = encode_image(image, cfg)
        t = created_at - 2.0 + i
        frame = Frame(source_id=camera, index=n * 10 + i, timestamp=t, image=image)
        gate = GateDecision(passed=True, reason=GateReason.CHANGE, score=12.0, changed_fraction=0.1)
        keyframes.append(EncodedFrame(frame=frame, jpeg=jpeg, b64="", width=w, height=h, gate=gate))
        timeline.append(FrameReport(camera=camera, frame_index=n * 10 + i, timestamp=t, observations=("person",),
                                    safety_flags=flags, confidence=0.6, backend="offline", model="synthetic",
                                    prompt_version="loadgen", latency_ms=5.0))
    return Escalation(id=f"{camera}-esc-{n:05d}", camera=camera, incident_id=f"{camera}-inc-{n:05d}",
                      reason="safety" if flags else priority.name.lower(), priority=priority, created_at=created_at,
                      flags=frozenset(flags), keyframes=tuple(keyframes), timeline=tuple(timeline))


def run_box(settings: Settings, *, box: str, cameras: int, escalations: int, interval_s: float,
            timeout_s: float, stop: threading.Event | None = None) -> dict[str, Any]:
    """Send the escalations, wait (at most ``timeout_s``) for every answer, return what happened."""
    from pipeline.analyzers.offline import OfflineTeacher
    from pipeline.fleet.edge import FleetTeacherQueue
    from pipeline.fleet.bus import RedisBus
    from pipeline.teacher.queue import QueueResult, TeacherQueue

    clock = SystemClock()
    fleet = settings.fleet
    local = TeacherQueue(OfflineTeacher(settings.offline, settings.zones, clock), settings.teacher, clock)
    bus = RedisBus(fleet.redis_url, fleet.stream_prefix, socket_timeout_s=fleet.socket_timeout_s)
    queue = FleetTeacherQueue(local, bus, fleet, settings.teacher, clock, box_id=box)
    stop = stop or threading.Event()
    sent: list[str] = []
    answers: list[dict[str, Any]] = []

    def collect() -> None:
        for result in queue.poll():
            if isinstance(result, QueueResult):
                answers.append({"id": result.escalation.id, "merged": list(result.escalation.merged_ids), "kind": "verdict",
                                "verdict": result.verdict.kind.value, "backend": result.verdict.backend,
                                "latency_s": round(result.wait_s + result.service_s, 4)})
            else:
                answers.append({"id": result.escalation_id, "merged": list(result.merged_ids), "kind": "shed",
                                "reason": result.reason})

    started = time.monotonic()
    for n in range(escalations):
        for c in range(cameras):
            esc = synthetic_escalation(f"{box}-cam{c}", n, created_at=float(n))
            queue.submit(esc)
            sent.append(esc.id)
        collect()
        if interval_s > 0 and stop.wait(interval_s):
            break
    queue.flush()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        collect()
        if _answered(sent, answers) >= len(sent):
            break
        time.sleep(0.02)
    finished = time.monotonic()
    queue.close(drain=True, timeout_s=5.0)
    collect()
    return {"box": box, "sent": sent, "answers": answers, "seconds": round(finished - started, 3),
            "summary": queue.summary()}


def _answered(sent: list[str], answers: list[dict[str, Any]]) -> int:
    covered = {a["id"] for a in answers} | {m for a in answers for m in a["merged"]}
    return sum(1 for s in sent if s in covered)


def tally(reports: list[dict[str, Any]]) -> dict[str, int]:
    """Across boxes: escalations sent, answered, lost (never answered) and applied twice (answered more than once)."""
    sent = answered = lost = twice = 0
    for report in reports:
        counts: dict[str, int] = {}
        for a in report["answers"]:
            for esc_id in (a["id"], *a["merged"]):
                counts[esc_id] = counts.get(esc_id, 0) + 1
        sent += len(report["sent"])
        answered += sum(1 for s in report["sent"] if counts.get(s, 0) >= 1)
        lost += sum(1 for s in report["sent"] if counts.get(s, 0) == 0)
        twice += sum(1 for n in counts.values() if n > 1)
    return {"sent": sent, "answered": answered, "lost": lost, "applied_twice": twice}


def main(argv: Sequence[str] | None = None) -> int:
    from pipeline.config.loading import settings_from_dict

    p = argparse.ArgumentParser(prog="python -m tools.fleet_loadgen", description=__doc__.split("\n")[0])
    p.add_argument("--redis", required=True)
    p.add_argument("--box", required=True)
    p.add_argument("--cameras", type=int, default=3)
    p.add_argument("--escalations", type=int, default=8, help="per camera")
    p.add_argument("--interval-ms", type=int, default=0, help="between rounds (one escalation per camera each)")
    p.add_argument("--timeout-s", type=float, default=60.0, help="longest wait for the answers")
    p.add_argument("--max-depth", type=int, default=200)
    p.add_argument("--reconnect-s", type=float, default=0.5)
    p.add_argument("--reply-timeout-s", type=float, default=120.0)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    settings = settings_from_dict({
        "teacher": {"batch_window_ms": 0},
        "fleet": {"redis_url": args.redis, "max_depth": args.max_depth, "reconnect_s": args.reconnect_s,
                  "reply_timeout_s": args.reply_timeout_s, "socket_timeout_s": 1.0},
    })
    report = run_box(settings, box=args.box, cameras=args.cameras, escalations=args.escalations,
                     interval_s=args.interval_ms / 1000.0, timeout_s=args.timeout_s)
    args.out.write_text(json.dumps(report), encoding="utf-8")
    t = tally([report])
    sys.stdout.write(f"box {args.box}: sent {t['sent']}, answered {t['answered']}, lost {t['lost']}, applied twice {t['applied_twice']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
