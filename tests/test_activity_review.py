"""A teacher's look reviews the person/vehicle events (pipeline/incidents/activity_review.py)."""

from __future__ import annotations

import random

from pipeline.config.escalation import EscalationConfig
from pipeline.config.states import StatesConfig
from pipeline.incidents.activity_review import ActivityLook, activity_looks
from pipeline.incidents.escalation import FixedThresholds, Thresholds
from pipeline.incidents.window import SlidingWindow
from pipeline.records import (EncodedFrame, Escalation, Frame, FrameReport, GateDecision, GateReason, Priority, ReviewStatus,
                              Verdict, VerdictKind)
from states.monitor import CameraMonitor
from tools.evaluation.scoring import Detection, detections_from_events
from tools.labels import LabelledEvent

CAM = "cam1"
TRIGGERS = ["fire", "fall", "smoke"]
PERSON = ("person walking",)
CALM = ("scene calm",)


def report(t: float, obs: tuple[str, ...] = PERSON) -> FrameReport:
    return FrameReport(camera=CAM, frame_index=int(t * 10), timestamp=t, observations=obs, safety_flags=(),
                       confidence=0.9, backend="test", model="m", prompt_version="p", latency_ms=1.0)


def keyframe(t: float) -> EncodedFrame:
    frame = Frame(source_id=CAM, index=int(t * 10), timestamp=t, image=None)  # type: ignore[arg-type]
    return EncodedFrame(frame=frame, jpeg=b"", b64="", width=1, height=1,
                        gate=GateDecision(passed=True, reason=GateReason.CHANGE, score=10.0))


def escalation(keyframes: tuple[float, ...], timeline: tuple[FrameReport, ...], eid: str = "e1") -> Escalation:
    return Escalation(id=eid, camera=CAM, incident_id="i1", reason="safety:fire", priority=Priority.SAFETY,
                      created_at=max(keyframes), flags=frozenset({"fire"}), keyframes=tuple(keyframe(t) for t in keyframes),
                      timeline=timeline)


def verdict(kind: VerdictKind, observations: tuple[str, ...], eid: str = "e1") -> Verdict:
    return Verdict(eid, CAM, "i1", kind, observations, (), 0.9, "because", "test", "t", 1.0)


def monitor() -> tuple[SlidingWindow, CameraMonitor]:
    rule = Thresholds.from_config(EscalationConfig(safety_triggers=TRIGGERS))
    return SlidingWindow(CAM, 10.0), CameraMonitor(CAM, StatesConfig(), safety_triggers=TRIGGERS,
                                                   thresholds=FixedThresholds(rule), rng=random.Random(0))


def test_a_look_dismisses_only_a_kind_the_student_named_on_a_keyframe_the_teacher_saw() -> None:
    timeline = (report(1.0), report(1.5, CALM), report(2.0))
    # The student said "person" at 1.0 and 2.0; the teacher saw 1.0 and 1.5 and names no person.
    looks = activity_looks(escalation((1.0, 1.5), timeline), verdict(VerdictKind.DISMISSED, CALM))
    assert looks == (ActivityLook("person", shown=False, until=1.0),)
    # Shown when the teacher names it, whatever the question (a confirmed fire with a person beside it).
    shown = activity_looks(escalation((1.0, 1.5), timeline), verdict(VerdictKind.CONFIRMED, ("person standing", "flames")))
    assert shown == (ActivityLook("person", shown=True, until=1.5),)
    # No keyframe on a frame the student called a person: the teacher was not shown the claim.
    assert activity_looks(escalation((1.5,), timeline), verdict(VerdictKind.CONFIRMED, CALM)) == ()
    # An unverified verdict (no answer, or a self-contradiction) says nothing.
    assert activity_looks(escalation((1.0,), timeline), verdict(VerdictKind.UNVERIFIED, CALM)) == ()


