"""A safety flag that comes back after a real absence is a new incident (policy, monitor, keyframes agree)."""

from __future__ import annotations

from pipeline.config.states import StatesConfig
from pipeline.incidents.escalation import EscalationPolicy, Onsets, QueueState, Thresholds, track_onsets
from pipeline.incidents.keyframes import pattern_onset
from pipeline.records import FrameReport
from pipeline.incidents.window import SlidingWindow
from states.monitor import CameraMonitor

IDLE_QUEUE = QueueState(depth=0, capacity=15, recent_sheds=0)


def _report(t: float, flags: tuple[str, ...] = (), conf: float = 0.9) -> FrameReport:
    return FrameReport(camera="c", frame_index=int(t * 10), timestamp=t, observations=("scene",), safety_flags=flags,
                       confidence=conf, backend="test", model="m", prompt_version="p", latency_ms=1.0)


def test_track_onsets_needs_an_absent_report_and_the_gap() -> None:
    onsets = Onsets()
    onsets, new = track_onsets(onsets, frozenset({"fire"}), 0.0, 2.0)
    assert new == frozenset()  # first sighting is not a re-onset
    onsets, new = track_onsets(onsets, frozenset({"fire"}), 5.0, 2.0)
    assert new == frozenset()  # never reported absent: a static scene skipped by the gate
    onsets, new = track_onsets(onsets, frozenset(), 5.5, 2.0)
    onsets, new = track_onsets(onsets, frozenset({"fire"}), 6.0, 2.0)
    assert new == frozenset()  # absent, but only 1 s since last seen: flicker, not a new onset
    onsets, new = track_onsets(onsets, frozenset(), 6.5, 2.0)
    onsets, new = track_onsets(onsets, frozenset({"fire"}), 9.0, 2.0)
    assert new == frozenset({"fire"})


def _replay(policy: EscalationPolicy, reports: list[FrameReport]) -> list[str]:
    window = SlidingWindow("c", 10.0)
    reasons = []
    for r in reports:
        d = policy.evaluate(window.add(r), IDLE_QUEUE)
        reasons.append(d.reason if d.escalate else "")
    return reasons


def test_dismissed_pattern_is_re_armed_by_a_new_onset_but_not_while_it_stays() -> None:
    policy = EscalationPolicy(Thresholds(min_confidence=0.5, safety_triggers=frozenset({"fire"}), persistence_k=2,
                                         persistence_n=3, audit_every=1000, flip_limit=100))
    lamp = [_report(t, ("fire",)) for t in (30.0, 30.5)]
    assert _replay(policy, lamp)[-1] == "safety:fire"
    policy.suppress({"fire"}, until=60.0, reason="safety:fire")
    still = _replay(policy, [_report(31.0, ("fire",)), _report(35.0, ("fire",))])
    assert still == ["", ""]  # the dismissed lamp stays dismissed while in view
    policy2 = EscalationPolicy(policy.thresholds, policy.memory)
    later = _replay(policy2, [_report(36.0), _report(38.5, ("fire",)), _report(39.0, ("fire",))])
    assert "safety:fire" in later  # gone at 36, back at 38.5: a new fire escalates despite the dismissal


def test_monitor_alerts_again_after_a_new_onset() -> None:
    from pipeline.records import Verdict, VerdictKind

    monitor = CameraMonitor("c", StatesConfig(), ["fire"], rearm_after_s=2.0)
    window = SlidingWindow("c", 10.0)
    for t in (30.0, 30.5):
        monitor.update(window.add(_report(t, ("fire",))))
    monitor.escalate("e1", "i1", "safety:fire", frozenset({"fire"}), 30.5, True)
    monitor.apply_verdict(Verdict("e1", "c", "i1", VerdictKind.DISMISSED, (), (), 0.9, "a lamp", "test", "t", 1.0), 30.5)
    assert monitor.is_covered({"fire"}, 30.5, 0.9) and not monitor.is_covered({"fire"}, 31.0, 0.9)
    new_alerts = []
    for r in (_report(36.0), _report(38.5, ("fire",)), _report(39.0, ("fire",))):
        out = monitor.update(window.add(r))
        new_alerts += [e for e in out.events if e.severity == "alert" and e.phase == "new"]
    assert [e.type for e in new_alerts] == ["fire"] and new_alerts[0].start >= 38.5


def test_pattern_onset_stops_at_an_earlier_incident() -> None:
    entries = [(_report(t, f), None) for t, f in
               [(30.0, ("fire",)), (31.0, ("fire",)), (36.0, ()), (38.5, ("fire",)), (39.0, ("fire",))]]
    assert pattern_onset(entries, {"fire"}, 2.0) == 38.5
    flicker = [(_report(t, f), None) for t, f in [(30.0, ("fire",)), (30.5, ()), (31.0, ("fire",))]]
    assert pattern_onset(flicker, {"fire"}, 2.0) == 30.0
    assert pattern_onset(entries, {"fall"}, 2.0) is None
    assert pattern_onset(entries, (), 2.0) is None


def test_teacher_seeing_an_already_reported_alert_again_does_not_raise_it_twice() -> None:
    from pipeline.records import Verdict, VerdictKind

    monitor = CameraMonitor("c", StatesConfig(cooldown_s=10.0, quiet_after_s=4.0), ["fall"])
    window = SlidingWindow("c", 10.0)
    for t in (19.0, 19.5):
        monitor.update(window.add(_report(t, ("fall",))))
    ended = []
    for t in (20.0, 21.0, 22.0, 23.0, 24.0):
        out = monitor.update(window.add(_report(t)))
        ended += [e for e in out.events if e.type == "fall" and e.phase == "end"]
    assert ended, "the fall alert ends once the flag is gone for quiet_after_s"
    monitor.update(window.add(_report(26.0, conf=0.3)))
    monitor.escalate("e9", "i9", "low_confidence", frozenset(), 26.0, False)
    teacher_sees_old_fall = Verdict("e9", "c", "i9", VerdictKind.CONFIRMED, ("person lying",), ("fall",), 0.8,
                                    "a fall in the older frames", "test", "t", 1.0)
    out = monitor.apply_verdict(teacher_sees_old_fall, 26.0)
    assert not [e for e in out.events if e.type == "fall" and e.phase == "new"]
    # ...but a fall the teacher sees long after the last one is news.
    monitor.update(window.add(_report(60.0, conf=0.3)))
    monitor.escalate("e10", "i10", "low_confidence", frozenset(), 60.0, False)
    later = Verdict("e10", "c", "i10", VerdictKind.CONFIRMED, ("person lying",), ("fall",), 0.8, "a fall", "test", "t", 1.0)
    out = monitor.apply_verdict(later, 60.0)
    assert [e.type for e in out.events if e.phase == "new"] == ["fall"]
