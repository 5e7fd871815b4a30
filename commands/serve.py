"""``edgewatch serve --out DIR``: serve a run folder's review page in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from commands.parsing import ArgumentParser
from pipeline.clock import Clock, SystemClock
from pipeline.config.settings import Settings
from pipeline.errors import UsageError
from pipeline.web import require_web_stack
from pipeline.web.security import check_bind


def _review_mqtt(settings: Settings, out_dir: Path, clock: Clock) -> Any:
    """A second MQTT client for feedback updates: its own id and buffer, and no availability topic
    (the run owns edgewatch/available; the page closing must not mark the cameras offline)."""
    from pipeline.sinks.mqtt import MqttSink

    cfg = settings.mqtt.model_copy(update={"client_id": settings.mqtt.client_id + "-review",
                                           "buffer_dir": out_dir / "mqtt-buffer-review"})
    return MqttSink.from_config(cfg, clock=clock, availability=False)


def cmd_serve(argv: Sequence[str]) -> int:
    """``edgewatch serve --out DIR``: serve a run folder's review page until SIGINT/SIGTERM."""
    from pipeline.config.loading import load_settings

    parser = ArgumentParser(prog="edgewatch serve", description="Serve the review page of a run folder (docs/REVIEW.md).")
    parser.add_argument("--out", type=Path, required=True, help="the run's output folder (events.jsonl, snapshots/, ...)")
    parser.add_argument("--config", type=Path, help="YAML config file (web, learning, adaptive and mqtt sections are used)")
    parser.add_argument("--host", help="address to listen on (default: web.host, 127.0.0.1); off loopback a token is required")
    parser.add_argument("--port", type=int, help="port (default: web.port; 0 picks a free one)")
    args = parser.parse_args(list(argv))
    if not args.out.is_dir():
        raise UsageError(f"--out {args.out}: no such folder (give a run's output folder)")
    settings = load_settings(args.config)
    out_dir = args.out.resolve()
    settings = settings.model_copy(update={"output": settings.output.model_copy(update={"out_dir": out_dir})})
    host = args.host or settings.web.host
    port = settings.web.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: must be 0..65535")
    check_bind(host, settings.web.token)
    require_web_stack()
    from pipeline.web.context import ReviewContext
    from pipeline.web.server import ReviewServer

    clock = SystemClock()
    mqtt = _review_mqtt(settings, out_dir, clock) if settings.mqtt.enabled else None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server = ReviewServer(ReviewContext.open(out_dir, settings, clock, mqtt=mqtt), host, port)
        sys.stdout.write(f"review page for {out_dir} on {server.url} (Ctrl-C stops it)\n")
        sys.stdout.flush()
        stop.wait()
        server.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if mqtt is not None:
            mqtt.close()
    sys.stdout.write("review page stopped\n")
    return 0
