"""Metrics and the /metrics + /healthz endpoint, fetched over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.sources.capture import CaptureStats, FrameSource, Sampler
from pipeline.clock import ManualClock
from pipeline.config.capture import CaptureConfig
from pipeline.sources.live import LiveGrabber
from pipeline.records import Frame
from pipeline.sinks.metrics import Metrics, MetricsServer

pytestmark = pytest.mark.timeout(30)


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


def test_metrics_endpoint_exposes_every_series_with_prometheus_names(metrics: Metrics) -> None:
    metrics.frame("front", "analysed", 3)
    metrics.frame("front", "gated")
    metrics.frame("yard", "overwritten", 7)
    for seconds in (0.02, 0.2, 4.0):
        metrics.student_latency(seconds)
    metrics.set_teacher_queue_depth(4)
    metrics.escalation("safety")
    metrics.escalation("safety")
    metrics.escalation("audit")
    metrics.shed(2)
    metrics.event("front", "new")
    metrics.event("front", "end")
    metrics.verdict("confirmed")
    metrics.source_event("yard", "source_lost")
    metrics.set_mqtt_queue(12, 3)
    metrics.set_mqtt_queue(10, 5)  # a running total: only the difference is added
    server = MetricsServer(metrics, lambda: {"cameras": {}}, port=0)
    try:
        status, ctype, text = fetch(f"{server.url}/metrics")
    finally:
        server.close()
    assert status == 200 and ctype.startswith("text/plain")
    got = samples(text)
    assert got[("edgewatch_frames_total", (("camera", "front"), ("outcome", "analysed")))] == 3
    assert got[("edgewatch_frames_total", (("camera", "front"), ("outcome", "gated")))] == 1
    assert got[("edgewatch_frames_total", (("camera", "yard"), ("outcome", "overwritten")))] == 7
    assert got[("edgewatch_student_latency_seconds_count", ())] == 3
    assert got[("edgewatch_student_latency_seconds_sum", ())] == pytest.approx(4.22)
    assert got[("edgewatch_student_latency_seconds_bucket", (("le", "0.25"),))] == 2
    assert got[("edgewatch_teacher_queue_depth", ())] == 4
    assert got[("edgewatch_escalations_total", (("reason", "safety"),))] == 2
    assert got[("edgewatch_escalations_total", (("reason", "audit"),))] == 1
    assert got[("edgewatch_sheds_total", ())] == 2
    assert got[("edgewatch_events_total", (("camera", "front"), ("type", "new")))] == 1
    assert got[("edgewatch_verdicts_total", (("verdict", "confirmed"),))] == 1
    assert got[("edgewatch_source_events_total", (("camera", "yard"), ("kind", "source_lost")))] == 1
    assert got[("edgewatch_mqtt_queue_depth", ())] == 10
    assert got[("edgewatch_mqtt_dropped_total", ())] == 5


def test_two_metrics_instances_do_not_share_a_registry() -> None:
    a, b = Metrics(), Metrics()
    a.shed()
    assert samples(a.render().decode())[("edgewatch_sheds_total", ())] == 1
    assert samples(b.render().decode())[("edgewatch_sheds_total", ())] == 0


def test_healthz_is_200_when_fresh_503_when_a_camera_is_stale_and_500_when_health_fails(metrics: Metrics) -> None:
    health: dict[str, Any] = {
        "cameras": {
            "front": {"last_frame_age_s": 0.1, "state": "idle", "backend": "offline", "queue_depth": 0, "stale": False},
            "yard": {"last_frame_age_s": 0.4, "state": "alert", "backend": "ollama", "queue_depth": 2, "stale": False},
        },
        "teacher_queue_depth": 2,
    }
    broken = threading.Event()

    def health_fn() -> dict[str, Any]:
        if broken.is_set():
            raise RuntimeError("pipeline gone")
        return health

    server = MetricsServer(metrics, health_fn, port=0)
    try:
        status, ctype, text = fetch(f"{server.url}/healthz")
        body = json.loads(text)
        assert status == 200 and ctype == "application/json"
        assert body["ok"] is True and body["cameras"]["yard"]["backend"] == "ollama"
        assert body["cameras"]["front"]["last_frame_age_s"] == 0.1 and body["teacher_queue_depth"] == 2

        health["cameras"]["yard"]["stale"] = True
        status, _, text = fetch(f"{server.url}/healthz")
        body = json.loads(text)
        assert status == 503 and body["ok"] is False and body["stale_cameras"] == ["yard"]

        broken.set()
        status, _, text = fetch(f"{server.url}/healthz")
        assert status == 500 and "pipeline gone" in json.loads(text)["error"]

        assert fetch(f"{server.url}/nope")[0] == 404
    finally:
        t0 = time.monotonic()
        server.close()
        assert time.monotonic() - t0 < 1.5
    with pytest.raises(OSError):  # really closed: nothing listens any more
        socket.create_connection(("127.0.0.1", server.port), timeout=0.5).close()


def test_close_is_bounded_even_with_an_idle_client_connected(metrics: Metrics) -> None:
    server = MetricsServer(metrics, lambda: {"cameras": {}}, port=0)
    idle = socket.create_connection(("127.0.0.1", server.port))  # connects, never sends a request
    try:
        assert fetch(f"{server.url}/healthz")[0] == 200  # other clients are still served
        t0 = time.monotonic()
        server.close()
        assert time.monotonic() - t0 < 1.5
    finally:
        idle.close()


class OneFrame(FrameSource):
    """Delivers one frame and then nothing more until closed (a camera that froze)."""

    def __init__(self) -> None:
        self.fps, self.frame_count, self.is_live, self.description = 25.0, None, True, "fake"
        self.stats = CaptureStats()
        self.closed = threading.Event()

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:
        yield Frame("x", 0, 0.0, np.zeros((4, 4, 3), np.uint8))
        self.closed.wait(5)

    def close(self) -> None:
        self.closed.set()


def test_healthz_reports_a_live_grabber_going_stale(metrics: Metrics) -> None:
    clock = ManualClock()
    source = OneFrame()
    grabber = LiveGrabber(
        "fake://cam", camera_id="front", cfg=CaptureConfig(), clock=clock, stale_after_s=10.0,
        rng=random.Random(0), opener=lambda spec, **_: source,
    ).start()

    def health_fn() -> dict[str, Any]:
        cam = grabber.health() | {"state": "idle", "backend": "offline", "queue_depth": 0}
        return {"cameras": {"front": cam}}

    server = MetricsServer(metrics, health_fn, port=0)
    try:
        assert grabber.wait_latest(-1, 2.0) is not None
        clock.advance(3.0)
        status, _, text = fetch(f"{server.url}/healthz")
        cam = json.loads(text)["cameras"]["front"]
        assert status == 200 and cam["last_frame_age_s"] == pytest.approx(3.0) and cam["connected"] is True
        clock.advance(8.0)
        status, _, text = fetch(f"{server.url}/healthz")
        cam = json.loads(text)["cameras"]["front"]
        assert status == 503 and cam["stale"] is True and cam["last_frame_age_s"] == pytest.approx(11.0)
    finally:
        server.close()
        source.close()
        grabber.close(2.0)
