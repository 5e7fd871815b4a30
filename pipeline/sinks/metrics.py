"""Prometheus metrics and the health endpoint (the only module that imports prometheus_client).

`Metrics` owns a private `CollectorRegistry` (so tests and several instances never collide
in the global one) and offers one small method per thing the pipeline counts.
`MetricsServer` serves, on 127.0.0.1 by default:

* ``GET /metrics`` — Prometheus text exposition of that registry;
* ``GET /healthz`` — JSON from ``health_fn()``: ``{"ok": bool, "cameras": {id: {...}}, ...}``.
  The status is 200 when every camera is fresh, 503 when any camera reports ``"stale": true``
  (or ``health_fn`` says ``"ok": false``), 500 when ``health_fn`` itself fails.

A camera entry is expected to hold at least ``last_frame_age_s``, ``state``, ``backend``,
``queue_depth`` and ``stale`` (see `pipeline.sources.live.LiveGrabber.health` for the capture part).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pipeline.errors import OutputError

log = logging.getLogger("edgewatch.sinks.metrics")

#: Student calls take tens of milliseconds (offline) to a few seconds (a busy Ollama).
STUDENT_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)

HealthFn = Callable[[], Mapping[str, Any]]


class Metrics:
    """The pipeline's counters, gauges and histograms in a private registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_total = Counter(
            "edgewatch_frames", "Frames by camera and what happened to them (analysed, gated, dropped, stale...).",
            ["camera", "outcome"], registry=r,
        )
        self.student_latency_seconds = Histogram(
            "edgewatch_student_latency_seconds", "Time of one student analysis.", buckets=STUDENT_LATENCY_BUCKETS, registry=r,
        )
        self.teacher_queue_depth = Gauge("edgewatch_teacher_queue_depth", "Escalations waiting for the teacher.", registry=r)
        self.escalations_total = Counter("edgewatch_escalations", "Escalations sent to the teacher queue, by reason.", ["reason"], registry=r)
        self.sheds_total = Counter("edgewatch_sheds", "Escalations shed because the teacher queue was full.", registry=r)
        self.events_total = Counter("edgewatch_events", "Event lines written, by camera and phase (new, update, end).", ["camera", "type"], registry=r)
        self.verdicts_total = Counter("edgewatch_verdicts", "Teacher verdicts (confirmed, dismissed, unverified).", ["verdict"], registry=r)
        self.source_events_total = Counter(
            "edgewatch_source_events", "Live-source events (source_lost, source_restored, source_stale).", ["camera", "kind"], registry=r,
        )
        self.disk_skipped_total = Counter(
            "edgewatch_disk_skipped", "Optional writes (snapshot, agreement_store) skipped because the output disk was low.", ["kind"], registry=r,
        )
        self.mqtt_queue_depth = Gauge("edgewatch_mqtt_queue_depth", "Events waiting on disk for the MQTT broker.", registry=r)
        self.mqtt_dropped_total = Counter("edgewatch_mqtt_dropped", "Events dropped because the MQTT disk queue was full.", registry=r)
        self._mqtt_dropped_seen = 0

    # One method per observation, so callers never touch label plumbing.
    def frame(self, camera: str, outcome: str, n: int = 1) -> None:
        self.frames_total.labels(camera=camera, outcome=outcome).inc(n)

    def student_latency(self, seconds: float) -> None:
        self.student_latency_seconds.observe(max(0.0, seconds))

    def set_teacher_queue_depth(self, depth: int) -> None:
        self.teacher_queue_depth.set(depth)

    def escalation(self, reason: str) -> None:
        self.escalations_total.labels(reason=reason).inc()

    def shed(self, n: int = 1) -> None:
        self.sheds_total.inc(n)

    def event(self, camera: str, phase: str) -> None:
        self.events_total.labels(camera=camera, type=phase).inc()

    def verdict(self, verdict: str) -> None:
        self.verdicts_total.labels(verdict=verdict).inc()

    def source_event(self, camera: str, kind: str) -> None:
        self.source_events_total.labels(camera=camera, kind=kind).inc()

    def disk_skipped(self, kind: str) -> None:
        self.disk_skipped_total.labels(kind=kind).inc()

    def set_mqtt_queue(self, depth: int, dropped_total: int) -> None:
        """Mirror the MQTT sink's disk queue (depth now, drops since start)."""
        self.mqtt_queue_depth.set(depth)
        if dropped_total > self._mqtt_dropped_seen:  # counters only go up: add the difference
            self.mqtt_dropped_total.inc(dropped_total - self._mqtt_dropped_seen)
            self._mqtt_dropped_seen = dropped_total

    def render(self) -> bytes:
        """The Prometheus text exposition of the registry."""
        return generate_latest(self.registry)


