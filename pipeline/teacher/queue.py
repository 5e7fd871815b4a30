"""The bounded priority queue in front of the teacher, and its workers.

* **Bounded**: at most ``max_queue_depth`` escalations wait.  When full, the lowest-priority
  waiting one (the oldest among equals) is shed — possibly the incoming one — and recorded.
* **Safety is never shed** while the queue runs.  An incoming safety escalation with a full
  queue merges into a waiting safety escalation of the same camera; failing that it displaces
  the lowest-priority non-safety one; when *every* waiting escalation is safety (other
  cameras'), it is held in its camera's **overflow slot** (at most one per camera; further
  ones merge into it).  Overflow is not part of the reported depth — so the depth the policy
  sees never exceeds the bound — and it moves into the queue ahead of anything else as soon as
  a worker frees a place.  The overflow is bounded by the number of cameras.
* **Batching**: an escalation of the same (camera, incident) as one still waiting merges into
  it; a worker does not dispatch an escalation until ``batch_window_ms`` has passed since it
  was queued (unless `flush` was called), so follow-ups fold in.
* **Fairness**: among equal priority, cameras are served round-robin (least recently served
  first), so one busy camera cannot starve another.
* **Workers** (``max_concurrent`` threads) call ``teacher.review``; an exception, a hang past
  the timeout or a non-`Verdict` answer becomes ``Verdict.unverified`` with the error text.  A
  worker that crashes is logged, counted and replaced, and its escalation still gets a verdict.

All time comes from the injected clock; the runner drains results with `poll` on its own thread.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pipeline.analyzers.base import Teacher
from pipeline.clock import Clock
from pipeline.config.models import TeacherConfig
from pipeline.incidents.escalation import QueueState
from pipeline.records import EncodedFrame, Escalation, Priority, Verdict

log = logging.getLogger("edgewatch.teacher_queue")

#: How long a shed counts as "recent" for the policy's backpressure (clock seconds).
SHED_HORIZON_S = 60.0
#: Longest a worker sleeps between checks while escalations wait for their batch window; only
#: matters for clocks that do not follow real time (a ManualClock in tests).
_POLL_S = 0.05
#: How many wait/service figures are kept for the median/p95 (memory stays bounded).
_KEEP_FIGURES = 10_000


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: Literal["queued", "merged", "shed"]
    escalation_id: str
    into_id: str | None = None
    """The waiting escalation this one merged into."""
    shed_id: str | None = None
    """The escalation shed to make room (this one when ``outcome == 'shed'``)."""
    reason: str = ""


@dataclass(frozen=True)  # no slots: the runner writes shed records out through ``__dict__``
class ShedRecord:
    escalation_id: str
    camera: str
    incident_id: str
    priority: Priority
    reason: str
    """'lowest_priority' (incoming, nothing lower waiting), 'displaced', 'shutdown', 'drain_timeout' or 'closed'."""
    detail: str
    at_s: float
    """Clock time of the shed."""
    created_at: float
    """Source time of the escalation."""
    merged_ids: tuple[str, ...] = ()
    """Escalations that had been folded into this one (shed with it)."""


@dataclass(frozen=True, slots=True)
class QueueResult:
    escalation: Escalation
    verdict: Verdict
    wait_s: float
    """Queued → dispatched, clock seconds."""
    service_s: float
    """Dispatched → verdict, clock seconds."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    submitted: int
    queued: int
    merged: int
    shed_by_priority: dict[str, int]
    shed_by_reason: dict[str, int]
    safety_shed: int
    served: int
    errors: int
    timeouts: int
    worker_crashes: int
    hung_calls: int
    """Teacher calls still running past their timeout right now."""
    depth_max: int
    overflow_max: int
    wait_median_s: float
    wait_p95_s: float
    service_median_s: float
    service_p95_s: float

    @property
    def shed(self) -> int:
        return sum(self.shed_by_priority.values())


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[rank]


def _frame_key(item: EncodedFrame) -> tuple[str, int]:
    return item.frame.source_id, item.frame.index


