"""Keep analysing when the model server goes away: a circuit breaker and a switching student.

`CircuitBreaker` is the classic three-state breaker, timed on an injected `Clock`:
closed (use the primary) → open after ``failure_threshold`` consecutive failures (use the
fallback) → after ``reset_after_s`` one caller gets a half-open probe of the primary →
closed again when the probe succeeds, open for another ``reset_after_s`` when it fails.

`FallbackStudent` wraps a primary student (Ollama) and a fallback (the embedded offline
analyzer).  Every switch is a `SwitchEvent` passed to ``on_switch`` and logged at WARNING, and
every report names the backend that produced it.

What a frame gets while things fail:
* closed: the primary's report, failed ones included (``model_error`` counts toward escalation:
  the active backend really did fail on that frame);
* open: the fallback's report;
* half-open probe that fails: the frame is analysed again by the fallback, so a probe every
  ``reset_after_s`` does not inject a ``model_error`` into an otherwise working fallback stream.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from pipeline.analyzers.base import Student, crash_report
from pipeline.clock import Clock
from pipeline.records import EncodedFrame, FrameReport

log = logging.getLogger("edgewatch.fallback")


class BreakerState(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Thread-safe; `allow()` says whether this caller may use the primary."""

    def __init__(self, failure_threshold: int = 3, reset_after_s: float = 30.0, *, clock: Clock) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1 (got {failure_threshold})")
        if reset_after_s < 0:
            raise ValueError(f"reset_after_s must be >= 0 (got {reset_after_s})")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._opened_at_source: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._consecutive_failures

    def allow(self, source_t: float | None = None) -> bool:
        """True: use the primary (closed, or this caller is the one half-open probe).

        The probe is due ``reset_after_s`` after the breaker opened on the clock *or* in source time
        (``source_t``, the frame's timestamp): a file replayed faster than real time re-probes the
        model every ``reset_after_s`` of video instead of never within the replay.
        """
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return True
            if self._probe_in_flight:
                return False
            source_due = (source_t is not None and self._opened_at_source is not None
                          and source_t - self._opened_at_source >= self.reset_after_s)
            if source_due or self._clock.monotonic() - self._opened_at >= self.reset_after_s:
                self._state = BreakerState.HALF_OPEN
                self._probe_in_flight = True
                return True
            return False

    def record_success(self) -> BreakerState:
        """A primary call succeeded; returns the state before (HALF_OPEN → a recovery)."""
        with self._lock:
            before = self._state
            self._consecutive_failures = 0
            self._probe_in_flight = False
            self._state = BreakerState.CLOSED
            return before

    def record_failure(self, source_t: float | None = None) -> BreakerState:
        """A primary call failed; returns the state after (OPEN when the breaker tripped or stays open)."""
        with self._lock:
            self._consecutive_failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._consecutive_failures >= self.failure_threshold
            ):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock.monotonic()
                self._opened_at_source = source_t
            self._probe_in_flight = False
            return self._state


@dataclass(frozen=True, slots=True)
class SwitchEvent:
    timestamp: float
    """Source time of the frame whose analysis caused the switch."""
    from_backend: str
    to_backend: str
    reason: str


class FallbackStudent:
    """A `Student` that uses ``primary`` while it works and ``fallback`` while it does not."""

    def __init__(
        self,
        primary: Student,
        fallback: Student,
        breaker: CircuitBreaker,
        on_switch: Callable[[SwitchEvent], None] | None = None,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._breaker = breaker
        self._on_switch = on_switch
        self._lock = threading.Lock()
        self._active: Student = primary
        self.switches: list[SwitchEvent] = []

    # The Student protocol's attributes describe the backend in use right now.
    @property
    def active(self) -> Student:
        with self._lock:
            return self._active

    @property
    def backend(self) -> str:
        return self.active.backend

    @property
    def model(self) -> str:
        return self.active.model

    @property
    def prompt_version(self) -> str:
        return self.active.prompt_version

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def _switch(self, to: Student, *, timestamp: float, reason: str) -> None:
        with self._lock:
            if self._active is to:
                return
            event = SwitchEvent(timestamp=timestamp, from_backend=self._active.backend, to_backend=to.backend, reason=reason)
            self._active = to
            self.switches.append(event)
        log.warning("student switched %s → %s at t=%.2fs: %s", event.from_backend, event.to_backend, timestamp, reason)
        if self._on_switch is not None:
            try:
                self._on_switch(event)
            except Exception:  # a broken listener must not stop analysis
                log.exception("on_switch listener failed")

    def _run_primary(self, item: EncodedFrame) -> FrameReport:
        try:
            return self._primary.analyze(item)
        except Exception as exc:  # a Student must not raise; if one does, it is a failed analysis
            log.exception("primary student %s raised", self._primary.backend)
            return crash_report(self._primary, item, exc)

    def analyze(self, item: EncodedFrame) -> FrameReport:
        if not self._breaker.allow(item.timestamp):
            return self._fallback.analyze(item)
        probing = self._breaker.state is BreakerState.HALF_OPEN
        report = self._run_primary(item)
        if report.error is None:
            before = self._breaker.record_success()
            if before is not BreakerState.CLOSED or self.active is not self._primary:
                self._switch(self._primary, timestamp=item.timestamp, reason="primary answered again")
            return report
        after = self._breaker.record_failure(item.timestamp)
        if after is BreakerState.OPEN:
            failures = self._breaker.consecutive_failures
            self._switch(
                self._fallback,
                timestamp=item.timestamp,
                reason=f"{failures} consecutive failures of {self._primary.backend}; last: {report.error}",
            )
            if probing:
                log.info("probe of %s failed: %s", self._primary.backend, report.error)
                return self._fallback.analyze(item)
        return report

    @property
    def primary(self) -> Student:
        return self._primary

    def set_on_switch(self, on_switch: Callable[[SwitchEvent], None] | None) -> None:
        """Who hears about switches (the runner sets this once it has its decision log open)."""
        self._on_switch = on_switch

    def close(self) -> None:
        for student in (self._primary, self._fallback):
            try:
                student.close()
            except Exception:
                log.exception("closing student %s failed", student.backend)
