"""Routing on calibrated confidence: the selection-aware fit (the unflagged group only from
audits) and the policy's calibrated scale (safety evidence weighed by the probability that a
flag is right; low confidence judged on unflagged frames).  Raw behaviour is unchanged."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.learning.calibration_map import CalibrationMap, Example, Learner, examples_from, fit_calibration, unbiased_examples
from pipeline.incidents.escalation import EscalationPolicy, FixedThresholds
from pipeline.incidents.evidence import FULL_EVIDENCE_PROBABILITY, frame_weight
from pipeline.records import VerdictKind
from test_agreement_store import escalation, open_store, scene, verdict
from test_escalation import escalated_at, replay, report, thresholds


# --------------------------------------------------------------------------------------
# The policy on the calibrated scale
# --------------------------------------------------------------------------------------


def test_frame_evidence_is_one_on_the_raw_scale_and_proportional_below_the_full_mark() -> None:
    assert frame_weight(0.1, calibrated=False) == 1.0
    assert frame_weight(FULL_EVIDENCE_PROBABILITY, calibrated=True) == 1.0
    assert frame_weight(0.95, calibrated=True) == 1.0
    assert frame_weight(FULL_EVIDENCE_PROBABILITY / 2, calibrated=True) == pytest.approx(0.5)
    assert frame_weight(-0.2, calibrated=True) == 0.0


def test_doubted_flag_in_k_of_n_frames_escalates_raw_but_not_calibrated() -> None:
    # Two of three frames flag fire, but the map gives each only p = 0.3 of being right.
    reports = [report(0), report(1, ["fire"], conf=0.3), report(2), report(3, ["fire"], conf=0.3), report(4)]
    raw = replay(EscalationPolicy(thresholds(flip_limit=100)), reports)
    calibrated = replay(EscalationPolicy(thresholds(flip_limit=100), confidence_calibrated=True), reports)
    assert escalated_at(raw) == [3] and raw[3].reason == "safety:fire"
    assert escalated_at(calibrated) == []
    assert calibrated[3].detail["safety_evidence"] == {"fire": pytest.approx(1.2)}


def test_confident_flags_escalate_at_the_same_frame_as_raw() -> None:
    reports = [report(0), report(1, ["fall"], conf=0.8), report(2), report(3, ["fall"], conf=FULL_EVIDENCE_PROBABILITY)]
    raw = replay(EscalationPolicy(thresholds()), reports)
    calibrated = replay(EscalationPolicy(thresholds(), confidence_calibrated=True), reports)
    assert escalated_at(raw) == escalated_at(calibrated) == [3]
    assert calibrated[3].reason == raw[3].reason == "safety:fall"


def test_doubted_flag_escalates_once_evidence_accumulates() -> None:
    # p = 0.35 counts 0.7 of a frame: two frames are not enough, three are (2.1 >= k = 2).
    reports = [report(0), report(1, ["smoke"], conf=0.35), report(2, ["smoke"], conf=0.35), report(3, ["smoke"], conf=0.35)]
    decisions = replay(EscalationPolicy(thresholds(), confidence_calibrated=True), reports)
    assert escalated_at(decisions) == [3] and decisions[3].reason == "safety:smoke"


def test_low_calibrated_probability_on_flags_is_not_low_confidence() -> None:
    # A sustained run of flagged frames the map doubts: raw, the low mean escalates (as low
    # confidence or safety); calibrated, it is a phantom that never gathers evidence: no call.
    reports = [report(t, ["fire"] if t % 2 else [], conf=0.2 if t % 2 else 0.9) for t in range(10)]
    raw = replay(EscalationPolicy(thresholds(min_confidence=0.72, flip_limit=100)), reports)
    calibrated = replay(EscalationPolicy(thresholds(min_confidence=0.72, flip_limit=100), confidence_calibrated=True), reports)
    assert escalated_at(raw) != []
    assert escalated_at(calibrated) == []


def test_low_confidence_on_unflagged_frames_still_escalates_calibrated() -> None:
    # Calm reports the map says are probably wrong: the student is likely missing something.
    reports = [report(t, conf=0.3) for t in range(8)]
    decisions = replay(EscalationPolicy(thresholds(), confidence_calibrated=True), reports)
    assert escalated_at(decisions) and decisions[escalated_at(decisions)[0]].reason == "low_confidence"
    # ... but not when the unflagged frames are confident and only the flagged ones are low.
    mixed = [report(t, ["fire"] if t in (2, 6) else [], conf=0.1 if t in (2, 6) else 0.9) for t in range(8)]
    assert all(d.reason != "low_confidence" for d in replay(EscalationPolicy(thresholds(), confidence_calibrated=True), mixed))


def test_the_scale_survives_adaptive_threshold_replacement_and_is_logged() -> None:
    policy = EscalationPolicy(thresholds(), confidence_calibrated=True)
    assert policy.thresholds_in_force()["confidence"] == "calibrated"
    policy.follow(FixedThresholds(replace(thresholds(), min_confidence=0.6)))  # the owner's values change
    assert policy.thresholds_in_force()["confidence"] == "calibrated"
    assert policy.thresholds_in_force()["min_confidence"] == 0.6
    policy.confidence_calibrated = False
    assert "confidence" not in policy.thresholds_in_force()
    # Thresholds that say calibrated themselves stay calibrated.
    assert EscalationPolicy(thresholds(calibrated=True)).thresholds_in_force()["confidence"] == "calibrated"


# --------------------------------------------------------------------------------------
# The selection-aware fit
# --------------------------------------------------------------------------------------


def _examples(n: int, seed: int, flags: frozenset[str], agree_rate: float, audit: bool) -> list[Example]:
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.0, 1.0, n)
    hit = rng.uniform(0.0, 1.0, n) < agree_rate
    return [Example(float(c), flags, bool(h), "cam", i, audit) for i, (c, h) in enumerate(zip(conf, hit))]


def test_unflagged_group_is_fitted_on_audits_only() -> None:
    # Unflagged reports escalated beside events are mostly wrong; audits of calm scenes mostly right.
    beside_events = _examples(400, 1, frozenset(), 0.2, audit=False)
    fire = _examples(300, 2, frozenset({"fire"}), 0.6, audit=False)
    biased = fit_calibration(beside_events + fire, 100)
    fair = fit_calibration(beside_events + fire, 100, selection_aware=True)
    assert biased.apply(0.8, []) < 0.4  # the old fit: a calm report is "probably wrong"
    assert "none" not in fair.by_flag and fair.unflagged_raw
    assert fair.apply(0.8, []) == 0.8  # no audits: unflagged reports stay raw
    assert fair.apply(0.8, ["fire"]) == pytest.approx(0.6, abs=0.12)
    assert fair.examples == 300 and unbiased_examples(beside_events + fire) == fire
    audits = _examples(200, 3, frozenset(), 0.95, audit=True)
    with_audits = fit_calibration(beside_events + fire + audits, 100, selection_aware=True)
    assert with_audits.apply(0.8, []) == pytest.approx(0.95, abs=0.06)
    assert CalibrationMap.from_json(with_audits.to_json()) == with_audits
    assert with_audits.version != fit_calibration(beside_events + fire + audits, 100).version


def test_selection_aware_fit_needs_enough_unbiased_examples() -> None:
    beside_events = _examples(400, 4, frozenset(), 0.2, audit=False)
    fire = _examples(30, 5, frozenset({"fire"}), 0.6, audit=False)
    assert fit_calibration(beside_events + fire, 100, selection_aware=True).is_identity
    assert not fit_calibration(beside_events + fire, 100).is_identity


def test_examples_know_audits_and_the_learner_fits_selection_aware(tmp_path: Path) -> None:
    store = open_store(tmp_path, calibration_min_examples=30, calibrate=True)
    for i in range(20):  # unflagged reports in escalations caused by something else: the teacher saw fire
        esc = escalation("cam0", i, scene(100 + i), flags=(), confidence=0.9, reason="flag_flip")
        assert store.add(esc, verdict(esc, VerdictKind.CONFIRMED, ("fire",)), skill_version="s", thresholds={}).stored
    learner = Learner(store, store.cfg)
    assert not learner.applying and learner.map.is_identity  # 60 biased examples are not 30 unbiased ones
    calm = escalation("cam0", 99, scene(99), confidence=0.9, reason="audit").timeline[-1]
    assert learner.calibrate(calm) is calm
    for i in range(20, 32):  # audits of calm scenes: the student (no flag) is right
        esc = escalation("cam0", i, scene(100 + i), flags=(), confidence=0.9, reason="audit")
        assert store.add(esc, verdict(esc, VerdictKind.CONFIRMED), skill_version="s", thresholds={}).stored
    ex = examples_from(store.records())
    assert sum(e.audit for e in ex) == 36 and sum(not e.audit for e in ex) == 60
    learner.refit()
    assert learner.applying and "none" in learner.map.by_flag
    assert learner.calibrate(calm).confidence > 0.9  # audits say calm reports are right, not the biased 0
    off = Learner(store, store.cfg.model_copy(update={"calibrate": False}))
    assert not off.applying
    learner.close()


def test_a_learner_that_is_not_mapping_leaves_a_calibrated_policy_calibrated(tmp_path: Path) -> None:
    """The runner switches the policy to the calibrated scale when its learner maps reports, and
    never back: a policy built for calibrated reports (the evaluation harness) stays on that scale."""
    import json

    from helpers_video import make_clip
    from pipeline.clock import ManualClock
    from pipeline.config.settings import Settings
    from pipeline.incidents.escalation import Thresholds
    from pipeline.runner import Runner
    from pipeline.analyzers.backends import select_backends

    video = make_clip(tmp_path / "clip.avi", 20, 10.0)
    settings = Settings.model_validate({"student": {"backend": "offline"}, "teacher": {"backend": "offline"},
                                        "output": {"out_dir": str(tmp_path / "out")}})
    assert settings.learning.enabled and not settings.learning.calibrate  # a learner runs, and it is not mapping
    clock = ManualClock()
    runner = Runner(settings, select_backends(settings, clock), clock=clock,
                    policy_factory=lambda s, cam: EscalationPolicy(Thresholds.from_config(s.escalation), confidence_calibrated=True))
    runner.run(str(video))
    lines = [json.loads(x) for x in (tmp_path / "out" / "decisions.jsonl").read_text().splitlines()]
    scales = [d["thresholds"].get("confidence") for d in lines if d.get("kind") == "decision"]
    assert scales and all(scale == "calibrated" for scale in scales)