def merge_escalations(into: Escalation, new: Escalation, max_keyframes: int) -> Escalation:
    """``new`` folded into ``into`` (which keeps its id): priority max, flags union, latest keyframes, newer timeline."""
    newer = new if new.created_at >= into.created_at else into
    stronger = new if new.priority > into.priority else into
    frames: dict[tuple[str, int], EncodedFrame] = {}
    for kf in (*into.keyframes, *new.keyframes):
        frames.setdefault(_frame_key(kf), kf)
    keyframes = tuple(sorted(frames.values(), key=lambda kf: kf.timestamp)[-max_keyframes:])
    return replace(
        into,
        reason=stronger.reason,
        priority=max(into.priority, new.priority),
        created_at=max(into.created_at, new.created_at),
        flags=into.flags | new.flags,
        keyframes=keyframes,
        timeline=newer.timeline,
        merged_ids=into.merged_ids + (new.id,) + new.merged_ids,
    )


@dataclass(slots=True)
class _Item:
    escalation: Escalation
    seq: int
    enqueued_at: float
    finished: bool = False

    @property
    def safety(self) -> bool:
        return self.escalation.priority >= Priority.SAFETY


@dataclass
class _Counters:
    submitted: int = 0
    queued: int = 0
    merged: int = 0
    shed_by_priority: dict[str, int] = field(default_factory=dict)
    shed_by_reason: dict[str, int] = field(default_factory=dict)
    safety_shed: int = 0
    served: int = 0
    errors: int = 0
    timeouts: int = 0
    worker_crashes: int = 0
    depth_max: int = 0
    overflow_max: int = 0
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=_KEEP_FIGURES))
    services: deque[float] = field(default_factory=lambda: deque(maxlen=_KEEP_FIGURES))


