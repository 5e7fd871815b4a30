"""The bounded teacher queue: ordering, batching, shedding, fairness, failures, shutdown."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np
import pytest

from pipeline.clock import ManualClock, SystemClock
from pipeline.config.models import TeacherConfig
from pipeline.records import (
    EncodedFrame,
    Escalation,
    Frame,
    GateDecision,
    GateReason,
    Priority,
    Verdict,
    VerdictKind,
)
from pipeline.teacher.queue import QueueResult, ShedRecord, TeacherQueue

WAIT = 10.0  # generous bound for events; tests finish long before it


class FakeTeacher:
    """A fake teacher: records calls, can block on an event, fail or advance a manual clock."""

    backend = "fake"
    model = "fake-teacher"

    def __init__(self, gate: threading.Event | None = None, fail: Sequence[str] = (), bad: Sequence[str] = (),
                 clock: ManualClock | None = None, service_s: float = 0.0) -> None:
        self.gate = gate
        self.fail = set(fail)
        self.bad = set(bad)
        self.clock = clock
        self.service_s = service_s
        self.calls: list[Escalation] = []
        self.entered = threading.Semaphore(0)
        self._lock = threading.Lock()

    def review(self, esc: Escalation) -> Verdict:
        with self._lock:
            self.calls.append(esc)
        self.entered.release()
        if self.gate is not None:
            self.gate.wait(WAIT)
        if self.clock is not None:
            self.clock.advance(self.service_s)
        if esc.id in self.fail:
            raise RuntimeError(f"model exploded on {esc.id}")
        if esc.id in self.bad:
            return "not a verdict"  # type: ignore[return-value]
        return Verdict(esc.id, esc.camera, esc.incident_id, VerdictKind.CONFIRMED, (), tuple(esc.flags), 0.9,
                       "looks real", self.backend, self.model, 1.0)

    def close(self) -> None:
        pass

    @property
    def call_ids(self) -> list[str]:
        with self._lock:
            return [c.id for c in self.calls]


def cfg(**over: object) -> TeacherConfig:
    base: dict[str, object] = dict(max_queue_depth=15, batch_window_ms=0, max_concurrent=1, timeout_ms=60000,
                                   first_call_timeout_ms=60000, max_keyframes=6)
    base.update(over)
    return TeacherConfig(**base)


def keyframe(t: float, camera: str = "cam") -> EncodedFrame:
    frame = Frame(camera, int(t * 10), t, np.zeros((2, 2, 3), dtype=np.uint8))
    return EncodedFrame(frame, b"j", f"b64-{t}", 2, 2, GateDecision(True, GateReason.CHANGE, 1.0))


def esc(eid: str, priority: Priority = Priority.AUDIT, camera: str = "cam", incident: str | None = None,
        t: float = 0.0, flags: Sequence[str] = (), keyframes: Sequence[float] = ()) -> Escalation:
    return Escalation(id=eid, camera=camera, incident_id=incident or f"inc-{eid}", reason=priority.name.lower(),
                      priority=priority, created_at=t, flags=frozenset(flags),
                      keyframes=tuple(keyframe(k, camera) for k in keyframes), timeline=())


def start_blocked(queue: TeacherQueue, teacher: FakeTeacher, camera: str = "blocker") -> None:
    """Occupy the (single) worker with an escalation the teacher holds until its gate opens."""
    queue.submit(esc("blocker", Priority.AUDIT, camera=camera))
    assert teacher.entered.acquire(timeout=WAIT)


def verdicts(results: Sequence[QueueResult | ShedRecord]) -> list[QueueResult]:
    return [r for r in results if isinstance(r, QueueResult)]


def sheds(results: Sequence[QueueResult | ShedRecord]) -> list[ShedRecord]:
    return [r for r in results if isinstance(r, ShedRecord)]


@pytest.fixture
def closing():
    queues: list[TeacherQueue] = []
    yield queues.append
    for q in queues:
        q.close(drain=False, timeout_s=1.0)


# --------------------------------------------------------------------------------------
# Ordering, batching, merging
# --------------------------------------------------------------------------------------


def test_served_by_priority(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(), SystemClock())
    closing(q)
    start_blocked(q, teacher)
    for e in (esc("audit", Priority.AUDIT), esc("low", Priority.LOW_CONFIDENCE), esc("fire", Priority.SAFETY),
              esc("flip", Priority.FLAG_FLIP), esc("scene", Priority.SCENE_CHANGE)):
        assert q.submit(e).outcome == "queued"
    assert q.state().depth == 5
    gate.set()
    assert q.wait_idle(WAIT)
    assert teacher.call_ids == ["blocker", "fire", "low", "flip", "scene", "audit"]
    results = verdicts(q.poll())
    assert [r.verdict.kind for r in results] == [VerdictKind.CONFIRMED] * 6
    assert q.stats.served == 6 and q.state().depth == 0


def test_same_incident_merges_within_the_batch_window() -> None:
    clock = ManualClock()
    teacher = FakeTeacher()
    q = TeacherQueue(teacher, cfg(batch_window_ms=1000, max_keyframes=3), clock)
    try:
        first = esc("e1", Priority.FLAG_FLIP, incident="inc", t=1.0, flags=["loitering"], keyframes=[0.5, 1.0])
        second = esc("e2", Priority.SAFETY, incident="inc", t=2.0, flags=["fire"], keyframes=[1.0, 1.5, 2.0])
        assert q.submit(first).outcome == "queued"
        merged = q.submit(second)
        assert (merged.outcome, merged.into_id) == ("merged", "e1")
        # The manual clock has not moved: the batch window holds the escalation back.
        assert not teacher.entered.acquire(timeout=0.2)
        clock.advance(1.0)
        assert teacher.entered.acquire(timeout=WAIT)
        assert q.wait_idle(WAIT)
        (result,) = verdicts(q.poll())
        sent = result.escalation
        assert sent.id == "e1" and sent.merged_ids == ("e2",)
        assert sent.priority == Priority.SAFETY and sent.flags == {"loitering", "fire"}
        assert [k.timestamp for k in sent.keyframes] == [1.0, 1.5, 2.0]
        assert sent.created_at == 2.0 and q.stats.merged == 1
    finally:
        q.close(drain=False, timeout_s=1.0)


def test_flush_dispatches_before_the_batch_window_ends() -> None:
    teacher = FakeTeacher()
    q = TeacherQueue(teacher, cfg(batch_window_ms=60000), ManualClock())
    try:
        q.submit(esc("e1"))
        q.flush()
        assert teacher.entered.acquire(timeout=WAIT)
        assert q.wait_idle(WAIT)
    finally:
        q.close(drain=False, timeout_s=1.0)


def test_wait_and_service_times_come_from_the_clock(closing) -> None:
    clock = ManualClock()
    gate = threading.Event()
    teacher = FakeTeacher(gate, clock=clock, service_s=2.0)
    q = TeacherQueue(teacher, cfg(), clock)
    closing(q)
    q.submit(esc("e1"))
    assert teacher.entered.acquire(timeout=WAIT)
    q.submit(esc("e2"))
    gate.set()
    assert q.wait_idle(WAIT)
    figures = [(r.escalation.id, r.wait_s, r.service_s) for r in verdicts(q.poll())]
    assert figures == [("e1", 0.0, 2.0), ("e2", 2.0, 2.0)]
    assert q.stats.service_median_s == 2.0


# --------------------------------------------------------------------------------------
# Shedding
# --------------------------------------------------------------------------------------


def test_full_queue_sheds_the_lowest_oldest_and_records_why(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(max_queue_depth=3), SystemClock())
    closing(q)
    start_blocked(q, teacher)
    for e in (esc("a1", Priority.AUDIT), esc("f1", Priority.FLAG_FLIP), esc("l1", Priority.LOW_CONFIDENCE)):
        assert q.submit(e).outcome == "queued"
    equal = q.submit(esc("a2", Priority.AUDIT))
    assert (equal.outcome, equal.shed_id) == ("queued", "a1")  # the oldest among equals goes
    higher = q.submit(esc("s1", Priority.SCENE_CHANGE))
    assert (higher.outcome, higher.shed_id) == ("queued", "a2")
    lowest = q.submit(esc("a3", Priority.AUDIT))
    assert (lowest.outcome, lowest.shed_id) == ("shed", "a3")
    state = q.state()
    assert state.depth == 3 and state.recent_sheds == 3
    records = sheds(q.poll())
    assert [(r.escalation_id, r.reason) for r in records] == [("a1", "displaced"), ("a2", "displaced"), ("a3", "lowest_priority")]
    assert q.stats.shed_by_priority == {"AUDIT": 3}
    gate.set()
    assert q.wait_idle(WAIT)
    assert teacher.call_ids == ["blocker", "l1", "f1", "s1"]


def test_safety_displaces_a_non_safety_item_when_full(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(max_queue_depth=2), SystemClock())
    closing(q)
    start_blocked(q, teacher)
    q.submit(esc("flip", Priority.FLAG_FLIP))
    q.submit(esc("audit", Priority.AUDIT))
    result = q.submit(esc("fire", Priority.SAFETY, camera="c1"))
    assert (result.outcome, result.shed_id) == ("queued", "audit")
    gate.set()
    assert q.wait_idle(WAIT)
    assert teacher.call_ids == ["blocker", "fire", "flip"]


def test_safety_merges_into_the_same_cameras_waiting_safety_when_full(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(max_queue_depth=2), SystemClock())
    closing(q)
    start_blocked(q, teacher)
    q.submit(esc("fire1", Priority.SAFETY, camera="c1", flags=["fire"]))
    q.submit(esc("audit", Priority.AUDIT, camera="c2"))
    result = q.submit(esc("fall1", Priority.SAFETY, camera="c1", flags=["fall"]))
    assert (result.outcome, result.into_id) == ("merged", "fire1")
    gate.set()
    assert q.wait_idle(WAIT)
    sent = {r.escalation.id: r.escalation for r in verdicts(q.poll())}
    assert sent["fire1"].flags == {"fire", "fall"} and sent["fire1"].merged_ids == ("fall1",)


def test_overflow_slot_holds_safety_when_every_waiting_item_is_safety(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(max_queue_depth=2), SystemClock())
    closing(q)
    start_blocked(q, teacher)
    q.submit(esc("a", Priority.SAFETY, camera="ca"))
    q.submit(esc("b", Priority.SAFETY, camera="cb"))
    held = q.submit(esc("c1", Priority.SAFETY, camera="cc"))
    assert held.outcome == "queued" and "overflow" in held.reason
    again = q.submit(esc("c2", Priority.SAFETY, camera="cc"))
    assert (again.outcome, again.into_id) == ("merged", "c1")
    low = q.submit(esc("low", Priority.LOW_CONFIDENCE, camera="cd"))
    assert low.outcome == "shed"
    assert q.state().depth == 2 and q.stats.overflow_max == 1
    gate.set()
    assert q.wait_idle(WAIT)
    reviewed = verdicts(q.poll())
    assert {r.escalation.id for r in reviewed} == {"blocker", "a", "b", "c1"}
    assert q.stats.safety_shed == 0


def test_flood_never_loses_a_safety_escalation_and_depth_stays_bounded(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(max_queue_depth=4), SystemClock())
    closing(q)
    start_blocked(q, teacher)
    cameras = ["c0", "c1", "c2"]
    priorities = [Priority.AUDIT, Priority.SCENE_CHANGE, Priority.FLAG_FLIP, Priority.LOW_CONFIDENCE, Priority.SAFETY]
    safety_ids: set[str] = set()
    depths = []
    for i in range(60):
        priority = priorities[(i * 7) % len(priorities)]
        e = esc(f"e{i}", priority, camera=cameras[i % 3], incident=f"inc{i // 5}", t=float(i))
        if priority == Priority.SAFETY:
            safety_ids.add(e.id)
        q.submit(e)
        depths.append(q.state().depth)
    assert max(depths) <= 4
    gate.set()
    assert q.wait_idle(WAIT)
    results = q.poll()
    covered = {r.escalation.id for r in verdicts(results)} | {m for r in verdicts(results) for m in r.escalation.merged_ids}
    assert safety_ids and safety_ids <= covered
    assert not [s for s in sheds(results) if s.priority == Priority.SAFETY]
    assert q.stats.shed > 0  # the flood really overflowed


# --------------------------------------------------------------------------------------
# Fairness
# --------------------------------------------------------------------------------------


def test_equal_priority_is_served_round_robin_by_camera(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(max_queue_depth=20), SystemClock())
    closing(q)
    start_blocked(q, teacher, camera="other")
    for i in range(1, 7):
        q.submit(esc(f"busy{i}", Priority.LOW_CONFIDENCE, camera="busy"))
    for i in range(1, 3):
        q.submit(esc(f"quiet{i}", Priority.LOW_CONFIDENCE, camera="quiet"))
    gate.set()
    assert q.wait_idle(WAIT)
    assert teacher.call_ids[1:] == ["busy1", "quiet1", "busy2", "quiet2", "busy3", "busy4", "busy5", "busy6"]


# --------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------


def test_teacher_exception_and_bad_answer_become_unverified(closing) -> None:
    teacher = FakeTeacher(fail=["boom"], bad=["odd"])
    q = TeacherQueue(teacher, cfg(), SystemClock())
    closing(q)
    for e in (esc("boom"), esc("odd"), esc("fine")):
        q.submit(e)
    assert q.wait_idle(WAIT)
    by_id = {r.escalation.id: r.verdict for r in verdicts(q.poll())}
    assert by_id["boom"].kind == VerdictKind.UNVERIFIED and "model exploded on boom" in by_id["boom"].explanation
    assert by_id["odd"].kind == VerdictKind.UNVERIFIED and "not a Verdict" in by_id["odd"].explanation
    assert by_id["fine"].kind == VerdictKind.CONFIRMED
    assert q.stats.errors == 2


def test_teacher_timeout_becomes_unverified_and_a_hung_teacher_is_not_piled_on(closing) -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(timeout_ms=100, first_call_timeout_ms=100), SystemClock())
    closing(q)
    q.submit(esc("slow"))
    assert q.wait_idle(WAIT)
    q.submit(esc("next"))
    assert q.wait_idle(WAIT)
    by_id = {r.escalation.id: r.verdict for r in verdicts(q.poll())}
    assert "timed out after 100 ms" in by_id["slow"].explanation
    assert "unresponsive" in by_id["next"].explanation
    assert teacher.call_ids == ["slow"]  # the hung call was not joined by another
    assert q.stats.hung_calls == 1
    teacher.gate = None
    gate.set()  # the hung call returns; its late answer is discarded and the teacher is used again
    settle = threading.Event()
    for _ in range(int(WAIT / 0.01)):
        if q.stats.hung_calls == 0:
            break
        settle.wait(0.01)
    assert q.stats.hung_calls == 0
    q.submit(esc("after"))
    assert q.wait_idle(WAIT)
    (result,) = verdicts(q.poll())
    assert result.verdict.kind == VerdictKind.CONFIRMED
    assert teacher.call_ids == ["slow", "after"]
    assert q.stats.timeouts == 1


def test_a_crashed_worker_is_replaced_and_its_escalation_still_answered(closing, monkeypatch) -> None:
    teacher = FakeTeacher()
    q = TeacherQueue(teacher, cfg(), SystemClock())
    closing(q)
    real_serve = q._serve
    calls = {"n": 0}

    def crash_once(item):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("bug in the worker")
        return real_serve(item)

    monkeypatch.setattr(q, "_serve", crash_once)
    q.submit(esc("first"))
    assert q.wait_idle(WAIT)
    q.submit(esc("second"))
    assert q.wait_idle(WAIT)
    by_id = {r.escalation.id: r.verdict for r in verdicts(q.poll())}
    assert by_id["first"].kind == VerdictKind.UNVERIFIED and "worker crashed" in by_id["first"].explanation
    assert by_id["second"].kind == VerdictKind.CONFIRMED
    assert q.stats.worker_crashes == 1


# --------------------------------------------------------------------------------------
# Shutdown
# --------------------------------------------------------------------------------------


def test_close_without_drain_sheds_waiting_items_as_shutdown() -> None:
    gate = threading.Event()
    teacher = FakeTeacher(gate)
    q = TeacherQueue(teacher, cfg(), SystemClock())
    start_blocked(q, teacher)
    q.submit(esc("w1"))
    q.submit(esc("w2", Priority.SAFETY))
    gate.set()
    q.close(drain=False, timeout_s=WAIT)
    records = sheds(q.poll())
    assert sorted((r.escalation_id, r.reason) for r in records) == [("w1", "shutdown"), ("w2", "shutdown")]
    late = q.submit(esc("late"))
    assert late.outcome == "shed" and sheds(q.poll())[0].reason == "closed"
    q.close(drain=True, timeout_s=1.0)  # a second close is harmless


def test_close_with_drain_serves_everything() -> None:
    teacher = FakeTeacher()
    q = TeacherQueue(teacher, cfg(batch_window_ms=60000), ManualClock())
    for i in range(4):
        q.submit(esc(f"e{i}"))
    q.close(drain=True, timeout_s=WAIT)
    assert sorted(r.escalation.id for r in verdicts(q.poll())) == ["e0", "e1", "e2", "e3"]
    assert q.summary()["served"] == 4
