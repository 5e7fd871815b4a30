"""The escalation bus across boxes and workers, against a real redis-server on 127.0.0.1.

Edge boxes are `tools.fleet_loadgen` processes (a real `FleetTeacherQueue` with made-up
escalations) or the real `edgewatch` command; workers are real `edgewatch teacher-worker`
processes with the offline teacher and an added latency.  Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import servers
from conftest import ROOT, require
from pipeline.clock import SystemClock
from pipeline.config.loading import settings_from_dict
from pipeline.fleet.bus import RedisBus
from pipeline.fleet.edge import FleetTeacherQueue
from tools.fleet_loadgen import synthetic_escalation, tally
from pipeline.fleet.wire import decode_reply, decode_request, encode_request, encode_verdict
from pipeline.records import Priority, Verdict, VerdictKind
from pipeline.sinks.metrics import FleetMetrics
from pipeline.teacher.queue import QueueResult, ShedRecord, TeacherQueue

pytestmark = pytest.mark.timeout(180)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[servers.ServerProcess]:
    require(servers.redis_available(), "redis-server not installed (apt-get install redis-server)")
    server = servers.start_redis(tmp_path / "redis")
    yield server
    server.kill()


def url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def start_worker(port: int, name: str, tmp: Path, *, latency_ms: int, visibility_s: float = 30.0) -> subprocess.Popen[str]:
    env = {**os.environ, "EDGEWATCH_FLEET__VISIBILITY_TIMEOUT_S": str(visibility_s), "EDGEWATCH_FLEET__RECONNECT_S": "0.3",
           "EDGEWATCH_FLEET__SOCKET_TIMEOUT_S": "1", "EDGEWATCH_LOG_LEVEL": "INFO"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "run_camera.py"), "teacher-worker", "--redis", url(port), "--name", name, "--teacher", "offline",
         "--added-latency-ms", str(latency_ms)],
        cwd=ROOT, env=env, stdout=open(tmp / f"{name}.out", "w"), stderr=open(tmp / f"{name}.err", "w"), text=True,
    )


def start_box(port: int, box: str, tmp: Path, *, cameras: int, escalations: int, timeout_s: float = 90.0,
              interval_ms: int = 0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.fleet_loadgen", "--redis", url(port), "--box", box, "--cameras", str(cameras),
         "--escalations", str(escalations), "--out", str(tmp / f"{box}.json"), "--timeout-s", str(timeout_s),
         "--interval-ms", str(interval_ms)],
        cwd=ROOT, stdout=open(tmp / f"{box}.out", "w"), stderr=open(tmp / f"{box}.err", "w"), text=True,
    )


def finish(proc: subprocess.Popen[str], timeout_s: float) -> int:
    try:
        return proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        raise AssertionError(f"process {proc.args[:4]} did not finish within {timeout_s:g} s") from None


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def fleet_settings(port: int, **fleet: Any) -> Any:
    return settings_from_dict({"teacher": {"batch_window_ms": 0},
                               "fleet": {"redis_url": url(port), "reconnect_s": 0.2, "socket_timeout_s": 0.5, **fleet}})


def open_box(settings: Any, box: str, metrics: FleetMetrics | None = None) -> FleetTeacherQueue:
    from pipeline.analyzers.offline import OfflineTeacher

    clock = SystemClock()
    local = TeacherQueue(OfflineTeacher(settings.offline, settings.zones, clock), settings.teacher, clock)
    bus = RedisBus(settings.fleet.redis_url, settings.fleet.stream_prefix, socket_timeout_s=settings.fleet.socket_timeout_s)
    return FleetTeacherQueue(local, bus, settings.fleet, settings.teacher, clock, box_id=box, metrics=metrics)


def collect(queue: FleetTeacherQueue, into: list[Any], until: Callable[[list[Any]], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        into.extend(queue.poll())
        if until(into):
            return
        time.sleep(0.02)
    raise AssertionError(f"answers after {timeout_s:g} s: {into}")


def answered_ids(results: list[Any]) -> list[str]:
    return [r.escalation.id if isinstance(r, QueueResult) else r.escalation_id for r in results]


# --------------------------------------------------------------------------------------
# The wire (no server)
# --------------------------------------------------------------------------------------


def test_request_and_verdict_survive_the_wire() -> None:
    esc = synthetic_escalation("cam7", 0, created_at=12.5)
    fields = encode_request("box/boot/cam7-esc-00000", "box", esc, thresholds={"min_confidence": 0.6},
                            zones=[{"name": "door", "points": [[0, 0], [1, 0], [1, 1]]}])
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in fields.items())
    request = decode_request(fields)
    got = request.escalation
    assert (request.rid, request.box, request.thresholds) == ("box/boot/cam7-esc-00000", "box", {"min_confidence": 0.6})
    assert (got.id, got.camera, got.incident_id, got.priority, got.flags, got.created_at) == (
        esc.id, esc.camera, esc.incident_id, esc.priority, esc.flags, esc.created_at)
    assert [k.jpeg for k in got.keyframes] == [k.jpeg for k in esc.keyframes]  # the box's JPEG bytes, untouched
    assert got.keyframes[0].frame.image.shape == (120, 160, 3)
    assert [r.safety_flags for r in got.timeline] == [r.safety_flags for r in esc.timeline]
    verdict = Verdict(esc.id, esc.camera, esc.incident_id, VerdictKind.CONFIRMED, ("a fall",), ("fall",), 0.9,
                      "fell", "offline", "m", 12.0)
    reply = decode_reply(encode_verdict("r1", verdict, worker="w1", service_s=0.25))
    assert (reply.rid, reply.kind, reply.worker, reply.service_s, reply.verdict) == ("r1", "verdict", "w1", 0.25, verdict)


def test_unreadable_request_is_named() -> None:
    from pipeline.fleet.wire import WireError

    fields = encode_request("r", "b", synthetic_escalation("c", 0, 1.0))
    fields[b"kf1"] = b"not a jpeg"
    with pytest.raises(WireError, match="JPEG"):
        decode_request(fields)


# --------------------------------------------------------------------------------------
# Shedding across the site, deduplication, fallback (in-process boxes, real Redis)
# --------------------------------------------------------------------------------------


def test_site_bound_sheds_like_the_local_queue_and_never_safety(redis_server: servers.ServerProcess) -> None:
    settings = fleet_settings(redis_server.port, max_depth=2)
    box_a, box_b = open_box(settings, "a"), open_box(settings, "b")
    bus = RedisBus(url(redis_server.port))
    results_a: list[Any] = []
    results_b: list[Any] = []

    def on_bus(priority: Priority) -> int:
        return bus.figures()[priority].length

    try:
        audit = synthetic_escalation("a-cam", 3, 1.0)           # AUDIT
        flip = synthetic_escalation("a-cam", 2, 2.0)            # FLAG_FLIP
        higher = synthetic_escalation("b-cam", 1, 3.0)          # LOW_CONFIDENCE
        lower = synthetic_escalation("b-cam", 8, 4.0)           # AUDIT
        safety = [synthetic_escalation("b-cam", n, 5.0 + n) for n in (0, 5, 10)]
        assert (audit.priority, flip.priority, higher.priority, lower.priority) == (
            Priority.AUDIT, Priority.FLAG_FLIP, Priority.LOW_CONFIDENCE, Priority.AUDIT)
        assert {e.priority for e in safety} == {Priority.SAFETY}
        box_a.submit(audit)
        box_a.submit(flip)
        wait_until(lambda: on_bus(Priority.AUDIT) + on_bus(Priority.FLAG_FLIP) == 2, 10, "box a's requests on the bus")
        # Full (2): a higher one displaces the oldest of the lowest priority, on another box.
        assert box_b.submit(higher).outcome == "queued"
        collect(box_a, results_a, lambda r: len(r) >= 1, 10)
        assert [(r.escalation_id, r.reason) for r in results_a] == [(audit.id, "displaced")]
        # Full, and nothing at or below AUDIT waits now: the incoming one is shed.
        box_b.submit(lower)
        collect(box_b, results_b, lambda r: len(r) >= 1, 10)
        assert [(r.escalation_id, r.reason) for r in results_b] == [(lower.id, "lowest_priority")]
        assert all(isinstance(r, ShedRecord) for r in results_a + results_b)
        # Safety over the bound: all three on the bus, none shed or trimmed.
        for esc in safety:
            box_b.submit(esc)
        wait_until(lambda: on_bus(Priority.SAFETY) == 3, 10, "three safety requests on the bus")
        figures = bus.figures()
        assert sum(f.length for p, f in figures.items() if p < Priority.SAFETY) == 2
        results_b.extend(box_b.poll())
        assert len(results_b) == 1
        assert box_b.summary()["fleet"]["shed_by_reason"] == {"lowest_priority": 1}
        assert box_a.summary()["fleet"]["shed_by_reason"] == {"displaced": 1}
        wait_until(lambda: box_b.state().depth == 2, 5, "the box to report the site's depth")  # what its policy reads
        assert box_b.state().capacity == 2
    finally:
        box_a.close(drain=False, timeout_s=1)
        box_b.close(drain=False, timeout_s=1)
        bus.close()


def test_a_verdict_delivered_twice_is_applied_once(redis_server: servers.ServerProcess) -> None:
    from pipeline.analyzers.offline import OfflineTeacher
    from pipeline.fleet.worker import TeacherWorker

    settings = fleet_settings(redis_server.port)
    metrics = FleetMetrics()
    box = open_box(settings, "dup", metrics)
    bus = RedisBus(url(redis_server.port))
    results: list[Any] = []
    try:
        esc = synthetic_escalation("dup-cam", 1, 1.0)
        box.submit(esc)
        entry = None
        wait_until(lambda: bus.figures()[esc.priority].length == 1, 5, "the request on the bus")
        entry = bus.read_request("test-worker", block_ms=100)
        assert entry is not None
        worker = TeacherWorker(bus, OfflineTeacher(settings.offline, [], SystemClock()), settings.fleet, SystemClock(), name="w")
        rid, reply_box, verdict = worker._review(entry)
        reply = encode_verdict(rid, verdict, worker="w", service_s=0.1)
        bus.answer(entry, reply_box, reply, 1000)
        bus.answer(entry, reply_box, reply, 1000)  # at-least-once: the same verdict arrives again
        collect(box, results, lambda r: len(r) >= 1, 10)
        time.sleep(0.5)
        results.extend(box.poll())
        assert answered_ids(results) == [esc.id]
        assert box.summary()["fleet"]["duplicates_dropped"] == 1
        assert b"edgewatch_fleet_duplicate_replies_total 1.0" in metrics.render()
    finally:
        box.close(drain=False, timeout_s=1)
        bus.close()


def test_redis_down_box_uses_its_local_queue_and_drains_back(tmp_path: Path) -> None:
    require(servers.redis_available(), "redis-server not installed (apt-get install redis-server)")
    from pipeline.analyzers.offline import OfflineTeacher
    from pipeline.fleet.worker import TeacherWorker

    server = servers.start_redis(tmp_path / "redis")
    port = server.port
    metrics = FleetMetrics()
    box = open_box(fleet_settings(port), "fb", metrics)
    results: list[Any] = []
    worker_thread = None
    worker = None
    try:
        assert box.bus_up
        server.kill()
        wait_until(lambda: not box.bus_up, 10, "the box to notice Redis is gone")
        during = synthetic_escalation("fb-cam", 1, 1.0)
        assert box.submit(during).reason.startswith("Redis unreachable, local teacher queue")
        collect(box, results, lambda r: len(r) >= 1, 20)
        assert answered_ids(results) == [during.id] and results[0].verdict.backend == "offline"

        server = servers.start_redis(tmp_path / "redis", port=port)
        wait_until(lambda: box.bus_up, 15, "the box to find Redis again")
        settings = fleet_settings(port)
        bus = RedisBus(url(port), socket_timeout_s=1.0)
        worker = TeacherWorker(bus, OfflineTeacher(settings.offline, [], SystemClock()), settings.fleet, SystemClock(), name="tw")
        worker_thread = threading.Thread(target=worker.run, daemon=True)
        worker_thread.start()
        after = synthetic_escalation("fb-cam", 2, 2.0)
        box.submit(after)
        collect(box, results, lambda r: len(r) >= 2, 20)
        assert answered_ids(results) == [during.id, after.id]
        fleet = box.summary()["fleet"]
        assert (fleet["fallbacks"], fleet["answered_locally"], fleet["answered_by_bus"]) == (1, 1, 1)
        rendered = metrics.render()
        assert b"edgewatch_fleet_fallbacks_total 1.0" in rendered and b"edgewatch_fleet_bus_up 1.0" in rendered
    finally:
        if worker is not None:
            worker.stop.set()
        if worker_thread is not None:
            worker_thread.join(10)
        box.close(drain=False, timeout_s=1)
        server.kill()


# --------------------------------------------------------------------------------------
# Processes: three boxes, two workers, one killed; Redis restarted
# --------------------------------------------------------------------------------------


def test_three_boxes_two_workers_one_killed_mid_request(redis_server: servers.ServerProcess, tmp_path: Path) -> None:
    port = redis_server.port
    bus = RedisBus(url(port))
    victim = start_worker(port, "victim", tmp_path, latency_ms=400, visibility_s=2.0)
    survivor = start_worker(port, "survivor", tmp_path, latency_ms=400, visibility_s=2.0)
    boxes = [start_box(port, f"box{i}", tmp_path, cameras=2, escalations=4) for i in range(3)]
    try:
        def victim_holds_a_request() -> bool:
            bus.ensure_request_groups()
            return any(bus._redis.xpending_range(s, bus.group, "-", "+", 10, consumername="victim")  # noqa: SLF001
                       for s in bus.request_streams)

        wait_until(victim_holds_a_request, 30, "the victim worker to take a request")
        victim.kill()  # SIGKILL mid-review: no verdict written, the request stays pending
        victim.wait(5)
        for proc in boxes:
            assert finish(proc, 120) == 0
    finally:
        for proc in (victim, survivor, *boxes):
            stop(proc)
        bus.close()
    reports = [json.loads((tmp_path / f"box{i}.json").read_text()) for i in range(3)]
    counts = tally(reports)
    assert counts == {"sent": 24, "answered": 24, "lost": 0, "applied_twice": 0}
    assert all(a["kind"] == "verdict" and a["backend"] == "offline" for r in reports for a in r["answers"])
    assert sum(r["summary"]["fleet"]["answered_by_bus"] for r in reports) == 24
    survivor_said = (tmp_path / "survivor.out").read_text()
    assert "0 reclaimed" not in survivor_said and " reclaimed" in survivor_said, survivor_said


def test_redis_restart_loses_nothing_acknowledged(tmp_path: Path) -> None:
    require(servers.redis_available(), "redis-server not installed (apt-get install redis-server)")
    server = servers.start_redis(tmp_path / "redis")
    port = server.port
    bus = RedisBus(url(port), socket_timeout_s=1.0)
    box = start_box(port, "rbox", tmp_path, cameras=3, escalations=4)
    worker = None
    try:
        wait_until(lambda: sum(f.length for f in bus.figures().values()) == 12, 30, "all 12 requests on the bus")
        worker = start_worker(port, "rw", tmp_path, latency_ms=300)
        wait_until(lambda: sum(f.length for f in bus.figures().values()) <= 9, 30, "a few verdicts")
        server.kill()  # SIGKILL: only what Redis wrote to its append-only file survives
        server = servers.start_redis(tmp_path / "redis", port=port)
        assert finish(box, 120) == 0
    finally:
        for proc in (box, worker):
            if proc is not None:
                stop(proc)
        bus.close()
        server.kill()
    report = json.loads((tmp_path / "rbox.json").read_text())
    assert tally([report]) == {"sent": 12, "answered": 12, "lost": 0, "applied_twice": 0}
    fleet = report["summary"]["fleet"]
    assert fleet["answered_by_bus"] == 12 and fleet["answered_locally"] == 0 and fleet["fallbacks"] >= 1


# --------------------------------------------------------------------------------------
# The real command: the runner's hook, the worker command, the doctor
# --------------------------------------------------------------------------------------


def _demo(tmp_path: Path, name: str, redis_url: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], dict[str, Any]]:
    out = tmp_path / name
    env = {**os.environ, "EDGEWATCH_FLEET__REDIS_URL": redis_url, "EDGEWATCH_FLEET__BOX_ID": name,
           "EDGEWATCH_FLEET__RECONNECT_S": "0.5", "EDGEWATCH_FLEET__SOCKET_TIMEOUT_S": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "run_camera.py"), "demo", "--out", str(out), "--student", "offline",
                           "--teacher", "offline", "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    return done, decisions, json.loads((out / "summary.json").read_text())


def _queued_and_answered(decisions: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    queued = [d["id"] for d in decisions if d.get("kind") == "escalation" and d["queue"] == "queued"]
    answered = [d["escalation_id"] for d in decisions if d.get("kind") == "verdict"]
    return queued, answered


def test_edgewatch_run_gets_its_verdicts_from_a_worker(redis_server: servers.ServerProcess, tmp_path: Path) -> None:
    worker = start_worker(redis_server.port, "demo-worker", tmp_path, latency_ms=0)
    try:
        done, decisions, summary = _demo(tmp_path, "demo-box", url(redis_server.port))
    finally:
        stop(worker)
    assert done.returncode == 0, done.stderr[-2000:]
    queued, answered = _queued_and_answered(decisions)
    assert queued and sorted(answered) == sorted(queued)
    fleet = summary["queue"]["fleet"]
    assert fleet["answered_by_bus"] == len(queued) and fleet["fallbacks"] == 0 and fleet["duplicates_dropped"] == 0
    assert f"{len(queued)} verdicts" in (tmp_path / "demo-worker.out").read_text()


def test_edgewatch_run_with_redis_down_keeps_monitoring(tmp_path: Path) -> None:
    done, decisions, summary = _demo(tmp_path, "lonely-box", url(servers.free_port()))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "teacher bus unavailable" in done.stderr
    queued, answered = _queued_and_answered(decisions)
    assert queued and sorted(answered) == sorted(queued)
    assert summary["frames_analysed"] > 0 and summary["events_by_type"]  # monitoring went on: frames analysed, events written
    fleet = summary["queue"]["fleet"]
    assert fleet["fallbacks"] == 1 and fleet["answered_locally"] == len(queued) and fleet["answered_by_bus"] == 0


def test_doctor_checks_the_redis_connection(redis_server: servers.ServerProcess) -> None:
    from tools.doctor import run_doctor

    def redis_rows(redis_url: str) -> list[Any]:
        settings = settings_from_dict({"student": {"backend": "offline"}, "teacher": {"backend": "offline"},
                                       "fleet": {"redis_url": redis_url, "socket_timeout_s": 1}})
        return [r for r in run_doctor(settings, None, SystemClock()) if r.component == "redis"]

    up = redis_rows(url(redis_server.port))
    assert [r.status for r in up] == ["ready"] and "AOF on" in up[0].detail
    down = redis_rows(f"redis://:s3cret@127.0.0.1:{servers.free_port()}/0")
    assert [r.status for r in down] == ["not ready"] and "s3cret" not in down[0].target and down[0].fix
    assert redis_rows("") == []
