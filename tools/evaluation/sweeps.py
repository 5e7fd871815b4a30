"""Cost–quality curves: each policy family over its own knob, and the points report.json carries.

``--sweep thresholds`` adds, to the policies as configured, ours over ``min_confidence``,
persistence, ``max_keyframes``, audit period, sample rate and lone-flag questions (``ask_blips``); fixed interval over its period;
confidence only over its threshold.  `cost_quality_points` gives one point per policy setting
and confidence setting (pooled over clips, averaged over seeds), teacher only among them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tools.evaluation.runs import Variant

SWEEPS = ("none", "thresholds", "models", "all")
SWEEP_MIN_CONFIDENCE = (0.5, 0.6, 0.8, 0.9)
SWEEP_PERSISTENCE = ((1, 3), (3, 4))
SWEEP_MAX_KEYFRAMES = (1, 6)
SWEEP_AUDIT_EVERY = (30, 480)
SWEEP_SAMPLE_FPS = (1.5, 1.0, 0.5, 0.25)
#: Alert on the first flagged frame (persistence 1 of 3) at lower sample rates: the cheap, early end of the curve.
SWEEP_FIRST_FLAG_FPS = (1.0, 0.75, 0.5, 0.25)
SWEEP_FIXED_INTERVAL_S = (1.0, 2.0, 5.0, 10.0, 20.0)
#: Confidence settings the simulated pair is run at by default (``--informativeness``).
INFORMATIVENESS = (0.0, 0.5)
SWEEP_STUDENT_ACCURACY = (0.55, 0.68, 0.8)
SWEEP_INFORMATIVENESS = (0.0, 0.5, 1.0)


def variants_for(policies: Sequence[str], sweep: str) -> list[Variant]:
    out = [Variant(p, p) for p in policies]
    if sweep in ("thresholds", "all"):
        if "ours" in policies:
            out += [Variant("ours", f"ours@min_conf={c:g}", min_confidence=c) for c in SWEEP_MIN_CONFIDENCE]
            out += [Variant("ours", f"ours@persistence={k}/{n}",
                            overrides={"escalation": {"persistence_k": k, "persistence_n": n}}) for k, n in SWEEP_PERSISTENCE]
            out += [Variant("ours", f"ours@max_keyframes={m}", overrides={"teacher": {"max_keyframes": m}})
                    for m in SWEEP_MAX_KEYFRAMES]
            out += [Variant("ours", f"ours@audit_every={a}", overrides={"escalation": {"audit_every": a}})
                    for a in SWEEP_AUDIT_EVERY]
            # The cheap end of the curve: lower sample rates with one keyframe per question, alerting
            # at k of n as configured or on the first flagged frame.
            out += [Variant("ours", f"ours@sample_fps={f:g},max_keyframes=1",
                            overrides={"capture": {"sample_fps": f}, "teacher": {"max_keyframes": 1}}) for f in SWEEP_SAMPLE_FPS]
            out += [Variant("ours", f"ours@persistence=1/3,sample_fps={f:g},max_keyframes=1",
                            overrides={"escalation": {"persistence_k": 1, "persistence_n": 3}, "capture": {"sample_fps": f},
                                       "teacher": {"max_keyframes": 1}})
                    for f in SWEEP_FIRST_FLAG_FPS]
            # A lone safety flag asked too (escalation.ask_blips): earlier alerts and the one-frame falls, for a teacher call per phantom.
            out += [Variant("ours", "ours@ask_blips", overrides={"escalation": {"ask_blips": True}}),
                    Variant("ours", "ours@ask_blips,max_keyframes=1",
                            overrides={"escalation": {"ask_blips": True}, "teacher": {"max_keyframes": 1}})]
        if "confidence_only" in policies:
            out += [Variant("confidence_only", f"confidence_only@min_conf={c:g}", min_confidence=c) for c in SWEEP_MIN_CONFIDENCE]
        if "fixed_interval" in policies:
            out += [Variant("fixed_interval", f"fixed_interval@{n:g}s", fixed_interval_s=n) for n in SWEEP_FIXED_INTERVAL_S]
    return out


def cost_quality_points(blocks: Sequence[Any]) -> list[dict[str, Any]]:
    """One point per policy setting and confidence setting: pooled over clips, averaged over seeds."""
    points = []
    for block in blocks:
        inf = block.informativeness if block.informativeness is not None else None
        for name, v in block.aggregates.items():
            m = lambda k: (v.get(k) or {}).get("mean")  # noqa: E731
            points.append({"policy": v["policy"], "setting": v["setting"], "informativeness": inf,
                           "model_seconds": m("model_seconds"), "event_f1": m("event_f1"),
                           "safety_recall": m("safety_recall"), "time_to_alert_s": m("time_to_alert_s")})
    return points


__all__ = ["INFORMATIVENESS", "SWEEPS", "SWEEP_FIRST_FLAG_FPS", "SWEEP_FIXED_INTERVAL_S", "SWEEP_INFORMATIVENESS", "SWEEP_MAX_KEYFRAMES",
           "SWEEP_MIN_CONFIDENCE", "SWEEP_STUDENT_ACCURACY", "cost_quality_points", "variants_for"]