def test_a_dismissed_activity_event_stays_dismissed_until_the_teacher_sees_the_kind() -> None:
    window, mon = monitor()
    for t in (0.0, 0.5, 1.0):
        mon.update(window.add(report(t)))
    (person,) = [ev for ev in [mon.book.activity] if ev is not None and ev.type == "person"]
    out = mon.review_activity((ActivityLook("person", False, 1.0),), 1.0, "teacher dismissed e1")
    assert [(e.type, e.phase, e.review) for e in out.events] == [("person", "update", ReviewStatus.DISMISSED)]
    # The student goes on reporting the phantom: the same dismissed event, no new one.
    for t in (1.5, 2.0):
        out = mon.update(window.add(report(t)))
        assert not [e for e in out.events if e.phase == "new"]
    assert mon.book.activity is person and person.review == ReviewStatus.DISMISSED
    # A later look that shows a person: the dismissed event ends, a confirmed one opens.
    out = mon.review_activity((ActivityLook("person", True, 2.0),), 2.0, "teacher confirmed e2")
    phases = [(e.type, e.phase, e.review) for e in out.events]
    assert ("person", "end", ReviewStatus.DISMISSED) in phases and ("person", "new", ReviewStatus.CONFIRMED) in phases
    assert mon.book.activity is not person and mon.book.activity.review == ReviewStatus.CONFIRMED


def test_a_look_at_older_frames_does_not_dismiss_an_event_that_began_after_them() -> None:
    window, mon = monitor()
    mon.update(window.add(report(0.0, CALM)))
    mon.update(window.add(report(3.0)))
    out = mon.review_activity((ActivityLook("person", False, 2.0),), 3.0, "teacher dismissed e1")
    assert not out.events and mon.book.activity is not None and mon.book.activity.review == ReviewStatus.NOT_REVIEWED


def test_a_dismissed_activity_event_is_not_a_detection() -> None:
    lines = [{"id": "a", "type": "person", "severity": "activity", "phase": "new", "start": 1.0, "review": "not_reviewed"},
             {"id": "a", "type": "person", "severity": "activity", "phase": "update", "start": 1.0, "review": "dismissed"},
             {"id": "a", "type": "person", "severity": "activity", "phase": "end", "start": 1.0, "end": 3.0,
              "review": "dismissed"},
             {"id": "b", "type": "vehicle", "severity": "activity", "phase": "new", "start": 2.0}]
    dismissed, kept = detections_from_events(lines)
    assert not dismissed.counts and kept.counts
    assert Detection("c", "person", "activity", 1.0, 3.0, "confirmed").overlaps(LabelledEvent("person", 0.0, 2.0), 0.0)


def test_a_question_asked_again_after_a_dismissal_starts_at_the_first_frame_the_teacher_has_not_seen() -> None:
    from pipeline.incidents.keyframes import unseen_start
    from pipeline.incidents.verdicts import Coverage

    def flagged(t: float, flags: tuple[str, ...]) -> FrameReport:
        return FrameReport(camera=CAM, frame_index=int(t * 10), timestamp=t, observations=PERSON, safety_flags=flags,
                           confidence=0.8, backend="test", model="m", prompt_version="p", latency_ms=1.0)

    entries = [(flagged(t, f), keyframe(t)) for t, f in
               ((3.6, ("fall",)), (5.2, ("fall",)), (5.7, ("fall",)), (6.2, ()), (6.7, ("fall",)), (7.1, ("fall",)))]
    dismissed = Coverage(frozenset({"fall"}), until=5.7, strength=0.8)
    assert unseen_start(entries, {"fall"}, [dismissed]) == 6.7  # not 3.6, the onset the teacher already saw
    assert unseen_start(entries, {"fall"}, []) is None  # nothing dismissed: the pattern's onset applies
    assert unseen_start(entries, {"smoke"}, [dismissed]) is None  # a dismissal of another type says nothing
    assert unseen_start(entries, {"fall"}, [Coverage(frozenset({"fall"}), until=7.1, strength=0.8)]) is None
