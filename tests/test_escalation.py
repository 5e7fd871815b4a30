"""The escalation policy on replayed report sequences, and safety-word matching."""

from __future__ import annotations

import itertools
from typing import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config.escalation import EscalationConfig
from pipeline.incidents.verdicts import Coverage
from pipeline.incidents.evidence import EvidenceReader
from pipeline.incidents.escalation import EscalationPolicy, PolicyMemory, QueueState, Thresholds, backpressure_level, decide, suppress
from pipeline.incidents.evidence import match_safety
from pipeline.records import FrameReport, Priority, WindowStats

TRIGGERS = ("fire", "smoke", "fall", "weapon", "intrusion", "blood")
CALM_QUEUE = QueueState(depth=0, capacity=10)


# --------------------------------------------------------------------------------------
# Builders: reports and the window aggregates the sliding window would give
# --------------------------------------------------------------------------------------


def report(t: float, flags: Sequence[str] = (), obs: Sequence[str] = (), conf: float = 0.9, camera: str = "cam") -> FrameReport:
    return FrameReport(camera=camera, frame_index=int(t * 10), timestamp=t, observations=tuple(obs),
                       safety_flags=tuple(flags), confidence=conf, backend="test", model="test",
                       prompt_version="t", latency_ms=1.0)


def window_stats(reports: Sequence[FrameReport], window_s: float = 10.0, scene_change: bool = False) -> WindowStats:
    """Aggregates over the reports within ``window_s`` of the newest (what SlidingWindow gives)."""
    newest = reports[-1]
    win = [r for r in reports if newest.timestamp - r.timestamp <= window_s]
    sets = [r.flags for r in win]
    all_flags = set().union(*sets)
    flips = {f: sum((f in a) != (f in b) for a, b in zip(sets, sets[1:])) for f in all_flags}
    streak = {}
    for f in newest.flags:
        n = 0
        for s in reversed(sets):
            if f not in s:
                break
            n += 1
        streak[f] = n
    confs = [r.confidence for r in win]
    reader = EvidenceReader(TRIGGERS)  # what SlidingWindow does as each report enters
    evidence = tuple(reader.read(r, r.confidence, "tamper" if scene_change and r is newest else None) for r in win)
    return WindowStats(
        camera=newest.camera, timestamp=newest.timestamp, window_s=window_s, n_reports=len(win),
        flag_streak=streak, flips=flips, confidence_mean=sum(confs) / len(confs), confidence_last=confs[-1],
        active_flags=newest.flags, observations=newest.observations, scene_change=scene_change,
        evidence=evidence[-1], recent_evidence=evidence,
    )


def thresholds(**over: object) -> Thresholds:
    base = dict(min_confidence=0.72, safety_triggers=frozenset(TRIGGERS), persistence_k=2, persistence_n=3,
                audit_every=1000, flip_limit=4)
    base.update(over)
    return Thresholds(**base)  # type: ignore[arg-type]


def replay(policy: EscalationPolicy, reports: Sequence[FrameReport], queue: QueueState = CALM_QUEUE,
           scene_at: frozenset[int] = frozenset(), window_s: float = 10.0):
    out = []
    for i in range(len(reports)):
        stats = window_stats(reports[: i + 1], window_s, scene_change=i in scene_at)
        out.append(policy.evaluate(stats, queue))
    return out


def escalated_at(decisions) -> list[int]:
    return [i for i, d in enumerate(decisions) if d.escalate]


# --------------------------------------------------------------------------------------
# Safety
# --------------------------------------------------------------------------------------


def test_calm_sequence_does_not_escalate() -> None:
    decisions = replay(EscalationPolicy(thresholds()), [report(t) for t in range(8)])
    assert escalated_at(decisions) == []
    assert {d.reason for d in decisions} == {"calm"}


def test_one_frame_safety_blip_does_not_escalate() -> None:
    reports = [report(0), report(1, ["fire"]), report(2), report(3), report(4)]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    assert escalated_at(decisions) == []
    assert decisions[1].reason == "blip"


def test_safety_in_k_of_n_frames_escalates_with_safety_priority() -> None:
    reports = [report(0), report(1, ["fire"]), report(2), report(3, ["fire"])]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    assert escalated_at(decisions) == [3]
    d = decisions[3]
    assert d.reason == "safety:fire" and d.priority == Priority.SAFETY and d.flags == {"fire"}
    assert d.detail["safety_counts"] == {"fire": 2}


