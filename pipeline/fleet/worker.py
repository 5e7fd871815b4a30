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

import logging
import threading
from dataclasses import dataclass
from typing import Any

from pipeline.analyzers.base import Teacher
from pipeline.clock import Clock
from pipeline.config.fleet import FleetConfig
from pipeline.config.zones import Zone
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






