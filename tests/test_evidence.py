"""One SafetyEvidence per frame: the window reads each report once (flags and observations, synonyms,
negation, the gate's hint) and the monitor and the policy both act on that one reading, with one
persistence rule."""

from __future__ import annotations

from pipeline.config.escalation import EscalationConfig
from pipeline.config.states import StatesConfig
from pipeline.incidents import evidence as evidence_module
from pipeline.incidents.escalation import EscalationPolicy, FixedThresholds, QueueState, Thresholds
from pipeline.incidents.evidence import EvidenceReader, activity_kind, persisting
from pipeline.incidents.window import SlidingWindow
from pipeline.records import FrameReport, SafetyEvidence
from states.monitor import CameraMonitor

CAM = "cam"
TRIGGERS = ["fire", "smoke", "fall", "intrusion", "weapon", "blood"]
CALM_QUEUE = QueueState(depth=0, capacity=10)


def report(t: float, obs: tuple[str, ...], flags: tuple[str, ...] = (), conf: float = 0.9) -> FrameReport:
    return FrameReport(camera=CAM, frame_index=int(t * 10), timestamp=t, observations=obs, safety_flags=flags,
                       confidence=conf, backend="offline", model="test", prompt_version="v1", latency_ms=1.0)


def _pair() -> tuple[SlidingWindow, CameraMonitor, EscalationPolicy]:
    rule = FixedThresholds(Thresholds.from_config(EscalationConfig(safety_triggers=TRIGGERS, persistence_k=2, persistence_n=3)))
    window = SlidingWindow(CAM, 10.0, reader=EvidenceReader(TRIGGERS))
    monitor = CameraMonitor(CAM, StatesConfig(), safety_triggers=TRIGGERS, thresholds=rule)
    policy = EscalationPolicy(rule)
    return window, monitor, policy


def test_a_fire_named_only_in_the_observations_moves_the_monitor_and_the_policy_together() -> None:
    window, monitor, policy = _pair()
    states, decisions = [], []
    for t in (0.0, 0.5, 1.0):
        stats = window.add(report(t, ("a person walks in", "flames rising from the sofa")))
        monitor.update(stats)
        states.append(monitor.state)
        decisions.append(policy.evaluate(stats, CALM_QUEUE))
    assert states[0] == "suspicious", "the first frame naming flames is a safety trigger for the monitor too"
    assert states[1] == "alert" and decisions[1].escalate and decisions[1].reason == "safety:fire"
    # the same frame persisted for both: 2 of 3, the one rule
    assert not decisions[0].escalate


def test_a_negated_fire_is_nothing_for_either() -> None:
    window, monitor, policy = _pair()
    for t in (0.0, 0.5, 1.0, 1.5):
        stats = window.add(report(t, ("no fire or smoke visible", "a person walking")))
        monitor.update(stats)
        assert not policy.evaluate(stats, CALM_QUEUE).escalate
    assert monitor.state == "observing"
    assert stats.evidence is not None and stats.evidence.triggers == frozenset() and stats.evidence.activity == "person"


def test_each_report_is_read_once(monkeypatch) -> None:  # noqa: ANN001
    calls = []
    real = evidence_module.match_safety

    def counting(flags, observations, triggers):  # noqa: ANN001, ANN202
        calls.append(tuple(observations))
        return real(flags, observations, triggers)

    monkeypatch.setattr(evidence_module, "match_safety", counting)
    window, monitor, policy = _pair()
    for i, t in enumerate((0.0, 0.5, 1.0)):
        stats = window.add(report(t, (f"smoke number {i}",)))
        monitor.update(stats)
        policy.evaluate(stats, CALM_QUEUE)
    assert calls == [("smoke number 0",), ("smoke number 1",), ("smoke number 2",)]


def test_the_gate_hint_travels_with_the_evidence() -> None:
    reader = EvidenceReader(TRIGGERS)
    ev = reader.read(report(0.0, ("dark view",), ("tamper",)), 0.8, "tamper")
    assert ev.gate_hint == "tamper" and ev.triggers == frozenset({"tamper"})


def test_persistence_counts_k_of_the_last_n_and_per_flag_k() -> None:
    def ev(t: float, *triggers: str) -> SafetyEvidence:
        return SafetyEvidence(timestamp=t, triggers=frozenset(triggers), activity=None, confidence=0.9)

    base = Thresholds.from_config(EscalationConfig(safety_triggers=TRIGGERS, persistence_k=2, persistence_n=3))
    recent = (ev(0, "fire"), ev(1), ev(2), ev(3, "fire"))
    assert persisting(recent, base) == {}  # only one fire in the last 3
    assert persisting(recent + (ev(4, "fire"),), base) == {"fire": 2.0}
    from dataclasses import replace
    strict = replace(base, persistence_k_by_flag={"fire": 3})
    assert persisting(recent + (ev(4, "fire"),), strict) == {}


def test_activity_words_are_read_with_quiet_words() -> None:
    assert activity_kind(["a man walking past"]) == "person"
    assert activity_kind(["empty car park, no vehicle"]) is None
    assert activity_kind(["a dog running"]) == "motion"