def test_safety_words_in_observations_count_too() -> None:
    reports = [report(0, obs=["flames rising from a bin"]), report(1, obs=["person lying on the floor", "smoke"]),
               report(2, obs=["thick smoke near ceiling"])]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    assert escalated_at(decisions) == [2]
    assert decisions[2].flags == {"smoke"}


def test_policy_started_mid_stream_uses_the_window_flags() -> None:
    stats = window_stats([report(0, ["fire"]), report(1, ["fire"])])
    decision = EscalationPolicy(thresholds()).evaluate(stats, CALM_QUEUE)
    assert decision.escalate and decision.reason == "safety:fire"


def test_same_pattern_cools_off_but_a_new_flag_escalates_again() -> None:
    reports = [report(t, ["fire"]) for t in range(6)] + [report(t, ["fire", "smoke"]) for t in range(6, 9)]
    reports += [report(t, ["fire", "smoke"]) for t in range(9, 22)]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    # fire at 1, fire+smoke when smoke persists (frame 7), again only after the 10 s cool-off.
    assert escalated_at(decisions) == [1, 7, 17]
    assert decisions[7].flags == {"fire", "smoke"}
    assert decisions[3].reason == "cooloff"


def test_recurrence_after_the_incident_cleared_escalates_at_once() -> None:
    reports = [report(0, ["fall"]), report(1, ["fall"]), report(2), report(3), report(4), report(5, ["fall"]),
               report(6, ["fall"])]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    assert escalated_at(decisions) == [1, 6]


def test_a_dismissal_covers_its_frames_and_later_evidence_is_asked_again_at_the_reask_rate() -> None:
    policy = EscalationPolicy(thresholds(reask_after_s=4.0))
    reports = [report(t, ["fire"]) for t in range(14)]
    decisions = []
    for i, rep in enumerate(reports):
        decisions.append(policy.evaluate(window_stats(reports[: i + 1]), CALM_QUEUE))
        if decisions[-1].escalate:
            # The teacher dismisses every sequence it sees, up to the newest frame.
            policy.cover(Coverage(frozenset({"fire"}), until=rep.timestamp, strength=0.9))
    # Frames after each dismissal are a new question, asked again no sooner than reask_after_s
    # after the last question.
    assert escalated_at(decisions) == [1, 5, 9, 13]
    assert {d.reason for d in decisions if not d.escalate} <= {"calm", "blip", "reask_wait"}
    assert all(d.reason != "suppressed" for d in decisions)


def test_a_dismissal_does_not_cover_stronger_evidence_than_the_teacher_saw() -> None:
    def after_dismissal(strength: float) -> bool:
        policy = EscalationPolicy(thresholds(persistence_k=1, reask_after_s=0.0))
        reports = [report(0, ["fire"], conf=0.6), report(1, ["fire"], conf=0.95)]
        policy.evaluate(window_stats(reports[:1]), CALM_QUEUE)
        policy.cover(Coverage(frozenset({"fire"}), until=1.0, strength=strength))
        return policy.evaluate(window_stats(reports), CALM_QUEUE).escalate

    assert after_dismissal(strength=0.95) is False  # the teacher saw the 0.95 frame: answered
    assert after_dismissal(strength=0.6) is True  # it saw only the weak frame: the strong one is a new question


def test_suppress_never_holds_back_safety() -> None:
    policy = EscalationPolicy(thresholds())
    policy.suppress(["fire"], until=50.0, reason="safety:fire")
    fire = [report(t, ["fire"]) for t in range(3)]
    decisions = [policy.evaluate(window_stats(fire[: i + 1]), CALM_QUEUE) for i in range(3)]
    assert [d.reason for d in decisions][1] == "safety:fire"


def test_a_dismissed_audit_suppresses_nothing() -> None:
    policy = EscalationPolicy(thresholds())
    policy.suppress([], until=50.0, reason="audit")
    assert dict(policy.memory.suppressed) == {}
    policy.suppress([], until=50.0, reason="low_confidence")
    assert dict(policy.memory.suppressed) == {frozenset(): 50.0}


def test_suppress_helper_is_pure() -> None:
    before = PolicyMemory()
    after = suppress(before, ["Fire"], 12.0)
    assert dict(before.suppressed) == {}
    assert dict(after.suppressed) == {frozenset({"fire"}): 12.0}


# --------------------------------------------------------------------------------------
# Low confidence, flips, scene changes, audits
# --------------------------------------------------------------------------------------


