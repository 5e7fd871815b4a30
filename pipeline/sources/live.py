"""Live cameras: one grabber thread per camera that keeps only the newest frame.

`LiveGrabber` opens a source with `pipeline.sources.capture.open_source` (so the stream open and
read timeouts of `CaptureConfig` apply: a dead stream never blocks longer than those),
reads it as fast as it delivers, and keeps only the newest frame (latest-frame policy):
a consumer that is slower than the camera takes ``latest(after_index)`` and the frames it
never saw are counted as overwritten.  When reads fail or the source ends, the grabber
closes it and reopens it after an exponential backoff with jitter.  A watchdog thread
notices a source that delivers no frame for ``stale_after_s`` (a frozen server, a stream
that never sends a picture), reports ``source_stale`` and has the grabber restart it as
soon as the blocked read returns (bounded by the read timeout).

Events (`SourceEvent`): ``source_lost`` when a working source goes down (or the first open
fails), ``source_restored`` when it works again, ``source_stale`` from the watchdog.  They go
to the ``on_event`` callback (from the grabber's threads) and into a bounded list that
``poll()`` drains.  Every text that can leave this module (logs, events, health) has the
URL credentials masked.

Time: frame timestamps and event timestamps are seconds on the injected clock since the
grabber was created (one timeline across reconnects, never going back; the camera streams
here give no usable presentation time).  Frame indexes also continue across reconnects.
Pauses (backoff, watchdog ticks) wait on a `threading.Event` so `close()` interrupts them.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pipeline.sources.capture import FrameSource, Sampler, mask_credentials, open_source
from pipeline.clock import Clock
from pipeline.config.capture import CaptureConfig
from pipeline.errors import SourceError
from pipeline.masking import url_secrets
from pipeline.records import Frame

log = logging.getLogger("edgewatch.live")

SourceEventKind = Literal["source_lost", "source_restored", "source_stale"]
#: Events kept for ``poll()`` when nobody drains them (oldest dropped first).
_MAX_PENDING_EVENTS = 1000


#: A session that delivered frames for this long (or ``stale_after_s`` if shorter) was healthy: the
#: reconnect backoff starts over (a looped short clip or a stream that drops now and then never
#: accumulates the backoff of a long outage).
_HEALTHY_SESSION_S = 2.0

#: Session frame times may run this far from the grabber's clock before they are re-based.
_MAX_SESSION_DRIFT_S = 2.0


@dataclass(frozen=True, slots=True)
class SourceEvent:
    """Something happened to a camera's source.  ``detail`` never contains credentials."""

    kind: SourceEventKind
    camera: str
    timestamp: float
    """Seconds on the grabber's timeline (the same as its frames' timestamps)."""
    detail: str
    wall: float = 0.0
    """Wall-clock time (epoch seconds) from the injected clock, for logs and messages."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "camera": self.camera, "t": round(self.timestamp, 3), "wall": round(self.wall, 3), "detail": self.detail}


@dataclass
class GrabberStats:
    """Counters of one grabber (mutable, owned by it; read them, do not write)."""

    opens: int = 0
    open_failures: int = 0
    frames_received: int = 0
    frames_taken: int = 0
    frames_overwritten: int = 0
    """Frames replaced by a newer one before any consumer took them (latest-frame policy)."""
    sessions_ended: int = 0
    """Times a working source stopped (read failures, end of stream, watchdog restart)."""
    stale_restarts: int = 0
    events: dict[str, int] = field(default_factory=dict)


class Opener(Protocol):
    def __call__(self, spec: str, *, camera_id: str, cfg: CaptureConfig, clock: Clock) -> FrameSource: ...


def backoff_delays(initial_s: float, max_s: float, rng: random.Random) -> Iterator[float]:
    """Exponential backoff with "equal jitter": attempt n waits between d/2 and d, d = min(max, initial * 2**n).

    The jitter keeps several cameras behind one dead NVR from reconnecting in lock-step; the
    lower half bound keeps the backoff growing.
    """
    attempt = 0
    while True:
        ceiling = min(max_s, initial_s * (2.0 ** min(attempt, 62)))
        yield ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)
        attempt += 1


class LiveGrabber:
    """A thread per camera: open, read, keep the newest frame, reconnect, watch for staleness.

    Call `start()`, then `latest(after_index)` from the consumer; `close()` when done.
    """

    def __init__(
        self,
        spec: str,
        *,
        camera_id: str,
        cfg: CaptureConfig,
        clock: Clock,
        stale_after_s: float,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        rng: random.Random,
        on_event: Callable[[SourceEvent], None] | None = None,
        retrieve_fps: float | None = None,
        opener: Opener = open_source,
    ) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s must be > 0 (got {stale_after_s!r})")
        if not (0 < backoff_initial_s <= backoff_max_s):
            raise ValueError(f"need 0 < backoff_initial_s <= backoff_max_s (got {backoff_initial_s}, {backoff_max_s})")
        self._spec = spec
        self.camera_id = camera_id
        self.description = mask_credentials(spec.strip())
        self._secrets = url_secrets(spec)
        self._cfg = cfg
        self._clock = clock
        self.stale_after_s = float(stale_after_s)
        self._backoff = (float(backoff_initial_s), float(backoff_max_s))
        self._rng = rng
        self._on_event = on_event
        self._retrieve_fps = retrieve_fps
        self._opener = opener
        self.stats = GrabberStats()

        self._epoch = clock.monotonic()
        self._session_base: float | None = None
        self._last_stamp = 0.0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._taken_index = -1
        self._next_index = 0
        self._last_frame_at: float | None = None  # clock.monotonic() of the newest frame
        self._up = False  # a source is open and delivering
        self._down_reported = False  # source_lost sent for the current outage
        self._stale_reported = False  # source_stale sent for the current stall
        self._restart = threading.Event()
        self._stop = threading.Event()
        self._events: deque[SourceEvent] = deque(maxlen=_MAX_PENDING_EVENTS)
        self._events_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"grab-{camera_id}", daemon=True)
        self._watchdog = threading.Thread(target=self._watch, name=f"watchdog-{camera_id}", daemon=True)
        self._started = False

    # -- public API --------------------------------------------------------------------

    def start(self) -> "LiveGrabber":
        if not self._started:
            self._started = True
            self._epoch = self._clock.monotonic()
            self._thread.start()
            self._watchdog.start()
        return self

    def latest(self, after_index: int = -1) -> Frame | None:
        """The newest frame if it is newer than ``after_index`` (a frame index), else None."""
        with self._cond:
            frame = self._latest
            if frame is None or frame.index <= after_index:
                return None
            if frame.index > self._taken_index:
                self._taken_index = frame.index
                self.stats.frames_taken += 1
            return frame

    def wait_latest(self, after_index: int = -1, timeout_s: float = 1.0) -> Frame | None:
        """Like `latest`, but waits up to ``timeout_s`` for a newer frame."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._stop.is_set() or (self._latest is not None and self._latest.index > after_index), timeout_s
            )
        return self.latest(after_index)

    def poll(self) -> list[SourceEvent]:
        """Events since the last poll, oldest first."""
        with self._events_lock:
            events = list(self._events)
            self._events.clear()
        return events

    @property
    def connected(self) -> bool:
        return self._up

    def last_frame_age(self) -> float | None:
        """Seconds since the newest frame arrived, or None before the first one."""
        at = self._last_frame_at
        return None if at is None else max(0.0, self._clock.monotonic() - at)

    @property
    def is_stale(self) -> bool:
        """No frame for ``stale_after_s`` (counting from start when there was none yet)."""
        at = self._last_frame_at if self._last_frame_at is not None else self._epoch
        return self._clock.monotonic() - at > self.stale_after_s

    def health(self) -> dict[str, Any]:
        """The capture part of a camera's /healthz entry (the runner adds state, backend, queue depth)."""
        age = self.last_frame_age()
        return {
            "source": self.description,
            # waiting: never opened yet (a camera that boots after us); reconnecting: it worked, then went down.
            "status": "connected" if self._up else ("waiting" if self.stats.opens == 0 else "reconnecting"),
            "connected": self._up,
            "last_frame_age_s": None if age is None else round(age, 3),
            "stale": self.is_stale,
            "frames": self.stats.frames_received,
            "frames_overwritten": self.stats.frames_overwritten,
            "reconnects": max(0, self.stats.opens - 1),
        }

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop both threads.  Waits at most ``timeout_s`` (default: open + read timeout + 1 s).

        True when the grabber thread ended; False means it is still inside a blocking
        OpenCV call and will end by itself when that call times out (it is a daemon).
        """
        self._stop.set()
        self._restart.set()
        with self._cond:
            self._cond.notify_all()
        if not self._started:
            return True
        if timeout_s is None:
            timeout_s = (self._cfg.open_timeout_ms + self._cfg.read_timeout_ms) / 1000.0 + 1.0
        self._thread.join(timeout_s)
        self._watchdog.join(1.0)
        if self._thread.is_alive():
            log.warning("camera %s: grabber still blocked in a read after %.1f s; leaving it to time out", self.camera_id, timeout_s)
            return False
        return True

    def __enter__(self) -> "LiveGrabber":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.monotonic() - self._epoch

    def _mask(self, text: str) -> str:
        text = text.replace(self._spec, self.description)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _emit(self, kind: SourceEventKind, detail: str) -> None:
        event = SourceEvent(kind=kind, camera=self.camera_id, timestamp=self._now(), detail=self._mask(detail), wall=self._clock.wall())
        self.stats.events[kind] = self.stats.events.get(kind, 0) + 1
        level = logging.INFO if kind == "source_restored" else logging.WARNING
        log.log(level, "camera %s: %s: %s", self.camera_id, kind, event.detail)
        with self._events_lock:
            self._events.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken listener must not kill the camera
                log.exception("camera %s: on_event callback failed", self.camera_id)

    def _went_down(self, detail: str) -> None:
        self._up = False
        if not self._down_reported:
            self._down_reported = True
            self._emit("source_lost", detail)

    def _store(self, frame: Frame) -> None:
        now = self._clock.monotonic()
        # One timeline per camera across reconnects: each session's own frame times (the
        # stream's presentation times where it has them) are shifted onto the grabber's clock
        # at the session's first frame, and re-based if they drift away from it.
        clock_ts = now - self._epoch
        if self._session_base is None or abs(self._session_base + frame.timestamp - clock_ts) > _MAX_SESSION_DRIFT_S:
            self._session_base = clock_ts - frame.timestamp
        ts = max(self._session_base + frame.timestamp, self._last_stamp)
        self._last_stamp = ts
        restamped = Frame(source_id=self.camera_id, index=self._next_index, timestamp=ts, image=frame.image)
        self._next_index += 1
        with self._cond:
            if self._latest is not None and self._latest.index > self._taken_index:
                self.stats.frames_overwritten += 1
            self._latest = restamped
            self._last_frame_at = now
            self.stats.frames_received += 1
            self._stale_reported = False
            self._cond.notify_all()

    def _run(self) -> None:
        delays = backoff_delays(*self._backoff, self._rng)
        while not self._stop.is_set():
            try:
                source = self._opener(self._spec, camera_id=self.camera_id, cfg=self._cfg, clock=self._clock)
            except Exception as exc:  # SourceError normally; anything else must not kill the thread either
                self.stats.open_failures += 1
                why = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"
                self._went_down(why)
                log.debug("camera %s: open failed (%d so far): %s", self.camera_id, self.stats.open_failures, self._mask(why))
                self._stop.wait(next(delays))
                continue

            self.stats.opens += 1
            self._restart.clear()  # a restart asked for the previous session is done
            self._up = True
            if self._down_reported:
                self._down_reported = False
                self._emit("source_restored", f"{self.description} delivering again")
            session_start = self._clock.monotonic()
            frames_before = self.stats.frames_received
            self._session_base = None
            why = ""
            try:
                sampler = Sampler(self._retrieve_fps) if self._retrieve_fps else None
                for frame in source.frames(sampler=sampler):
                    self._store(frame)
                    if self._restart.is_set() or self._stop.is_set():
                        break
                why = source.stats.end_reason or "stream ended"
            except Exception as exc:
                why = f"read failed: {type(exc).__name__}: {exc}"
            finally:
                try:
                    source.close()
                except Exception as exc:  # pragma: no cover - release() should not raise
                    log.debug("camera %s: close failed: %s", self.camera_id, self._mask(str(exc)))
            if self._stop.is_set():
                break
            self.stats.sessions_ended += 1
            if self._restart.is_set():
                self.stats.stale_restarts += 1
                why = f"restarted by the watchdog: no frame for {self.stale_after_s:g} s"
            self._went_down(why)
            healthy_s = min(self.stale_after_s, _HEALTHY_SESSION_S)
            if self.stats.frames_received > frames_before and self._clock.monotonic() - session_start >= healthy_s:
                delays = backoff_delays(*self._backoff, self._rng)  # it was healthy for a while: start over
            self._stop.wait(next(delays))
        self._up = False

    def _watch(self) -> None:
        tick = min(0.25, self.stale_after_s / 4.0)
        while not self._stop.wait(tick):
            if not self.is_stale or self._stale_reported:
                continue
            self._stale_reported = True
            age = self.last_frame_age()
            since = "since start" if age is None else f"for {age:.1f} s"
            if not self._down_reported:  # a lost source was reported already; stale adds nothing
                self._emit("source_stale", f"no frame {since} (limit {self.stale_after_s:g} s)")
            if self._up:
                self._restart.set()