class TeacherQueue:
    def __init__(self, teacher: Teacher, cfg: TeacherConfig, clock: Clock, *, shed_horizon_s: float = SHED_HORIZON_S) -> None:
        self._teacher = teacher
        self._cfg = cfg
        self._clock = clock
        self._capacity = cfg.max_queue_depth
        self._batch_s = cfg.batch_window_ms / 1000.0
        self._shed_horizon_s = shed_horizon_s
        self._cond = threading.Condition()
        self._waiting: list[_Item] = []
        self._overflow: dict[str, _Item] = {}
        self._in_flight = 0
        self._hung_calls = 0
        self._calls_started = 0
        self._results: deque[QueueResult | ShedRecord] = deque()
        self._shed_times: deque[float] = deque()
        self._seq = 0
        self._flush_seq = 0
        self._idle_waiters = 0
        self._tick = 0
        self._served_tick: dict[str, int] = {}
        self._closed = False
        self._stop = False
        self._serving: dict[int, _Item] = {}
        self.cancelled = 0
        """Reviews answered 'unverified' because the shutdown grace period ran out."""
        self._counters = _Counters()
        self._workers: list[threading.Thread] = []
        self._worker_names = 0
        with self._cond:
            for _ in range(cfg.max_concurrent):
                self._spawn_worker()

    # ----------------------------------------------------------------------------------
    # Submitting
    # ----------------------------------------------------------------------------------

    def submit(self, esc: Escalation) -> SubmitResult:
        with self._cond:
            result = self._submit_locked(esc)
            c = self._counters
            c.submitted += 1
            if result.outcome == "queued":
                c.queued += 1
            elif result.outcome == "merged":
                c.merged += 1
            c.depth_max = max(c.depth_max, len(self._waiting))
            c.overflow_max = max(c.overflow_max, len(self._overflow))
            if self._idle_waiters:
                self._flush_seq = self._seq
            self._cond.notify_all()
        log.debug("escalation %s (%s, %s): %s %s", esc.id, esc.camera, esc.priority.name, result.outcome, result.reason)
        return result

    def _submit_locked(self, esc: Escalation) -> SubmitResult:
        if self._closed:
            self._shed(esc, "closed", "the teacher queue is closed")
            return SubmitResult("shed", esc.id, shed_id=esc.id, reason="the teacher queue is closed")
        same_incident = self._find(lambda it: it.escalation.camera == esc.camera and it.escalation.incident_id == esc.incident_id)
        if same_incident is not None:
            return self._merge_into(same_incident, esc, f"same camera and incident as waiting {same_incident.escalation.id}")
        if len(self._waiting) < self._capacity:
            self._enqueue(esc)
            return SubmitResult("queued", esc.id, reason="queued")
        full = f"queue full ({self._capacity})"
        if esc.priority >= Priority.SAFETY:
            same_camera = [it for it in self._waiting if it.safety and it.escalation.camera == esc.camera]
            if same_camera:
                target = max(same_camera, key=lambda it: it.seq)
                return self._merge_into(target, esc, f"{full}: safety merged into waiting safety {target.escalation.id} of the same camera")
            victim = self._lowest_non_safety()
            if victim is not None:
                self._waiting.remove(victim)
                self._shed(victim.escalation, "displaced", f"{full}: displaced by safety {esc.id}")
                self._enqueue(esc)
                return SubmitResult("queued", esc.id, shed_id=victim.escalation.id, reason=f"{full}: displaced {victim.escalation.id}")
            held = self._overflow.get(esc.camera)
            if held is not None:
                return self._merge_into(held, esc, f"{full} of safety: merged into the camera's overflow {held.escalation.id}")
            self._overflow[esc.camera] = self._new_item(esc)
            return SubmitResult("queued", esc.id, reason=f"{full} of safety: held in the camera's overflow slot")
        victim = self._lowest_non_safety()
        if victim is None or esc.priority < victim.escalation.priority:
            detail = f"{full}: {esc.priority.name} is below every waiting escalation"
            self._shed(esc, "lowest_priority", detail)
            return SubmitResult("shed", esc.id, shed_id=esc.id, reason=detail)
        self._waiting.remove(victim)
        self._shed(victim.escalation, "displaced", f"{full}: oldest of the lowest priority, displaced by {esc.id} ({esc.priority.name})")
        self._enqueue(esc)
        return SubmitResult("queued", esc.id, shed_id=victim.escalation.id, reason=f"{full}: displaced {victim.escalation.id}")

    def _find(self, match: Any) -> _Item | None:
        for it in (*self._waiting, *self._overflow.values()):
            if match(it):
                return it
        return None

    def _lowest_non_safety(self) -> _Item | None:
        candidates = [it for it in self._waiting if not it.safety]
        return min(candidates, key=lambda it: (it.escalation.priority, it.seq)) if candidates else None

    def _new_item(self, esc: Escalation) -> _Item:
        self._seq += 1
        return _Item(esc, self._seq, self._clock.monotonic())

    def _enqueue(self, esc: Escalation) -> None:
        self._waiting.append(self._new_item(esc))

    def _merge_into(self, target: _Item, esc: Escalation, why: str) -> SubmitResult:
        target.escalation = merge_escalations(target.escalation, esc, self._cfg.max_keyframes)
        return SubmitResult("merged", esc.id, into_id=target.escalation.id, reason=why)

    def _shed(self, esc: Escalation, reason: str, detail: str) -> None:
        now = self._clock.monotonic()
        record = ShedRecord(esc.id, esc.camera, esc.incident_id, esc.priority, reason, detail, now, esc.created_at, esc.merged_ids)
        c = self._counters
        c.shed_by_priority[esc.priority.name] = c.shed_by_priority.get(esc.priority.name, 0) + 1
        c.shed_by_reason[reason] = c.shed_by_reason.get(reason, 0) + 1
        self._shed_times.append(now)
        self._results.append(record)
        if esc.priority >= Priority.SAFETY:
            c.safety_shed += 1
            log.error("safety escalation %s shed: %s", esc.id, detail)
        else:
            log.info("escalation %s (%s) shed: %s", esc.id, esc.priority.name, detail)

    # ----------------------------------------------------------------------------------
    # Workers
    # ----------------------------------------------------------------------------------

    def _spawn_worker(self) -> None:
        self._worker_names += 1
        thread = threading.Thread(target=self._worker_main, name=f"teacher-worker-{self._worker_names}", daemon=True)
        self._workers.append(thread)
        thread.start()

    def _worker_main(self) -> None:
        item: _Item | None = None
        try:
            while True:
                item = self._next_item()
                if item is None:
                    return
                self._serve(item)
                item = None
        except Exception as exc:  # a bug in the worker must not lose the escalation or the worker
            log.exception("teacher worker %s crashed", threading.current_thread().name)
            with self._cond:
                self._counters.worker_crashes += 1
                if item is not None and not item.finished:
                    verdict = self._unverified(item.escalation, f"teacher worker crashed: {exc.__class__.__name__}: {exc}")
                    self._finish_locked(item, verdict, 0.0, 0.0, error=True)
                if not self._stop:
                    self._spawn_worker()
                self._cond.notify_all()

    def _eligible(self, item: _Item, now: float) -> bool:
        return self._closed or item.seq <= self._flush_seq or now - item.enqueued_at >= self._batch_s

    def _pick_locked(self, now: float) -> _Item | None:
        eligible = [it for it in self._waiting if self._eligible(it, now)]
        if not eligible:
            return None
        top = max(it.escalation.priority for it in eligible)
        best = [it for it in eligible if it.escalation.priority == top]
        # Round-robin: the least recently served camera first, then its oldest escalation.
        return min(best, key=lambda it: (self._served_tick.get(it.escalation.camera, -1), it.seq))

    def _next_item(self) -> _Item | None:
        with self._cond:
            while True:
                if self._stop:
                    return None
                now = self._clock.monotonic()
                item = self._pick_locked(now)
                if item is not None:
                    self._waiting.remove(item)
                    self._promote_overflow_locked()
                    self._in_flight += 1
                    self._serving[id(item)] = item
                    self._tick += 1
                    self._served_tick[item.escalation.camera] = self._tick
                    self._cond.notify_all()
                    return item
                timeout = None
                if self._waiting:
                    remaining = min(self._batch_s - (now - it.enqueued_at) for it in self._waiting)
                    timeout = min(max(remaining, 0.001), _POLL_S)
                self._cond.wait(timeout)

    def _promote_overflow_locked(self) -> None:
        while self._overflow and len(self._waiting) < self._capacity:
            camera = min(self._overflow, key=lambda cam: self._overflow[cam].seq)
            self._waiting.append(self._overflow.pop(camera))

    def _serve(self, item: _Item) -> None:
        started = self._clock.monotonic()
        verdict, error, timed_out = self._review(item.escalation)
        finished = self._clock.monotonic()
        with self._cond:
            if timed_out:
                self._counters.timeouts += 1
            self._finish_locked(item, verdict, started - item.enqueued_at, finished - started, error=error)

    def _finish_locked(self, item: _Item, verdict: Verdict, wait_s: float, service_s: float, *, error: bool) -> None:
        if item.finished:  # cancelled at shutdown: its unverified verdict went out already
            return
        item.finished = True
        self._in_flight -= 1
        self._serving.pop(id(item), None)
        c = self._counters
        c.served += 1
        c.errors += int(error)
        c.waits.append(wait_s)
        c.services.append(service_s)
        self._results.append(QueueResult(item.escalation, verdict, wait_s, service_s))
        self._cond.notify_all()

    def _unverified(self, esc: Escalation, why: str, latency_ms: float = 0.0) -> Verdict:
        return Verdict.unverified(
            esc,
            backend=str(getattr(self._teacher, "backend", "unknown")),
            model=str(getattr(self._teacher, "model", "unknown")),
            latency_ms=latency_ms,
            why=why,
        )

    def _review(self, esc: Escalation) -> tuple[Verdict, bool, bool]:
        """(verdict, errored, timed out).  The call runs on its own thread so a hung teacher
        cannot hold a worker past the timeout; at most ``max_concurrent`` hung calls are
        tolerated, after that escalations are answered unverified at once."""
        with self._cond:
            if self._hung_calls >= self._cfg.max_concurrent:
                why = f"teacher unresponsive: {self._hung_calls} call(s) still running past their timeout"
                return self._unverified(esc, why), True, False
            # The first call may have to load the model, unless the teacher loads itself at start
            # (`warmed_up`: Ollama's warm-up runs in the background; a call never waits minutes).
            first = self._calls_started == 0 and not hasattr(self._teacher, "warmed_up")
            self._calls_started += 1
        timeout_ms = max(self._cfg.timeout_ms, self._cfg.first_call_timeout_ms) if first else self._cfg.timeout_ms
        box: dict[str, Any] = {}
        done = threading.Event()

        def call() -> None:
            try:
                box["verdict"] = self._teacher.review(esc)
            except BaseException as exc:  # noqa: BLE001 - any failure becomes an unverified verdict
                box["error"] = exc
            finally:
                with self._cond:
                    box["finished"] = True
                    if box.get("abandoned"):
                        self._hung_calls -= 1
                        log.warning("teacher call for %s returned after its timeout; answer discarded", esc.id)
                done.set()

        started = self._clock.monotonic()
        threading.Thread(target=call, name=f"teacher-call-{esc.id}", daemon=True).start()
        if not done.wait(timeout_ms / 1000.0):
            with self._cond:
                if not box.get("finished"):
                    box["abandoned"] = True
                    self._hung_calls += 1
            if box.get("abandoned"):
                log.warning("teacher call for %s timed out after %d ms", esc.id, timeout_ms)
                return self._unverified(esc, f"teacher timed out after {timeout_ms} ms", timeout_ms), True, True
            done.wait()
        latency_ms = (self._clock.monotonic() - started) * 1000.0
        if "error" in box:
            exc = box["error"]
            log.warning("teacher raised on %s: %s: %s", esc.id, exc.__class__.__name__, exc)
            return self._unverified(esc, f"teacher failed: {exc.__class__.__name__}: {exc}", latency_ms), True, False
        verdict = box.get("verdict")
        if not isinstance(verdict, Verdict):
            return self._unverified(esc, f"teacher returned {type(verdict).__name__}, not a Verdict", latency_ms), True, False
        return verdict, False, False

    # ----------------------------------------------------------------------------------
    # For the runner
    # ----------------------------------------------------------------------------------

    def poll(self) -> list[QueueResult | ShedRecord]:
        """Verdicts and shed records since the last poll, in the order they happened."""
        with self._cond:
            out = list(self._results)
            self._results.clear()
        return out

    def state(self) -> QueueState:
        with self._cond:
            horizon = self._clock.monotonic() - self._shed_horizon_s
            while self._shed_times and self._shed_times[0] < horizon:
                self._shed_times.popleft()
            return QueueState(depth=len(self._waiting), capacity=self._capacity, recent_sheds=len(self._shed_times))

    @property
    def stats(self) -> QueueStats:
        with self._cond:
            c = self._counters
            waits, services = list(c.waits), list(c.services)
            return QueueStats(
                submitted=c.submitted, queued=c.queued, merged=c.merged,
                shed_by_priority=dict(c.shed_by_priority), shed_by_reason=dict(c.shed_by_reason),
                safety_shed=c.safety_shed, served=c.served, errors=c.errors, timeouts=c.timeouts,
                worker_crashes=c.worker_crashes, hung_calls=self._hung_calls, depth_max=c.depth_max, overflow_max=c.overflow_max,
                wait_median_s=_percentile(waits, 0.5), wait_p95_s=_percentile(waits, 0.95),
                service_median_s=_percentile(services, 0.5), service_p95_s=_percentile(services, 0.95),
            )

    def summary(self) -> dict[str, Any]:
        s = self.stats
        return {
            "capacity": self._capacity,
            "submitted": s.submitted, "queued": s.queued, "merged": s.merged,
            "shed": s.shed, "shed_by_priority": s.shed_by_priority, "shed_by_reason": s.shed_by_reason,
            "safety_shed": s.safety_shed, "served": s.served, "errors": s.errors, "timeouts": s.timeouts,
            "worker_crashes": s.worker_crashes, "hung_calls": s.hung_calls, "depth_max": s.depth_max, "overflow_max": s.overflow_max,
            "cancelled_at_shutdown": self.cancelled,
            "wait_median_s": round(s.wait_median_s, 3), "wait_p95_s": round(s.wait_p95_s, 3),
            "service_median_s": round(s.service_median_s, 3), "service_p95_s": round(s.service_p95_s, 3),
        }

    def flush(self) -> None:
        """Make everything waiting now eligible for dispatch without waiting out its batch window."""
        with self._cond:
            self._flush_seq = self._seq
            self._cond.notify_all()

    def _idle_locked(self) -> bool:
        return not self._waiting and not self._overflow and self._in_flight == 0

    def wait_idle(self, timeout_s: float, stop: threading.Event | None = None) -> bool:
        """Flush and wait until nothing waits and nothing is in flight; False on timeout or when ``stop`` is set."""
        deadline = self._clock.monotonic() + max(0.0, timeout_s)
        with self._cond:
            self._idle_waiters += 1
            self._flush_seq = self._seq
            self._cond.notify_all()
            try:
                while not self._idle_locked():
                    remaining = deadline - self._clock.monotonic()
                    if remaining <= 0 or (stop is not None and stop.is_set()):
                        return False
                    # Short slices: a stop request (SIGTERM) is seen within a tenth of a second.
                    self._cond.wait(min(remaining, 0.1) if stop is not None else remaining)
                return True
            finally:
                self._idle_waiters -= 1

    def close(self, drain: bool = True, timeout_s: float = 30.0, *, cancel: bool = False) -> None:
        """Stop accepting; serve what waits (``drain``) or shed it as 'shutdown'; join the workers.

        Calling it again is harmless.  A worker stuck in a teacher call past ``timeout_s`` is
        left behind (daemon thread) and logged.  With ``cancel`` (a bounded shutdown), whatever
        is still waiting or in flight when ``timeout_s`` runs out is answered 'unverified'
        (the review never happened) instead of shed, and hung calls are abandoned at once.
        """
        if cancel:
            self._close_cancelling(timeout_s)
            return
        with self._cond:
            first = not self._closed
            self._closed = True
            self._cond.notify_all()
            if first and drain:
                if not self._cond.wait_for(lambda: not self._waiting and not self._overflow, timeout=max(0.0, timeout_s)):
                    log.warning("teacher queue: drain timed out after %.1f s", timeout_s)
            reason, detail = ("drain_timeout", "closing: drain timed out") if drain else ("shutdown", "closing without draining")
            for item in (*self._waiting, *self._overflow.values()):
                self._shed(item.escalation, reason, detail)
            self._waiting.clear()
            self._overflow.clear()
            if drain:
                self._cond.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, timeout_s))
            self._stop = True
            self._cond.notify_all()
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout=max(0.0, timeout_s) / max(1, len(workers)))
        alive = [w.name for w in workers if w.is_alive()]
        if alive:
            log.warning("teacher queue closed with %d worker(s) still in a teacher call: %s", len(alive), ", ".join(alive))

    def _close_cancelling(self, grace_s: float) -> None:
        deadline = self._clock.monotonic() + max(0.0, grace_s)
        with self._cond:
            self._closed = True
            self._flush_seq = self._seq
            self._cond.notify_all()
            while not self._idle_locked():
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(min(remaining, 0.1))
            now = self._clock.monotonic()
            why = f"not reviewed: shutdown grace period ({grace_s:g} s) ran out"
            left = [*self._waiting, *self._overflow.values(), *self._serving.values()]
            self._waiting.clear()
            self._overflow.clear()
            for item in left:
                if item.finished:
                    continue
                if id(item) not in self._serving:
                    self._in_flight += 1  # _finish_locked counts it out again
                self._finish_locked(item, self._unverified(item.escalation, why), now - item.enqueued_at, 0.0, error=True)
                self.cancelled += 1
            if left:
                log.warning("teacher queue: %d review(s) still waiting or in flight after the %.1f s grace period: "
                            "answered 'unverified'", len(left), grace_s)
            self._stop = True
            self._cond.notify_all()
            workers = list(self._workers)
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(timeout=0.05)  # a worker inside a hung call is a daemon; it is not waited for