def test_one_low_confidence_frame_does_not_escalate() -> None:
    reports = [report(t, conf=0.9) for t in range(5)] + [report(5, conf=0.1)] + [report(t, conf=0.9) for t in range(6, 9)]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    assert escalated_at(decisions) == []
    assert decisions[5].reason == "blip"


def test_sustained_low_confidence_escalates_once_per_cooloff() -> None:
    reports = [report(t, conf=0.3) for t in range(14)]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    # three low reports are needed, then the cool-off (the 10 s window) holds it.
    assert escalated_at(decisions) == [2, 12]
    assert decisions[2].reason == "low_confidence" and decisions[2].priority == Priority.LOW_CONFIDENCE


def test_low_mean_needs_half_the_window_below() -> None:
    # mean below the bar because of two very low frames, but only 2 of 8 are below it.
    reports = [report(t, conf=0.75) for t in range(6)] + [report(6, conf=0.0), report(7, conf=0.0)]
    decisions = replay(EscalationPolicy(thresholds()), reports)
    assert decisions[-1].detail["confidence_mean"] < 0.72
    assert escalated_at(decisions) == []


def test_flag_flips_escalate_at_the_limit() -> None:
    reports = [report(t, ["loitering"] if t % 2 else []) for t in range(8)]
    decisions = replay(EscalationPolicy(thresholds(flip_limit=4)), reports)
    assert escalated_at(decisions)[0] == 4
    assert decisions[4].reason == "flag_flip" and decisions[4].flags == {"loitering"}


def test_scene_change_escalates_once_per_change() -> None:
    reports = [report(t) for t in range(20)]
    decisions = replay(EscalationPolicy(thresholds()), reports, scene_at=frozenset({3, 4, 5, 15}))
    assert escalated_at(decisions) == [3, 15]
    assert decisions[3].reason == "scene_change" and decisions[3].priority == Priority.SCENE_CHANGE


def test_audit_cadence_when_calm() -> None:
    decisions = replay(EscalationPolicy(thresholds(audit_every=5)), [report(t) for t in range(20)])
    assert escalated_at(decisions) == [4, 9, 14, 19]
    assert {decisions[i].reason for i in (4, 9, 14, 19)} == {"audit"}


def test_same_stats_twice_is_one_analysed_frame() -> None:
    policy = EscalationPolicy(thresholds(audit_every=2))
    stats = window_stats([report(0)])
    assert not policy.evaluate(stats, CALM_QUEUE).escalate
    assert not policy.evaluate(stats, CALM_QUEUE).escalate
    assert policy.evaluate(window_stats([report(0), report(1)]), CALM_QUEUE).reason == "audit"


# --------------------------------------------------------------------------------------
# Ranking (decide is pure: memory is built directly)
# --------------------------------------------------------------------------------------

SIGNALS = ("safety", "low_confidence", "flag_flip", "scene_change", "audit")


def _signals_stats(present: set[str]) -> tuple[WindowStats, PolicyMemory]:
    flags = ["fire"] if "safety" in present else []
    toggled = ["loitering"] if "flag_flip" in present else []
    conf = 0.2 if "low_confidence" in present else 0.9
    reports = [report(t, flags + (toggled if t % 2 else []), conf=conf) for t in range(6)]
    stats = window_stats(reports, scene_change="scene_change" in present)
    memory = PolicyMemory(
        analysed_since_audit=999 if "audit" in present else 0,
        last_timestamp=reports[-2].timestamp,
    )
    return stats, memory


@pytest.mark.parametrize("present", [set(c) for n in range(1, 6) for c in itertools.combinations(SIGNALS, n)],
                         ids=lambda p: "+".join(sorted(p)))
def test_strongest_signal_wins(present: set[str]) -> None:
    stats, memory = _signals_stats(present)
    decision, _ = decide(stats, thresholds(audit_every=1000, flip_limit=4), CALM_QUEUE, memory)
    expected = next(s for s in SIGNALS if s in present)
    assert decision.escalate
    assert decision.reason == ("safety:fire" if expected == "safety" else expected)
    assert decision.priority == {"safety": Priority.SAFETY, "low_confidence": Priority.LOW_CONFIDENCE,
                                 "flag_flip": Priority.FLAG_FLIP, "scene_change": Priority.SCENE_CHANGE,
                                 "audit": Priority.AUDIT}[expected]


# --------------------------------------------------------------------------------------
# Backpressure
# --------------------------------------------------------------------------------------


