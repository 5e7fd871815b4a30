"""LiveGrabber against real local servers (RTSP, HTTP MJPEG, a silent stream) plus fakes for the watchdog logic."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import servers
from conftest import require
from helpers_video import make_clip
from pipeline.sources.capture import CaptureStats, FrameSource, Sampler
from pipeline.clock import ManualClock, SystemClock
from pipeline.config.capture import CaptureConfig
from pipeline.errors import SourceError
from pipeline.sources.live import LiveGrabber, SourceEvent, backoff_delays
from pipeline.records import Frame

pytestmark = pytest.mark.timeout(60)

PASSWORD = "Pw-9f3kQz"
CFG = CaptureConfig(open_timeout_ms=2000, read_timeout_ms=1000)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("live") / "loop.avi", 100, 25.0, size=(320, 240))


@pytest.fixture(scope="module")
def rtsp_ok() -> None:
    require(servers.rtsp_server_available(), "GStreamer RTSP server (python3-gi, gst-rtsp-server, plugins) not installed")


class Events:
    """Collects SourceEvents from the callback, with waiting."""

    def __init__(self) -> None:
        self.items: list[SourceEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: SourceEvent) -> None:
        with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def wait_for(self, kind: str, count: int = 1, timeout_s: float = 10.0) -> list[SourceEvent]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.kinds(kind)) >= count, timeout_s)
            return self.kinds(kind)

    def kinds(self, kind: str | None = None) -> list[SourceEvent]:
        return [e for e in self.items if kind is None or e.kind == kind]


def grabber(spec: str, events: Events, *, stale_after_s: float = 5.0, clock: object = None, **kw: object) -> LiveGrabber:
    return LiveGrabber(
        spec, camera_id="cam1", cfg=CFG, clock=clock or SystemClock(), stale_after_s=stale_after_s,
        backoff_initial_s=0.2, backoff_max_s=1.0, rng=random.Random(7), on_event=events, **kw,  # type: ignore[arg-type]
    )


def all_text(g: LiveGrabber, events: Events, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> str:
    out, err = capfd.readouterr()
    return "\n".join(
        [caplog.text, out, err, repr(g.health())]
        + [repr(e) for e in events.items]
        + [r.getMessage() for r in caplog.records]
    )


# --------------------------------------------------------------------------------------
# Real servers
# --------------------------------------------------------------------------------------


def test_rtsp_server_killed_and_restarted_reconnects_with_events(
    clip: Path, rtsp_ok: None, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    server = servers.start_rtsp(clip)
    port = server.port
    events = Events()
    g = grabber(f"rtsp://admin:{PASSWORD}@127.0.0.1:{port}/cam", events).start()
    try:
        first = g.wait_latest(-1, timeout_s=8.0)
        assert first is not None, "no frame from the RTSP server"
        assert first.image.shape == (240, 320, 3) and first.source_id == "cam1"
        # Consume for a while: indexes grow, timestamps never go back.
        seen = [first]
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            f = g.wait_latest(seen[-1].index, timeout_s=1.0)
            if f is not None:
                seen.append(f)
        assert len(seen) >= 5
        assert all(b.index > a.index and b.timestamp >= a.timestamp for a, b in zip(seen, seen[1:]))
        assert g.connected and not g.is_stale

        server.kill()  # a crash, not a goodbye
        killed_at = time.monotonic()
        lost = events.wait_for("source_lost", timeout_s=5.0)
        assert lost, "no source_lost after the RTSP server was killed"
        assert time.monotonic() - killed_at < 5.0
        assert not g.connected
        assert events.kinds("source_restored") == []

        server = servers.start_rtsp(clip, port=port)
        restored = events.wait_for("source_restored", timeout_s=10.0)
        assert restored, "no source_restored after the RTSP server came back"
        after = g.wait_latest(seen[-1].index, timeout_s=5.0)
        assert after is not None and after.index > seen[-1].index
        assert after.timestamp > seen[-1].timestamp  # one timeline across the reconnect
        assert [e.kind for e in events.items if e.kind != "source_stale"] == ["source_lost", "source_restored"]
        assert lost[0].timestamp < restored[0].timestamp
        assert g.health()["reconnects"] >= 1
    finally:
        t0 = time.monotonic()
        assert g.close() is True
        assert time.monotonic() - t0 < 3.5
        server.stop()
    assert PASSWORD not in all_text(g, events, caplog, capfd)
    assert "admin:***@" in g.description


def test_mjpeg_stream_keeps_only_the_newest_frame(clip: Path) -> None:
    events = Events()
    with servers.start_mjpeg(clip) as server:
        g = grabber(f"http://127.0.0.1:{server.port}/stream.mjpg", events).start()
        try:
            first = g.wait_latest(-1, timeout_s=5.0)
            assert first is not None
            taken = [first]
            for _ in range(5):  # a consumer much slower than the 25 fps camera
                time.sleep(0.25)
                f = g.latest(taken[-1].index)
                assert f is not None, "a newer frame should be waiting after 0.25 s at 25 fps"
                taken.append(f)
            assert all(b.index > a.index for a, b in zip(taken, taken[1:]))
        finally:
            assert g.close() is True
    g.latest(taken[-1].index)  # take whatever is newest now, so every frame is either taken or overwritten
    s = g.stats
    assert s.frames_received >= 20  # ~1.3 s at 25 fps
    assert s.frames_taken >= len(taken)
    assert s.frames_overwritten > s.frames_received / 2  # most frames were never seen by the slow consumer
    assert s.frames_received == s.frames_taken + s.frames_overwritten
    assert events.items == []


def test_absent_webcam_index_reports_lost_and_retries_without_hanging() -> None:
    index = next(i for i in range(9, 64) if not Path(f"/dev/video{i}").exists())
    events = Events()
    g = grabber(str(index), events).start()
    try:
        lost = events.wait_for("source_lost", timeout_s=3.0)
        assert lost and f"camera {index}" in lost[0].detail
        time.sleep(0.8)
        assert g.stats.open_failures >= 2, "the grabber should keep retrying with backoff"
        assert len(events.kinds("source_lost")) == 1, "one outage, one source_lost"
        assert g.latest(-1) is None and not g.connected
    finally:
        t0 = time.monotonic()
        assert g.close() is True
        assert time.monotonic() - t0 < 1.5


def test_stream_that_never_sends_a_frame_trips_the_watchdog(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    stale_after_s = 1.0
    events = Events()
    with servers.start_silent() as server:
        started = time.monotonic()
        g = grabber(f"http://viewer:{PASSWORD}@127.0.0.1:{server.port}/video", events, stale_after_s=stale_after_s).start()
        try:
            stale = events.wait_for("source_stale", timeout_s=stale_after_s + 2.0)
            fired_after = time.monotonic() - started
            assert stale, "the watchdog did not fire"
            assert stale_after_s <= fired_after < stale_after_s + 0.6
            assert g.is_stale and g.health()["stale"] is True and g.health()["last_frame_age_s"] is None
            # The blocked open gives up within its timeouts and becomes a reported loss.
            lost = events.wait_for("source_lost", timeout_s=(CFG.open_timeout_ms + CFG.read_timeout_ms) / 1000 + 2.0)
            assert lost and "could not be opened" in lost[0].detail
            assert g.latest(-1) is None
        finally:
            t0 = time.monotonic()
            assert g.close() is True
            assert time.monotonic() - t0 < (CFG.open_timeout_ms + CFG.read_timeout_ms) / 1000 + 1.5
    assert PASSWORD not in all_text(g, events, caplog, capfd)


def test_unreachable_url_with_credentials_never_leaks_the_password(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    events = Events()
    spec = f"rtsp://admin:{PASSWORD}@127.0.0.1:{servers.free_port()}/stream?token={PASSWORD}"
    g = grabber(spec, events).start()
    try:
        lost = events.wait_for("source_lost", timeout_s=4.0)
        assert lost
        time.sleep(0.5)  # a few retries, logged at debug
    finally:
        g.close()
    text = all_text(g, events, caplog, capfd)
    assert PASSWORD not in text
    assert "admin:***@" in text


# --------------------------------------------------------------------------------------
# Watchdog and backoff logic, with fakes (deterministic)
# --------------------------------------------------------------------------------------


class FrozenAfterOne(FrameSource):
    """Delivers one frame, then blocks (like a frozen server) until ``release`` is set, then one more frame."""

    def __init__(self, release: threading.Event) -> None:
        self.fps, self.frame_count, self.is_live, self.description = 25.0, None, True, "fake"
        self.stats = CaptureStats()
        self._release = release
        self.closed = False

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:
        image = np.zeros((8, 8, 3), np.uint8)
        yield Frame("x", 0, 0.0, image)
        self._release.wait(10)
        yield Frame("x", 1, 0.1, image)
        self.stats.end_reason = "fake ended"

    def close(self) -> None:
        self.closed = True


def test_watchdog_restarts_a_source_stuck_in_a_read() -> None:
    clock = ManualClock()
    release = threading.Event()
    opened: list[FrozenAfterOne] = []
    ready = threading.Event()

    def opener(spec: str, **_: object) -> FrameSource:
        if opened:
            ready.set()
            release.clear()
        opened.append(FrozenAfterOne(release))
        return opened[-1]

    events = Events()
    g = grabber("fake://", events, stale_after_s=5.0, clock=clock, opener=opener).start()
    try:
        assert g.wait_latest(-1, 2.0) is not None
        time.sleep(0.4)  # several watchdog ticks: nothing is stale on the manual clock yet
        assert events.items == []
        clock.advance(5.5)
        stale = events.wait_for("source_stale", timeout_s=2.0)
        assert stale and "limit 5 s" in stale[0].detail
        assert stale[0].timestamp == pytest.approx(5.5)
        release.set()  # the blocked read returns; the grabber must restart instead of carrying on
        assert ready.wait(3.0), "the grabber did not reopen the stale source"
        assert opened[0].closed
        assert g.stats.stale_restarts == 1
        assert "restarted by the watchdog" in events.wait_for("source_lost")[0].detail
        assert events.wait_for("source_restored")
        assert len(events.kinds("source_stale")) == 1
    finally:
        release.set()
        g.close(2.0)


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    def first(n: int, seed: int) -> list[float]:
        gen = backoff_delays(0.5, 30.0, random.Random(seed))
        return [next(gen) for _ in range(n)]

    delays = first(12, 1)
    for n, d in enumerate(delays):
        ceiling = min(30.0, 0.5 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert delays == first(12, 1)  # deterministic for a seed
    assert delays != first(12, 2)  # jitter really depends on the rng
    assert max(delays) <= 30.0 and delays[-1] >= 15.0


def test_open_failures_follow_the_backoff_and_a_crashing_opener_does_not_kill_the_thread() -> None:
    calls: list[float] = []

    def opener(spec: str, **_: object) -> FrameSource:
        calls.append(time.monotonic())
        if len(calls) % 2:
            raise SourceError("stream could not be opened: fake")
        raise RuntimeError("backend exploded")

    events = Events()
    g = grabber("fake://", events, opener=opener).start()
    time.sleep(1.5)
    assert g.close(1.0) is True
    gaps = [b - a for a, b in zip(calls, calls[1:])]
    assert len(calls) >= 3
    assert gaps[0] >= 0.1 - 0.02 and all(gap <= 1.0 + 0.1 for gap in gaps)  # within [initial/2, max]
    assert len(events.kinds("source_lost")) == 1


@pytest.mark.parametrize("bad", [{"stale_after_s": 0}, {"backoff_initial_s": 5, "backoff_max_s": 1}])
def test_bad_parameters_are_rejected(bad: dict[str, float]) -> None:
    kw: dict[str, object] = {"stale_after_s": 1.0, "backoff_initial_s": 0.5, "backoff_max_s": 30.0, **bad}
    with pytest.raises(ValueError):
        LiveGrabber("0", camera_id="c", cfg=CFG, clock=SystemClock(), rng=random.Random(0), **kw)  # type: ignore[arg-type]



def test_rtsp_frames_carry_the_streams_own_presentation_times(clip: Path, rtsp_ok: None) -> None:
    """RTSP frames are stamped from the stream's RTP presentation time (anchored to the clock)."""
    from pipeline.sources.capture import open_source
    from pipeline.clock import SystemClock

    server = servers.start_rtsp(clip)
    try:
        source = open_source(f"rtsp://127.0.0.1:{server.port}/cam", camera_id="c", cfg=CaptureConfig(), clock=SystemClock())
        stamps = []
        for frame in source.frames():
            stamps.append(frame.timestamp)
            if len(stamps) >= 30:
                break
        timed = source.stream_timed
        source.close()
    finally:
        server.stop()
    assert timed >= 20, "the stream's own timestamps were not used"
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert all(step > 0 for step in steps)
    # The clip is 25 fps: stream time advances ~40 ms per frame, whatever the read jitter.
    assert abs(sorted(steps)[len(steps) // 2] - 0.04) < 0.01


class ShortClip(FrameSource):
    """A few frames over ``seconds`` of the manual clock, then the end (a looped short file camera)."""

    def __init__(self, clock: ManualClock, frames: int, seconds: float) -> None:
        self.fps, self.frame_count, self.is_live, self.description = 25.0, None, True, "fake"
        self.stats = CaptureStats()
        self._clock, self._frames, self._seconds = clock, frames, seconds

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:
        for i in range(self._frames):
            self._clock.advance(self._seconds / max(1, self._frames))
            yield Frame("x", i, i * 0.1, np.zeros((8, 8, 3), np.uint8))
        self.stats.end_reason = "end of clip"


@pytest.mark.parametrize(("frames", "resets"), [(5, True), (0, False)])
def test_backoff_starts_over_after_a_healthy_session_only(frames: int, resets: bool) -> None:
    clock = ManualClock()
    opens: list[float] = []

    def opener(spec: str, **_: object) -> FrameSource:
        opens.append(time.monotonic())
        return ShortClip(clock, frames, seconds=2.5)  # healthy: frames for 2.5 s (>= 2 s)

    g = LiveGrabber("fake://", camera_id="cam1", cfg=CFG, clock=clock, stale_after_s=5.0, backoff_initial_s=0.1,
                    backoff_max_s=0.8, rng=random.Random(3), opener=opener).start()
    try:
        deadline = time.monotonic() + 6.0
        while len(opens) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        g.close(2.0)
    gaps = [b - a for a, b in zip(opens, opens[1:])][:6]
    assert len(gaps) >= 5
    if resets:
        assert max(gaps) < 0.3, gaps  # every wait is the first step of the backoff (0.05..0.1 s)
    else:
        assert max(gaps) >= 0.4, gaps  # sessions without frames are no sign of health: the backoff grows


def test_health_says_a_camera_that_never_answered_is_waiting() -> None:
    up = threading.Event()
    release = threading.Event()  # the source delivers one frame, then holds the session open until released

    def opener(spec: str, **_: object) -> FrameSource:
        if not up.is_set():
            raise SourceError("stream could not be opened: fake")
        return FrozenAfterOne(release)

    events = Events()
    g = grabber("fake://", events, clock=ManualClock(), opener=opener).start()
    try:
        time.sleep(0.3)
        assert g.health()["status"] == "waiting" and not g.health()["connected"]
        up.set()
        assert g.wait_latest(-1, 3.0) is not None
        assert g.health()["status"] == "connected"
    finally:
        release.set()
        g.close(2.0)
    from pipeline.sinks.metrics import health_status

    _code, body = health_status({"cameras": {"door": {"status": "waiting"}, "yard": {"status": "connected"}}})
    assert body["waiting_cameras"] == ["door"]
