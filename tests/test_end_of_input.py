"""Safety flags against the event lifecycle: an activity event never carries them, and a flag the
end of the input cut short is decided on the evidence seen (`pipeline.incidents.end_of_input`)."""

from __future__ import annotations

import random

from pipeline.config.escalation import EscalationConfig
from pipeline.config.states import StatesConfig
from pipeline.incidents.escalation import FixedThresholds, Thresholds
from pipeline.incidents.window import SlidingWindow
from pipeline.records import Event, FrameReport, Verdict, VerdictKind
from states.monitor import CameraMonitor

CAM = "cam1"
TRIGGERS = ["fire", "fall", "smoke", "tamper"]
PERSON = ("person walking left",)


class Replay:
    def __init__(self) -> None:
        self.window = SlidingWindow(CAM, 10.0)
        rule = Thresholds.from_config(EscalationConfig(safety_triggers=TRIGGERS, persistence_k=2, persistence_n=3))
        self.monitor = CameraMonitor(CAM, StatesConfig(), safety_triggers=TRIGGERS, thresholds=FixedThresholds(rule),
                                     rng=random.Random(0))
        self.events: list[Event] = []

    def frame(self, t: float, flags: tuple[str, ...] = (), obs: tuple[str, ...] = PERSON) -> None:
        r = FrameReport(camera=CAM, frame_index=int(t * 10), timestamp=t, observations=obs, safety_flags=flags,
                        confidence=0.9, backend="offline", model="test", prompt_version="v1", latency_ms=1.0)
        self.events.extend(self.monitor.update(self.window.add(r)).events)

    def close(self, t: float) -> None:
        self.events.extend(self.monitor.close(t).events)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]


def test_an_activity_event_never_carries_a_safety_flag_and_the_alert_has_its_own_start() -> None:
    r = Replay()
    for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5):
        r.frame(t)
    r.frame(3.0, ("fall",))
    r.frame(3.5, ("fall",))
    r.close(4.0)
    person = r.of("person")
    assert person and all(not e.flags for e in person)  # started at 0.0: a fall flag there would date it 3 s early
    falls = r.of("fall")
    assert falls and falls[0].severity == "alert" and falls[0].start == 3.5
    assert all("fall" in e.flags for e in falls)


def test_a_flag_in_the_last_report_before_the_input_ends_is_an_alert() -> None:
    r = Replay()
    for t in (0.0, 0.5, 1.0):
        r.frame(t)
    r.frame(1.5, ("fall",))  # one report: persistence (2 of 3) never had its chance
    assert not [e for e in r.events if e.severity == "alert"]
    r.close(1.8)
    falls = r.of("fall")
    assert [e.phase for e in falls] == ["new", "end"]
    assert falls[0].start == 1.5 and falls[-1].end == 1.5  # closed at 1.8, last seen at 1.5
    assert any("input ended" in reason for reason in falls[0].reasons)


def test_a_flag_that_came_and_went_before_the_end_is_no_alert() -> None:
    r = Replay()
    r.frame(0.0)
    r.frame(0.5, ("fire",))
    r.frame(1.0)  # the next report spoke against it
    r.close(1.2)
    assert not r.of("fire")


def test_a_flag_seen_long_before_the_end_is_no_alert() -> None:
    r = Replay()
    r.frame(0.0)
    r.frame(0.5, ("fire",))
    r.close(5.0)  # no report for 4.5 s: the rule had its time and nothing persisted
    assert not r.of("fire")


def test_a_flag_the_teacher_dismissed_is_not_raised_at_the_end() -> None:
    r = Replay()
    r.frame(0.0)
    r.frame(0.5, ("fire",))
    r.events.extend(r.monitor.escalate("esc-1", "inc-1", "safety", frozenset({"fire"}), 0.5, False).events)
    v = Verdict(escalation_id="esc-1", camera=CAM, incident_id="inc-1", kind=VerdictKind.DISMISSED, observations=(),
                safety_flags=(), confidence=0.9, explanation="a lamp", backend="offline", model="t", latency_ms=1.0)
    r.events.extend(r.monitor.apply_verdict(v, 0.6).events)
    r.close(0.8)
    assert not [e for e in r.of("fire") if e.severity == "alert"]


def test_an_alert_already_open_is_not_raised_twice() -> None:
    r = Replay()
    r.frame(0.0, ("fire",))
    r.frame(0.5, ("fire",))
    r.close(0.8)
    assert len({e.id for e in r.of("fire")}) == 1


def test_a_vehicle_seen_while_a_person_is_in_view_is_an_event_of_its_own() -> None:
    r = Replay()
    r.frame(0.0, obs=("person walking left",))
    r.frame(0.5, obs=("person walking left", "vehicle moving at right"))
    r.frame(1.0, obs=("vehicle moving at right",))
    for t in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5):
        r.frame(t, obs=("person standing",))
    r.close(6.0)
    vehicle = r.of("vehicle")
    person = r.of("person")
    assert [e.phase for e in vehicle] == ["new", "end"]
    assert vehicle[0].start == 0.5 and vehicle[-1].end == 1.0  # it ended when it was last seen
    assert person[0].id in vehicle[0].reasons[0]  # linked to the activity event it was seen with
    assert [e.phase for e in person] == ["new", "end"] and person[-1].end == 5.5


def test_a_report_naming_only_its_event_type_opens_nothing_alongside() -> None:
    r = Replay()
    for t in (0.0, 0.5, 1.0):
        r.frame(t, obs=("person walking left", "a man near the door"))
    r.close(1.5)
    assert {e.type for e in r.events} == {"person"}