def test_backpressure_levels() -> None:
    assert backpressure_level(QueueState(0, 10)) == 0
    assert backpressure_level(QueueState(8, 10)) == 1
    assert backpressure_level(QueueState(0, 10, recent_sheds=1)) == 1
    assert backpressure_level(QueueState(9, 10)) == 2
    assert backpressure_level(QueueState(10, 10, recent_sheds=2)) == 3
    assert backpressure_level(QueueState(0, 10), bar=3) == 3


@pytest.mark.parametrize(
    ("queue", "bar", "deferred"),
    [
        (QueueState(8, 10), 0, {"audit"}),
        (QueueState(0, 10, recent_sheds=3), 0, {"audit"}),
        (QueueState(9, 10), 0, {"audit", "flag_flip", "scene_change"}),
        (QueueState(10, 10, recent_sheds=1), 0, {"audit", "flag_flip", "scene_change", "low_confidence"}),
        (QueueState(0, 10), 3, {"audit", "flag_flip", "scene_change", "low_confidence"}),
    ],
)
def test_backpressure_defers_weak_signals_first_and_never_safety(queue: QueueState, bar: int, deferred: set[str]) -> None:
    for signal in SIGNALS:
        stats, memory = _signals_stats({signal})
        decision, new_memory = decide(stats, thresholds(bar=bar), queue, memory)
        if signal in deferred:
            assert not decision.escalate and decision.reason == "deferred_backpressure", signal
            assert decision.detail["signal"] == signal
        else:
            assert decision.escalate, signal


def test_deferred_audit_stays_due_and_fires_when_pressure_drops() -> None:
    policy = EscalationPolicy(thresholds(audit_every=3))
    busy = QueueState(9, 10)
    reports = [report(t) for t in range(6)]
    decisions = replay(policy, reports[:5], queue=busy)
    assert escalated_at(decisions) == []
    assert decisions[2].reason == "deferred_backpressure"
    assert policy.evaluate(window_stats(reports), CALM_QUEUE).reason == "audit"
    assert policy.memory.analysed_since_audit == 0


def test_thresholds_from_config_and_bounds() -> None:
    th = Thresholds.from_config(EscalationConfig(safety_triggers=["Fire", "Person Fall"], audit_every=7))
    assert th.safety_triggers == {"fire", "person_fall", "tamper"} and th.audit_every == 7 and th.bar == 0  # tamper always
    with pytest.raises(ValueError, match="bar"):
        thresholds(bar=9)
    with pytest.raises(ValueError, match="persistence_k"):
        thresholds(persistence_k=4, persistence_n=3)


# --------------------------------------------------------------------------------------
# Safety words
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fire", {"fire"}),
        ("flames coming from a pan", {"fire"}),
        ("the shed is ablaze", {"fire"}),
        ("building on fire", {"fire"}),
        ("fireplace in the corner", set()),
        ("fire exit sign above the door", set()),
        ("fire extinguisher on the wall", set()),
        ("no fire", set()),
        ("not on fire", set()),
        ("without visible fire", set()),
        ("no fire but smoke rising", {"smoke"}),
        ("smoky room", {"smoke"}),
        ("smoke detector on ceiling", set()),
        ("person fell near stairs", {"fall"}),
        ("woman lying on the floor", {"fall"}),
        ("man collapsed", {"fall"}),
        ("waterfall poster", set()),
        ("man holding a pistol", {"weapon"}),
        ("knife on the counter", {"weapon"}),
        ("glue gun on the desk", set()),
        ("intruder climbing the fence", {"intrusion"}),
        ("break-in at the back door", {"intrusion"}),
        ("trespassing in the yard", {"intrusion"}),
        ("bleeding hand", {"blood"}),
        ("blood pressure monitor", set()),
        ("Fire; person fallen", {"fire", "fall"}),
        ("isn't burning", set()),
    ],
)
def test_safety_word_table(text: str, expected: set[str]) -> None:
    assert match_safety([], [text], TRIGGERS) == expected


def test_flags_are_matched_as_words_and_only_configured_triggers_count() -> None:
    assert match_safety(["person_fall", "Fire"], [], TRIGGERS) == {"fall", "fire"}
    assert match_safety(["fire"], [], ["smoke"]) == set()
    assert match_safety(["forklift_near_person"], [], ["forklift"]) == {"forklift"}
    assert match_safety(["forklifts"], [], ["forklift"]) == {"forklift"}


HARMLESS_WORDS = ["person", "walking", "left", "car", "parked", "door", "open", "shelf", "box", "light",
                  "dog", "bicycle", "table", "chair", "window", "the", "a", "near", "red", "fireplace", "exit"]