def health_status(health: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """HTTP status and body for a health snapshot: 503 when any camera is stale or ``ok`` is false."""
    body = dict(health)
    cameras = body.get("cameras") or {}
    stale = sorted(str(cam) for cam, info in cameras.items() if isinstance(info, Mapping) and info.get("stale"))
    ok = bool(body.get("ok", True)) and not stale
    body["ok"] = ok
    if stale:
        body["stale_cameras"] = stale
    waiting = sorted(str(cam) for cam, info in cameras.items() if isinstance(info, Mapping) and info.get("status") == "waiting")
    if waiting:
        body["waiting_cameras"] = waiting  # never answered since start: monitoring begins when they do
    return (200 if ok else 503), body


class MetricsServer:
    """``/metrics`` and ``/healthz`` over HTTP in a background thread.  ``port=0`` picks a free port."""

    def __init__(self, metrics: Metrics, health_fn: HealthFn, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.metrics = metrics
        self._health_fn = health_fn
        server_ref = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that connects and sends nothing cannot hold a thread forever
            server_version = "edgewatch"

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, server_ref.metrics.render())
                elif path == "/healthz":
                    status, body = server_ref._health()
                    self._send(status, "application/json", json.dumps(body, default=str).encode("utf-8"))
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Cache-Control", "no-store")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server signature
                log.debug("%s " + format, self.address_string(), *args)

        try:
            self._httpd = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as exc:
            raise OutputError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
        self._httpd.daemon_threads = True
        self.host = host
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _health(self) -> tuple[int, dict[str, Any]]:
        try:
            return health_status(self._health_fn())
        except Exception as exc:  # the health check must answer even when the pipeline is broken
            log.warning("health check failed: %s", exc)
            return 500, {"ok": False, "error": f"{type(exc).__name__}: {exc}"}

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop serving; returns within about ``timeout_s``."""
        done = threading.Thread(target=self._httpd.shutdown, daemon=True)
        done.start()
        done.join(timeout_s)
        self._httpd.server_close()
        self._thread.join(timeout=max(0.1, timeout_s))


#: Teacher verdicts over the bus take from a second (offline) to minutes (a busy GPU host).
FLEET_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class FleetMetrics:
    """The escalation bus as seen by an edge box or a teacher worker (docs/FLEET.md).

    Registers into ``registry`` (a box's `Metrics.registry`, so one /metrics shows both) or
    its own.  ``render`` makes it servable by `MetricsServer` on its own (a worker).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.queue_depth = Gauge("edgewatch_fleet_queue_depth", "Requests on the bus waiting or in review, by priority stream.", ["priority"], registry=r)
        self.pending = Gauge("edgewatch_fleet_pending", "Requests delivered to a worker and not yet answered, by priority stream.", ["priority"], registry=r)
        self.reclaimed_total = Counter("edgewatch_fleet_reclaimed", "Requests this worker took over from a worker that stopped answering.", ["worker"], registry=r)
        self.worker_verdicts_total = Counter("edgewatch_fleet_worker_verdicts", "Verdicts written by each worker (its throughput is the rate).", ["worker", "verdict"], registry=r)
        self.review_seconds = Histogram("edgewatch_fleet_review_seconds", "One review on a worker, read to verdict written.", ["worker"], buckets=FLEET_LATENCY_BUCKETS, registry=r)
        self.verdict_latency_seconds = Histogram("edgewatch_fleet_verdict_latency_seconds", "On a box: request sent to verdict received.", buckets=FLEET_LATENCY_BUCKETS, registry=r)
        self.bus_up = Gauge("edgewatch_fleet_bus_up", "1 while Redis answers, 0 while this process falls back.", registry=r)
        self.fallbacks_total = Counter("edgewatch_fleet_fallbacks", "Times this box lost Redis and fell back to its own teacher queue.", registry=r)
        self.local_reviews_total = Counter("edgewatch_fleet_local_reviews", "Escalations this box had reviewed by its own teacher queue (Redis unreachable).", registry=r)
        self.duplicates_total = Counter("edgewatch_fleet_duplicate_replies", "Replies for a request already applied (at-least-once delivery): dropped, not applied twice.", registry=r)
        self.sheds_total = Counter("edgewatch_fleet_sheds", "Requests shed by the site-wide bound, by reason.", ["reason"], registry=r)

    def set_streams(self, figures: Mapping[str, tuple[int, int]]) -> None:
        """Per priority name: (stream length, pending)."""
        for priority, (length, pending) in figures.items():
            self.queue_depth.labels(priority=priority).set(length)
            self.pending.labels(priority=priority).set(pending)

    def reclaimed(self, worker: str, n: int = 1) -> None:
        self.reclaimed_total.labels(worker=worker).inc(n)

    def worker_verdict(self, worker: str, verdict: str, seconds: float) -> None:
        self.worker_verdicts_total.labels(worker=worker, verdict=verdict).inc()
        self.review_seconds.labels(worker=worker).observe(max(0.0, seconds))

    def verdict_latency(self, seconds: float) -> None:
        self.verdict_latency_seconds.observe(max(0.0, seconds))

    def set_bus_up(self, up: bool) -> None:
        self.bus_up.set(1 if up else 0)

    def fallback(self) -> None:
        self.fallbacks_total.inc()

    def local_review(self) -> None:
        self.local_reviews_total.inc()

    def duplicate(self) -> None:
        self.duplicates_total.inc()

    def shed(self, reason: str) -> None:
        self.sheds_total.labels(reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
