"""Argument parsing for `edgewatch teacher-worker`: review escalations from the Redis bus with this host's teacher.
"""

from __future__ import annotations

import logging
import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Sequence
from commands.parsing import ArgumentParser
from commands.run import setup_logging
from pipeline.clock import SystemClock
from pipeline.config.settings import Settings
from pipeline.errors import UsageError
from pipeline.fleet.bus import RedisBus
from pipeline.fleet.worker import TeacherWorker

log = logging.getLogger("edgewatch.fleet")


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="edgewatch teacher-worker",
                        description="Review escalations from the Redis bus with this host's teacher (docs/FLEET.md).")
    p.add_argument("--config", type=Path, help="YAML config (teacher:, offline:, fleet:, metrics: sections are used)")
    p.add_argument("--redis", help="Redis URL of the bus (default: config fleet.redis_url)")
    p.add_argument("--name", help="this worker's consumer name (default: host name and process id)")
    p.add_argument("--teacher", choices=["auto", "offline", "ollama"], help="teacher backend (default: config, auto)")
    p.add_argument("--ollama-host", help="Ollama host of the teacher (default: config)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (default: config metrics.port when metrics.enabled)")
    p.add_argument("--added-latency-ms", type=int, default=0, metavar="MS",
                   help="TESTS AND BENCHMARKS ONLY: sleep this long before each review to stand in for a slower teacher")
    p.add_argument("--max-requests", type=int, metavar="N", help="exit after answering N requests")
    p.add_argument("--verbose", action="store_true")
    return p


def _worker_settings(args: argparse.Namespace) -> Settings:
    from pipeline.config.loading import load_settings, settings_from_dict

    data = load_settings(args.config).model_dump()
    data["student"]["backend"] = "offline"  # a worker has no student: never probe for one
    if args.teacher:
        data["teacher"]["backend"] = args.teacher
    if args.ollama_host:
        data["teacher"]["host"] = args.ollama_host
    if args.redis:
        data["fleet"]["redis_url"] = args.redis
    return settings_from_dict(data)


def cmd_teacher_worker(argv: Sequence[str]) -> int:
    from pipeline.analyzers.backends import select_backends

    args = _parser().parse_args(argv)
    if args.added_latency_ms < 0 or (args.max_requests is not None and args.max_requests < 1):
        raise UsageError("--added-latency-ms must be >= 0 and --max-requests >= 1")
    settings = _worker_settings(args)
    setup_logging(args.verbose, settings.log_level, settings.log_format)
    if not settings.fleet.redis_url:
        raise UsageError("no Redis URL: give --redis URL or set fleet.redis_url")
    clock = SystemClock()
    name = args.name or f"{socket.gethostname()}-{os.getpid()}"
    bus = RedisBus(settings.fleet.redis_url, settings.fleet.stream_prefix, socket_timeout_s=settings.fleet.socket_timeout_s)
    backends = select_backends(settings, clock)
    if backends.fallback:
        sys.stderr.write(f"edgewatch: NOTICE: {backends.fallback}\n")
    metrics = server = None
    port = args.metrics_port if args.metrics_port is not None else (settings.metrics.port if settings.metrics.enabled else None)
    if port is not None:
        from pipeline.sinks.metrics import FleetMetrics, MetricsServer

        metrics = FleetMetrics()
        server = MetricsServer(metrics, lambda: {"worker": name}, host=settings.metrics.host, port=port)
        sys.stdout.write(f"metrics on {server.url}/metrics\n")
    worker = TeacherWorker(bus, backends.teacher, settings.fleet, clock, name=name, metrics=metrics,
                           added_latency_s=args.added_latency_ms / 1000.0)

    def _on_stop(signum: int, _frame: object) -> None:
        log.warning("worker %s: %s, finishing the review in hand", name, signal.Signals(signum).name)
        worker.stop.set()

    previous = {sig: signal.signal(sig, _on_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    sys.stdout.write(f"READY worker {name}\n")
    sys.stdout.flush()
    try:
        stats = worker.run(max_requests=args.max_requests)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        backends.teacher.close()
        backends.student.close()
        bus.close()
        if server is not None:
            server.close()
    sys.stdout.write(f"worker {name}: {stats.verdicts} verdicts ({stats.unverified} unverified), "
                     f"{stats.reclaimed} reclaimed, {stats.bus_errors} bus errors\n")
    return 0