SAFETY_WORDS = {"fire": "flames", "smoke": "smoke", "fall": "fallen", "weapon": "rifle", "intrusion": "intruder",
                "blood": "bleeding"}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(HARMLESS_WORDS), max_size=12))
def test_harmless_words_never_match(words: list[str]) -> None:
    assert match_safety([], [" ".join(words)], TRIGGERS) == set()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(HARMLESS_WORDS[:15]), max_size=6), st.sampled_from(sorted(SAFETY_WORDS)),
       st.lists(st.sampled_from(HARMLESS_WORDS[:15]), max_size=6), st.sampled_from(["no", "not", "without"]))
def test_a_safety_word_matches_unless_negated(before: list[str], trigger: str, after: list[str], negator: str) -> None:
    word = SAFETY_WORDS[trigger]
    plain = " ".join([*before, word, *after])
    negated = " ".join([*before, negator, word, *after])
    assert match_safety([], [plain], TRIGGERS) == {trigger}
    assert match_safety([], [negated], TRIGGERS) == set()


def test_an_alert_no_teacher_has_seen_is_asked_about_even_when_the_policy_saw_no_persistence() -> None:
    # The monitor can alert on evidence the policy never weighs (a flag carried over gate-skipped
    # frames, a tamper the gate backs): with review_alerts the policy asks about it.
    stats = window_stats([report(0), report(1, ["fall"])])
    assert not EscalationPolicy(thresholds()).evaluate(stats, CALM_QUEUE).escalate
    asked = EscalationPolicy(thresholds()).evaluate(stats, CALM_QUEUE, unreviewed=frozenset({"fall"}))
    assert asked.escalate and asked.reason == "safety:fall"
    off = EscalationPolicy(thresholds(review_alerts=False)).evaluate(stats, CALM_QUEUE, unreviewed=frozenset({"fall"}))
    assert not off.escalate


def test_one_frame_of_a_dismissed_type_after_what_the_teacher_saw_is_asked_before_it_persists_again() -> None:
    policy = EscalationPolicy(thresholds(reask_after_s=1.0))
    reports = [report(0, ["fall"]), report(1, ["fall"]), report(2), report(2.5, ["fall"]), report(3)]
    decisions = []
    for i, rep in enumerate(reports):
        decisions.append(policy.evaluate(window_stats(reports[: i + 1]), CALM_QUEUE))
        if decisions[-1].escalate:
            policy.cover(Coverage(frozenset({"fall"}), until=rep.timestamp, strength=0.9))
    # Dismissed at t=1; the student insists once at t=2.5 (1 of the last 3: no persistence) and is asked again.
    assert escalated_at(decisions) == [1, 3] and decisions[3].reason == "safety:fall"
    # Never dismissed, one frame is a blip.
    assert not EscalationPolicy(thresholds()).evaluate(window_stats(reports[2:4]), CALM_QUEUE).escalate


def test_a_lone_safety_flag_is_asked_below_safety_priority_once_per_onset_when_ask_blips() -> None:
    reports = [report(0), report(1, ["fall"]), report(1.5), report(2), report(2.5, ["fall"]), report(3), report(3.5),
               report(4), report(5, ["fall"]), report(5.5)]
    # Off (the default): a flag that never persists is never asked.
    assert escalated_at(replay(EscalationPolicy(thresholds(flip_limit=1000)), reports)) == []
    decisions = replay(EscalationPolicy(thresholds(ask_blips=True, flip_limit=1000)), reports)
    # On: a lone flag is asked at once, below safety priority; back within rearm_after_s (2.5 s) it is the
    # same pattern in its cool-off; back after a real absence (5 s) it is a new onset, asked again.
    assert escalated_at(decisions) == [1, 8]
    asked = decisions[1]
    assert asked.reason == "blip:fall" and asked.priority == Priority.LOW_CONFIDENCE and asked.flags == {"fall"}
    assert decisions[4].reason == "cooloff"
    # A type the teacher confirmed is not asked again as a blip while its evidence goes on (a short
    # cool-off here, so only the confirmation holds the 2.5 s flag back).
    def asked_again(confirm: bool) -> bool:
        policy = EscalationPolicy(thresholds(ask_blips=True, flip_limit=1000, cooloff_s=0.1))
        policy.evaluate(window_stats(reports[:2]), CALM_QUEUE)
        if confirm:
            policy.confirm(frozenset({"fall"}))
        return any(policy.evaluate(window_stats(reports[: i + 1]), CALM_QUEUE).escalate for i in range(2, 6))

    assert asked_again(confirm=False) and not asked_again(confirm=True)
