"""The edge box's side of the bus: a teacher queue that sends escalations to Redis.

`FleetTeacherQueue` has the runner's teacher-queue interface (``submit``, ``poll``, ``state``,
``flush``, ``wait_idle``, ``close``, ``summary``), so the runner uses it where it would use
`TeacherQueue`.

* **Submitting** (runner thread, never blocks on the network): an escalation goes to a small
  outbox where, for ``teacher.batch_window_ms``, follow-ups of the same camera and incident fold
  into it (as in the local queue).  The box's bus thread then sends it through the site-wide
  admission (`RedisBus.admit`) under a request id unique across boxes and restarts.
* **Answers**: the bus thread reads the box's reply stream.  Each request is answered once: a
  reply for a request already answered (delivery is at least once) is counted and dropped.
* **Redis unreachable**: announced (a warning, ``edgewatch_fleet_fallbacks``) and from then on
  escalations go to the box's own `TeacherQueue` and direct teacher, so monitoring goes on.
  Requests already on the bus stay there (Redis keeps them across a restart); one unanswered
  for ``fleet.reply_timeout_s`` while Redis is away is reviewed locally instead (a late bus
  answer is then a dropped duplicate).  Every ``fleet.reconnect_s`` Redis is tried again; when
  it answers, that is announced, new escalations go to the bus again and the local queue
  drains what it holds.

All Redis traffic happens on the one bus thread; the runner's thread only touches memory.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.clock import Clock
from pipeline.config.fleet import FleetConfig
from pipeline.config.models import TeacherConfig
from pipeline.incidents.escalation import QueueState
from pipeline.fleet.bus import BusError, BusUnavailable, RedisBus, priority_order
from pipeline.fleet.wire import WireError, decode_reply, encode_request
from pipeline.records import Escalation, Priority
from pipeline.teacher.queue import SHED_HORIZON_S, QueueResult, ShedRecord, SubmitResult, TeacherQueue, merge_escalations

log = logging.getLogger("edgewatch.fleet.edge")

#: What travels with an escalation besides itself: (thresholds in force, the camera's zones).
ContextFn = Callable[[str], tuple[Mapping[str, Any], list[Mapping[str, Any]]]]
#: Longest the bus thread blocks reading replies, so new escalations leave promptly.
_REPLY_BLOCK_MS = 100
#: How often the stream figures (depth, pending) are refreshed.
_FIGURES_EVERY_S = 1.0
_KEEP_FIGURES = 10_000


@dataclass(slots=True)
class _Outgoing:
    escalation: Escalation
    seq: int
    queued_at: float


@dataclass(slots=True)
class _Open:
    """A request sent to the bus (or handed to the local queue) and not answered yet."""

    escalation: Escalation
    queued_at: float
    sent_at: float
    local: bool = False


@dataclass
class _Counters:
    submitted: int = 0
    queued: int = 0
    merged: int = 0
    sent: int = 0
    answered_by_bus: int = 0
    answered_locally: int = 0
    handed_to_local: int = 0
    duplicates: int = 0
    malformed_replies: int = 0
    fallbacks: int = 0
    shed_by_reason: dict[str, int] = field(default_factory=dict)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_KEEP_FIGURES))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))]


class FleetTeacherQueue:
    def __init__(self, local: TeacherQueue, bus: RedisBus, cfg: FleetConfig, teacher_cfg: TeacherConfig, clock: Clock, *,
                 box_id: str, metrics: Any | None = None, context: ContextFn | None = None) -> None:
        self._local = local
        self._bus = bus
        self._cfg = cfg
        self._max_keyframes = teacher_cfg.max_keyframes
        self._batch_s = teacher_cfg.batch_window_ms / 1000.0
        self._clock = clock
        self.box_id = box_id
        self._boot = uuid.uuid4().hex[:8]
        self._metrics = metrics
        self._context = context
        self._cond = threading.Condition()
        self._outbox: list[_Outgoing] = []
        self._open: dict[str, _Open] = {}
        self._rid_by_escalation: dict[str, str] = {}
        self._results: deque[QueueResult | ShedRecord] = deque()
        self._shed_times: deque[float] = deque()
        self._seq = 0
        self._flush_seq = 0
        self._site_depth = 0
        self._figures_at = float("-inf")
        self._bus_up = False
        self._closed = False
        self._stop = False
        self._counters = _Counters()
        try:
            bus.ping()
            bus.ensure_request_groups()
            self._bus_up = True
            log.warning("teacher requests go to the bus at %s as box %r", bus.shown_url, box_id)
        except BusError as exc:
            with self._cond:
                self._lose_bus_locked(exc)
        self._set_bus_metric()
        self._thread = threading.Thread(target=self._bus_main, name="fleet-bus", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------
    # The runner's side (its own thread; memory only)
    # ------------------------------------------------------------------------------------

    @property
    def bus_up(self) -> bool:
        with self._cond:
            return self._bus_up

    def submit(self, esc: Escalation) -> SubmitResult:
        with self._cond:
            self._counters.submitted += 1
            if self._closed:
                self._shed_locked(esc, "closed", "the teacher queue is closed")
                return SubmitResult("shed", esc.id, shed_id=esc.id, reason="the teacher queue is closed")
            if not self._bus_up:
                local = True
            else:
                local = False
                result = self._submit_outbox_locked(esc)
                self._cond.notify_all()
        if local:
            result = self._local.submit(esc)
            with self._cond:
                self._counters.answered_locally += result.outcome != "shed"
            if self._metrics is not None and result.outcome != "shed":
                self._metrics.local_review()
            return SubmitResult(result.outcome, result.escalation_id, result.into_id, result.shed_id,
                                f"Redis unreachable, local teacher queue: {result.reason}")
        return result

    def _submit_outbox_locked(self, esc: Escalation) -> SubmitResult:
        for item in self._outbox:
            same = item.escalation
            if same.camera == esc.camera and same.incident_id == esc.incident_id:
                item.escalation = merge_escalations(same, esc, self._max_keyframes)
                self._counters.merged += 1
                return SubmitResult("merged", esc.id, into_id=same.id, reason=f"same camera and incident as waiting {same.id}")
        self._seq += 1
        self._outbox.append(_Outgoing(esc, self._seq, self._clock.monotonic()))
        self._counters.queued += 1
        return SubmitResult("queued", esc.id, reason="queued for the teacher bus")

    def poll(self) -> list[QueueResult | ShedRecord]:
        """Answers since the last poll: from the bus, and from the local queue while it is used."""
        local = self._local.poll()
        with self._cond:
            for result in local:
                self._take_local_locked(result)
            out = list(self._results)
            self._results.clear()
        return out

    def _take_local_locked(self, result: QueueResult | ShedRecord) -> None:
        esc_id = result.escalation.id if isinstance(result, QueueResult) else result.escalation_id
        merged = result.escalation.merged_ids if isinstance(result, QueueResult) else result.merged_ids
        for merged_id in merged:  # handed-over requests the local queue folded into this one are answered with it
            merged_rid = self._rid_by_escalation.pop(merged_id, None)
            if merged_rid is not None:
                self._open.pop(merged_rid, None)
        rid = self._rid_by_escalation.pop(esc_id, None)
        if rid is not None:  # a bus request the local queue reviewed after Redis went away
            if self._open.pop(rid, None) is None:
                self._counters.duplicates += 1
                if self._metrics is not None:
                    self._metrics.duplicate()
                log.info("local answer for %s dropped: the bus answered it first", esc_id)
                return
            self._cond.notify_all()
        self._results.append(result)

    def state(self) -> QueueState:
        with self._cond:
            if not self._bus_up:
                return self._local.state()
            horizon = self._clock.monotonic() - SHED_HORIZON_S
            while self._shed_times and self._shed_times[0] < horizon:
                self._shed_times.popleft()
            depth = min(self._cfg.max_depth, self._site_depth + len(self._outbox))
            return QueueState(depth=depth, capacity=self._cfg.max_depth, recent_sheds=len(self._shed_times))

    def flush(self) -> None:
        with self._cond:
            self._flush_seq = self._seq
            self._cond.notify_all()
        self._local.flush()

    def _idle_locked(self) -> bool:
        """Nothing waits to be sent and nothing waits for the bus (local reviews are the local queue's)."""
        return not self._outbox and all(o.local for o in self._open.values())

    def wait_idle(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Send everything waiting now and wait for every answer; False on timeout or when ``stop`` is set."""
        deadline = self._clock.monotonic() + max(0.0, timeout_s)
        with self._cond:
            self._flush_seq = self._seq
            self._cond.notify_all()
            idle = self._idle_locked()
            while not idle:
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    break
                self._cond.wait(min(remaining, 0.1) if stop is not None else remaining)  # a SIGTERM is seen at once
                idle = self._idle_locked()
        return self._local.wait_idle(max(0.0, deadline - self._clock.monotonic()), stop=stop) and idle

    def close(self, drain: bool = True, timeout_s: float = 30.0, *, cancel: bool = False) -> None:
        """Stop accepting; wait for the answers (``drain``) or shed what is open; stop the bus thread.

        ``cancel`` (a bounded shutdown): ``timeout_s`` is the whole grace period; bus requests still
        open then are shed, local reviews still open are answered 'unverified' by the local queue."""
        deadline = self._clock.monotonic() + max(0.0, timeout_s)
        with self._cond:
            first = not self._closed
            self._closed = True
            self._flush_seq = self._seq
            self._cond.notify_all()
            if first and drain:
                if not self._cond.wait_for(self._idle_locked, timeout=max(0.0, timeout_s)):
                    log.warning("teacher bus: %d request(s) unanswered after %.1f s", len(self._outbox) + len(self._open), timeout_s)
            reason, detail = ("drain_timeout", "closing: no answer from the bus in time") if drain else ("shutdown", "closing without draining")
            for item in self._outbox:
                self._shed_locked(item.escalation, reason, detail)
            for rid, open_ in list(self._open.items()):
                if not open_.local:
                    self._shed_locked(open_.escalation, reason, detail)
                    del self._open[rid]
            self._outbox.clear()
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=max(1.0, self._cfg.socket_timeout_s * 2))
        self._local.close(drain=drain, timeout_s=max(0.0, deadline - self._clock.monotonic()), cancel=cancel)
        self._bus.close()

    def summary(self) -> dict[str, Any]:
        out = self._local.summary()
        with self._cond:
            c = self._counters
            latencies = list(c.latencies)
            out["fleet"] = {
                "bus": self._bus.shown_url, "box": self.box_id, "bus_up": self._bus_up,
                "submitted": c.submitted, "queued": c.queued, "merged": c.merged, "sent": c.sent,
                "answered_by_bus": c.answered_by_bus, "answered_locally": c.answered_locally,
                "handed_to_local": c.handed_to_local, "duplicates_dropped": c.duplicates,
                "malformed_replies": c.malformed_replies, "fallbacks": c.fallbacks,
                "shed_by_reason": dict(c.shed_by_reason), "unanswered": len(self._open) + len(self._outbox),
                "verdict_latency_median_s": round(_percentile(latencies, 0.5), 3),
                "verdict_latency_p95_s": round(_percentile(latencies, 0.95), 3),
            }
            out["sheds"] = out.get("shed", 0) + sum(c.shed_by_reason.values())
            out["merges"] = out.get("merged", 0) + c.merged
        return out

    # ------------------------------------------------------------------------------------
    # The bus thread
    # ------------------------------------------------------------------------------------

    def _bus_main(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                up = self._bus_up
            try:
                if up:
                    self._bus_round()
                else:
                    self._retry_round()
            except BusError as exc:
                with self._cond:
                    if self._bus_up:
                        self._lose_bus_locked(exc)
                self._set_bus_metric()
            except Exception:  # a bug here must not stop the answers: log, count as a loss, go on
                log.exception("teacher bus thread failed; retrying")
                with self._cond:
                    self._cond.wait(self._cfg.reconnect_s)

    def _bus_round(self) -> None:
        for item in self._take_eligible():
            self._send(item)
        replies = self._bus.read_replies(self.box_id, self.box_id, count=64, block_ms=self._block_ms())
        self._apply_replies(replies)
        now = self._clock.monotonic()
        if now - self._figures_at >= _FIGURES_EVERY_S:
            self._figures_at = now
            figures = self._bus.figures()
            with self._cond:
                self._site_depth = sum(f.length for p, f in figures.items() if p < Priority.SAFETY)
            if self._metrics is not None:
                self._metrics.set_streams({p.name.lower(): (f.length, f.pending) for p, f in figures.items()})

    def _block_ms(self) -> int:
        with self._cond:
            if not self._outbox:
                return _REPLY_BLOCK_MS
            now = self._clock.monotonic()
            due = min(self._batch_s - (now - it.queued_at) for it in self._outbox)
            return max(1, min(_REPLY_BLOCK_MS, int(due * 1000)))

    def _take_eligible(self) -> list[_Outgoing]:
        """Outbox items past their batch window (or flushed), highest priority first, cameras in turn."""
        with self._cond:
            now = self._clock.monotonic()
            ready = [it for it in self._outbox
                     if self._closed or it.seq <= self._flush_seq or now - it.queued_at >= self._batch_s]
            for it in ready:
                self._outbox.remove(it)
        ready.sort(key=lambda it: (-it.escalation.priority, it.seq))
        ordered: list[_Outgoing] = []
        for priority in priority_order():  # round-robin over cameras within each priority
            by_camera: dict[str, deque[_Outgoing]] = {}
            for it in ready:
                if it.escalation.priority == priority:
                    by_camera.setdefault(it.escalation.camera, deque()).append(it)
            while by_camera:
                for camera in list(by_camera):
                    ordered.append(by_camera[camera].popleft())
                    if not by_camera[camera]:
                        del by_camera[camera]
        return ordered

    def _send(self, item: _Outgoing) -> None:
        esc = item.escalation
        rid = f"{self.box_id}/{self._boot}/{esc.id}"
        thresholds, zones = self._context(esc.camera) if self._context is not None else ({}, [])
        fields = encode_request(rid, self.box_id, esc, thresholds=thresholds, zones=zones)
        now = self._clock.monotonic()
        with self._cond:
            self._open[rid] = _Open(esc, item.queued_at, now)
            self._rid_by_escalation[esc.id] = rid
        try:
            admission = self._bus.admit(esc.priority, fields, self._cfg.max_depth, self._cfg.reply_max_len)
        except BusUnavailable:
            # Sent or not, nobody can tell: the local teacher answers now; a bus answer later is a duplicate.
            self._hand_to_local(rid)
            raise
        with self._cond:
            self._counters.sent += 1
            if admission.outcome == "shed":
                del self._open[rid]
                self._rid_by_escalation.pop(esc.id, None)
                self._shed_locked(esc, "lowest_priority",
                                  f"site queue full ({self._cfg.max_depth}): {esc.priority.name} is below every waiting request")
                self._cond.notify_all()
        log.debug("request %s (%s, %s): %s", rid, esc.camera, esc.priority.name, admission.outcome)

    def _apply_replies(self, replies: list[Any]) -> None:
        done: list[str] = []
        for entry in replies:
            done.append(entry.entry_id)
            try:
                reply = decode_reply(entry.fields)
            except WireError as exc:
                log.warning("reply %s dropped: %s", entry.entry_id, exc)
                with self._cond:
                    self._counters.malformed_replies += 1
                continue
            self._apply_reply(reply)
        self._bus.ack_replies(self.box_id, done)

    def _apply_reply(self, reply: Any) -> None:
        now = self._clock.monotonic()
        with self._cond:
            open_ = self._open.pop(reply.rid, None)
            if open_ is None:
                self._counters.duplicates += 1
                if self._metrics is not None:
                    self._metrics.duplicate()
                log.info("reply for %s dropped: already answered (or not this box's run)", reply.rid)
                return
            self._rid_by_escalation.pop(open_.escalation.id, None)
            if reply.kind == "shed":
                self._shed_locked(open_.escalation, reply.reason, reply.detail)
            else:
                total = now - open_.queued_at
                service = min(reply.service_s, total)
                self._results.append(QueueResult(open_.escalation, reply.verdict, total - service, service))
                self._counters.answered_by_bus += 1
                self._counters.latencies.append(now - open_.sent_at)
                if self._metrics is not None:
                    self._metrics.verdict_latency(now - open_.sent_at)
            self._cond.notify_all()

    def _retry_round(self) -> None:
        with self._cond:
            deadline = self._clock.monotonic() + self._cfg.reconnect_s
            while not self._stop and not self._closed and self._clock.monotonic() < deadline:
                self._cond.wait(max(0.01, deadline - self._clock.monotonic()))
            if self._closed and not self._stop:
                self._cond.wait(0.05)  # closing: hand over at once, but do not spin on a refused port
            if self._stop:
                return
            now = self._clock.monotonic()
            overdue = [rid for rid, o in self._open.items()
                       if not o.local and (self._closed or now - o.sent_at >= self._cfg.reply_timeout_s)]
            moving = list(self._outbox)
            self._outbox.clear()
        for item in moving:  # escalations that never left: the local queue takes them
            self._local_submit(item.escalation)
        for rid in overdue:
            self._hand_to_local(rid)
        try:
            self._bus.ping()
            self._bus.ensure_request_groups()
        except BusError:
            return
        with self._cond:
            self._bus_up = True
            self._cond.notify_all()
        self._set_bus_metric()
        log.warning("teacher bus at %s answers again: escalations go to the bus; the local queue drains what it holds",
                    self._bus.shown_url)

    def _local_submit(self, esc: Escalation) -> None:
        result = self._local.submit(esc)
        with self._cond:
            self._counters.answered_locally += result.outcome != "shed"
        if self._metrics is not None and result.outcome != "shed":
            self._metrics.local_review()

    def _hand_to_local(self, rid: str) -> None:
        with self._cond:
            open_ = self._open.get(rid)
            if open_ is None or open_.local:
                return
            open_.local = True
            self._counters.handed_to_local += 1
        log.warning("request %s: no answer from the bus, the local teacher reviews it", rid)
        self._local_submit(open_.escalation)

    # ------------------------------------------------------------------------------------

    def _lose_bus_locked(self, exc: BaseException) -> None:
        self._bus_up = False
        self._counters.fallbacks += 1
        if self._metrics is not None:
            self._metrics.fallback()
        log.warning("teacher bus unavailable (%s): escalations go to this box's own teacher queue until it answers again", exc)
        self._cond.notify_all()

    def _set_bus_metric(self) -> None:
        if self._metrics is not None:
            self._metrics.set_bus_up(self.bus_up)

    def _shed_locked(self, esc: Escalation, reason: str, detail: str) -> None:
        now = self._clock.monotonic()
        self._results.append(ShedRecord(esc.id, esc.camera, esc.incident_id, esc.priority, reason, detail, now,
                                        esc.created_at, esc.merged_ids))
        self._shed_times.append(now)
        c = self._counters
        c.shed_by_reason[reason] = c.shed_by_reason.get(reason, 0) + 1
        if self._metrics is not None:
            self._metrics.shed(reason)
        if esc.priority >= Priority.SAFETY:
            log.error("safety escalation %s shed: %s", esc.id, detail)
        else:
            log.info("escalation %s (%s) shed: %s", esc.id, esc.priority.name, detail)


def open_fleet_queue(local: TeacherQueue, settings: Any, clock: Clock, *, metrics: Any | None,
                     pipelines: Mapping[str, Any]) -> FleetTeacherQueue:
    """The bus in front of ``local`` for the runner: box id, metrics on the box's registry, and the
    thresholds in force (from each camera's policy) and zones that travel with each escalation."""
    import socket

    from pipeline.sinks.metrics import FleetMetrics

    fleet = settings.fleet
    zones_by_camera = {cam.id: cam.zones for cam in settings.cameras if cam.zones is not None}

    def context(camera: str) -> tuple[Mapping[str, Any], list[Mapping[str, Any]]]:
        pipe = pipelines.get(camera)
        in_force = getattr(getattr(pipe, "policy", None), "thresholds_in_force", None)
        zones = zones_by_camera.get(camera, settings.zones)
        return (in_force() if callable(in_force) else {}), [z.model_dump() for z in zones]

    bus = RedisBus(fleet.redis_url, fleet.stream_prefix, socket_timeout_s=fleet.socket_timeout_s)
    return FleetTeacherQueue(local, bus, fleet, settings.teacher, clock, box_id=fleet.box_id or socket.gethostname(),
                             metrics=FleetMetrics(metrics.registry) if metrics is not None else None, context=context)
