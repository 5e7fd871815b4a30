"""``edgewatch teacher-worker``: a GPU host's loop over the escalation bus.

Each round the worker first takes over requests that another worker left unanswered past the
visibility timeout (``XAUTOCLAIM``; it died), then reads the next request, highest priority
first.  It rebuilds the escalation from the wire (keyframes decoded from the box's JPEG bytes),
asks its teacher (Ollama or the offline analyzer), and writes the verdict to the box's reply
stream — acknowledging the request in the same transaction.  While the teacher works, a
heartbeat renews the claim every third of the visibility timeout, so a slow review is not
mistaken for a dead worker.  A teacher that raises, or a request that cannot be decoded, is
answered ``unverified`` with the reason: every request gets an answer.

Redis unreachable: the worker logs it once, retries every ``fleet.reconnect_s`` and goes on
(a verdict it could not write is written once Redis is back; the request stays pending until
then).  SIGTERM/SIGINT: finish the review in hand, write it, exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from pipeline.analyzers.base import Teacher
from pipeline.clock import Clock, SystemClock
from pipeline.config import FleetConfig, Settings, Zone
from pipeline.errors import UsageError
from pipeline.fleet.bus import BusError, BusUnavailable, Entry, RedisBus
from pipeline.fleet.wire import WireError, decode_request, encode_verdict, request_ids
from pipeline.records import Escalation, Priority, Verdict, VerdictKind

log = logging.getLogger("edgewatch.fleet.worker")

#: Longest a read blocks when the bus is empty (so stop and reclaim are checked this often).
_READ_BLOCK_MS = 500


@dataclass
class WorkerStats:
    verdicts: int = 0
    reclaimed: int = 0
    unverified: int = 0
    bus_errors: int = 0


class TeacherWorker:
    """Serves requests from the bus with one teacher, one at a time."""

    def __init__(self, bus: RedisBus, teacher: Teacher, cfg: FleetConfig, clock: Clock, *, name: str,
                 metrics: Any | None = None, added_latency_s: float = 0.0) -> None:
        self._bus = bus
        self._teacher = teacher
        self._cfg = cfg
        self._clock = clock
        self.name = name
        self._metrics = metrics
        self._added_latency_s = added_latency_s
        self.stop = threading.Event()
        self.stats = WorkerStats()
        self._bus_ok = True

    def run(self, max_requests: int | None = None) -> WorkerStats:
        """Serve until `stop` is set (or ``max_requests`` answered)."""
        log.warning("teacher worker %s: %s (%s) on the bus at %s", self.name, self._teacher.model,
                    self._teacher.backend, self._bus.shown_url)
        while not self.stop.is_set() and (max_requests is None or self.stats.verdicts < max_requests):
            try:
                entry, reclaimed = self._next()
                if entry is not None:
                    self._serve(entry, reclaimed)
                self._report_figures()
                self._bus_restored()
            except BusUnavailable as exc:
                self._bus_lost(exc)
                self.stop.wait(self._cfg.reconnect_s)
        return self.stats

    def _next(self) -> tuple[Entry | None, bool]:
        claimed = self._bus.reclaim(self.name, min_idle_ms=int(self._cfg.visibility_timeout_s * 1000))
        if claimed:
            self.stats.reclaimed += 1
            if self._metrics is not None:
                self._metrics.reclaimed(self.name)
            log.warning("worker %s took over request %s (idle past %.0f s: its worker stopped)",
                        self.name, claimed[0].entry_id, self._cfg.visibility_timeout_s)
            return claimed[0], True
        return self._bus.read_request(self.name, block_ms=_READ_BLOCK_MS), False

    def _serve(self, entry: Entry, reclaimed: bool) -> None:
        started = self._clock.monotonic()
        beat = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(entry, beat), name=f"heartbeat-{entry.entry_id}", daemon=True)
        heartbeat.start()
        try:
            rid, box, verdict = self._review(entry)
        finally:
            beat.set()
            heartbeat.join(timeout=self._cfg.socket_timeout_s + 1.0)
        service_s = self._clock.monotonic() - started
        reply = encode_verdict(rid, verdict, worker=self.name, service_s=service_s)
        self._write(entry, box, reply)
        self.stats.verdicts += 1
        self.stats.unverified += verdict.kind == VerdictKind.UNVERIFIED
        if self._metrics is not None:
            self._metrics.worker_verdict(self.name, verdict.kind.value, service_s)
        log.info("worker %s answered %s: %s in %.2f s%s", self.name, rid, verdict.kind.value, service_s,
                 " (reclaimed)" if reclaimed else "")

    def _review(self, entry: Entry) -> tuple[str, str, Verdict]:
        try:
            rid, box = request_ids(entry.fields)
        except WireError as exc:
            # Nobody to answer: acknowledge it away so it does not come back forever.
            log.error("request %s has no request id or box (%s): acknowledged and dropped", entry.entry_id, exc)
            return "", "", _placeholder_verdict(entry.entry_id, str(exc))
        try:
            request = decode_request(entry.fields)
        except WireError as exc:
            log.warning("request %s unreadable: %s", rid, exc)
            return rid, box, _placeholder_verdict(rid, f"request unreadable by worker {self.name}: {exc}")
        esc = request.escalation
        book = getattr(self._teacher, "zones", None)
        if book is not None and request.zones:
            try:
                book.set_zones(esc.camera, [Zone.model_validate(z) for z in request.zones])
            except ValueError as exc:
                log.warning("request %s: zones ignored (%s)", rid, exc)
        if self._added_latency_s > 0:
            self.stop.wait(self._added_latency_s)  # stands in for a slower teacher (tests and bench only)
        try:
            verdict = self._teacher.review(esc)
        except Exception as exc:  # a teacher must not raise; if it does the request is still answered
            log.exception("teacher failed on %s", rid)
            verdict = Verdict.unverified(esc, backend=self._teacher.backend, model=self._teacher.model, latency_ms=0.0,
                                         why=f"teacher failed on worker {self.name}: {type(exc).__name__}: {exc}")
        return rid, box, verdict

    def _heartbeat(self, entry: Entry, done: threading.Event) -> None:
        period = self._cfg.visibility_timeout_s / 3.0
        while not done.wait(period):
            try:
                self._bus.renew(entry, self.name)
            except BusError as exc:
                log.info("heartbeat for %s failed: %s", entry.entry_id, exc)

    def _write(self, entry: Entry, box: str, reply: dict[bytes, bytes]) -> None:
        """Write the verdict and acknowledge; retried until Redis takes it (the request stays pending meanwhile)."""
        while True:
            try:
                if box:
                    self._bus.answer(entry, box, reply, self._cfg.reply_max_len)
                else:
                    self._bus.discard(entry)
                return
            except BusUnavailable as exc:
                self._bus_lost(exc)
                if self.stop.wait(self._cfg.reconnect_s):
                    # Stopping with Redis away: the request stays pending and another worker reclaims it.
                    log.warning("worker %s stopping with the verdict for %s unwritten: it will be reclaimed",
                                self.name, entry.entry_id)
                    return

    def _report_figures(self) -> None:
        if self._metrics is None:
            return
        figures = self._bus.figures()
        self._metrics.set_streams({p.name.lower(): (f.length, f.pending) for p, f in figures.items()})

    def _bus_lost(self, exc: BaseException) -> None:
        self.stats.bus_errors += 1
        if self._bus_ok:
            log.warning("worker %s: %s; retrying every %.1f s", self.name, exc, self._cfg.reconnect_s)
        self._bus_ok = False
        if self._metrics is not None:
            self._metrics.set_bus_up(False)

    def _bus_restored(self) -> None:
        if not self._bus_ok:
            log.warning("worker %s: the bus answers again", self.name)
        self._bus_ok = True
        if self._metrics is not None:
            self._metrics.set_bus_up(True)


def _placeholder_verdict(rid: str, why: str) -> Verdict:
    """The unverified answer to a request whose escalation cannot be rebuilt."""
    esc = Escalation(id=rid.rsplit("/", 1)[-1] or rid, camera="", incident_id="", reason="unreadable",
                     priority=Priority.AUDIT, created_at=0.0, flags=frozenset(), keyframes=(), timeline=())
    return Verdict.unverified(esc, backend="none", model="none", latency_ms=0.0, why=why)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from pipeline.cli import _ArgumentParser

    p = _ArgumentParser(prog="edgewatch teacher-worker",
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
    from pipeline.config import load_settings, settings_from_dict

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
    from pipeline.cli import _setup_logging
    from pipeline.runner import select_backends

    args = _parser().parse_args(argv)
    if args.added_latency_ms < 0 or (args.max_requests is not None and args.max_requests < 1):
        raise UsageError("--added-latency-ms must be >= 0 and --max-requests >= 1")
    settings = _worker_settings(args)
    _setup_logging(args.verbose, settings.log_level, settings.log_format)
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
