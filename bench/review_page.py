"""Review page latency with a long history: writes N synthetic events (new + end line each, 4 cameras,
5 types) into a fresh run folder, then times the events page cold (index built from the logs), warm,
filtered, deep in the pages, after 100 appended events, and one event's page.

    .venv/bin/python bench/review_page.py [--events 10000] [--repeat 20]

Prints figures; asserts nothing.  Requests go through Starlette's TestClient (the app, templates and
index, without the network)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.testclient import TestClient  # noqa: E402

from pipeline.clock import SystemClock  # noqa: E402
from pipeline.config.loading import settings_from_dict  # noqa: E402
from pipeline.web.app import create_app  # noqa: E402
from pipeline.web.context import ReviewContext  # noqa: E402

TYPES = [("person", "activity"), ("motion", "activity"), ("fall", "alert"), ("fire", "alert"), ("smoke", "alert")]


def write_events(out: Path, first: int, count: int) -> None:
    with (out / "events.jsonl").open("a", encoding="utf-8") as fh:
        for i in range(first, first + count):
            type_, severity = TYPES[i % len(TYPES)]
            base = {"id": f"cam{i % 4}-{i:06d}-{type_}", "camera": f"cam{i % 4}", "type": type_, "severity": severity,
                    "state": "alert", "start": float(i), "flags": [type_] if severity == "alert" else [],
                    "peak_confidence": 0.8, "reasons": [f"{type_} observed", f"escalated cam{i % 4}-esc-{i:06d} to the teacher"],
                    "explanation": "", "snapshot": str(out / "snapshots" / f"cam{i % 4}-{i:06d}-{type_}.jpg")}
            fh.write(json.dumps({**base, "phase": "new", "end": None, "review": "pending_review"}) + "\n")
            fh.write(json.dumps({**base, "phase": "end", "end": i + 5.0,
                                 "review": "confirmed" if i % 3 else "dismissed"}) + "\n")
    with (out / "decisions.jsonl").open("a", encoding="utf-8") as fh:
        for i in range(first, first + count):
            fh.write(json.dumps({"kind": "decision", "camera": f"cam{i % 4}", "t": float(i), "frame": i, "escalate": False,
                                 "reason": "calm", "flags": [], "thresholds": {}, "queue_depth": 0,
                                 "student": {"observations": ["x"], "safetyFlags": [], "confidence": 0.9}}) + "\n")


def timed(client: TestClient, url: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        out.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return out


def line(name: str, ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"  {name:<38} n={len(ms):<3} median {statistics.median(ms):7.1f} ms  p95 {p95:7.1f} ms  max {max(ms):7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "snapshots").mkdir()
        write_events(out, 0, args.events)
        size = (out / "events.jsonl").stat().st_size
        settings = settings_from_dict({"output": {"out_dir": str(out)}})
        ctx = ReviewContext.open(out, settings, SystemClock())
        with TestClient(create_app(ctx)) as client:
            print(f"review page, {args.events} events ({size / 1e6:.1f} MB events.jsonl, {2 * args.events} lines):")
            print(line("events page, cold (index built)", timed(client, "/", 1)))
            print(line("events page, warm", timed(client, "/", args.repeat)))
            print(line("filtered: camera + type + status", timed(client, "/?camera=cam2&type=fire&status=confirmed", args.repeat)))
            print(line("filtered: start time range", timed(client, f"/?from={args.events // 2}&to={args.events // 2 + 500}", args.repeat)))
            print(line("page 150 (deep)", timed(client, "/?page=150", args.repeat)))
            print(line("event page", timed(client, f"/events/cam1-{args.events // 2 + 1:06d}-motion", args.repeat)))
            appended = []
            for k in range(5):
                write_events(out, args.events + k * 100, 100)
                appended += timed(client, "/", 1)
            print(line("events page after +100 events", appended))
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
