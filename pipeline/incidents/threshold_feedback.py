"""The feedback layer of the thresholds: per camera, per period and per flag, the smoothed (EWMA) rate
at which the teacher dismissed escalations and the rate at which audits showed a flag the student
missed.  Dismissals raise that flag's persistence k (low confidence: lower ``min_confidence``; flips:
raise ``flip_limit``) one bounded step at a time; audit misses lower the flag's k.  The rates are kept
across restarts by `pipeline.incidents.threshold_state`."""

from __future__ import annotations

import logging
from typing import Any, Iterable

from pipeline.config.adaptive import AdaptiveConfig
from pipeline.incidents.threshold_records import FlagFeedback
from pipeline.incidents.threshold_state import FeedbackTable
from pipeline.records import normalise_flag

log = logging.getLogger("edgewatch.thresholds")

#: Feedback keys that are not flags: the escalation reasons whose threshold is not a persistence k.
LOW_CONFIDENCE_KEY = "@low_confidence"
FLAG_FLIP_KEY = "@flag_flip"


class FeedbackRules:
    """One camera's feedback table and the rules that move its offsets."""

    def __init__(self, camera: str, table: FeedbackTable) -> None:
        self.camera = camera
        self.table = table
        self.pending_figures: dict[str, dict[str, Any]] = {}
        """The figures behind each offset moved since the thresholds were last composed, by threshold name."""

    def record(
        self,
        c: AdaptiveConfig,
        period: str,
        flags: Iterable[str],
        reason: str,
        kind: str,
        ts: float | None,
        teacher_flags: Iterable[str],
        triggers: frozenset[str],
    ) -> None:
        """Count one confirmed or dismissed verdict (see `ThresholdController.record_verdict`)."""
        escalated = {normalise_flag(f) for f in flags if str(f).strip()}
        table = self.table.setdefault(period, {})
        alpha = c.fp_alpha
        if reason == "audit":
            seen = {normalise_flag(f) for f in teacher_flags if str(f).strip()} & triggers
            missed = (seen - escalated) if kind == "confirmed" else set()
            keys = {k for k in table if not k.startswith("@")} | missed
            for key in sorted(keys):
                fb = table.setdefault(key, FlagFeedback())
                sample = 1.0 if key in missed else 0.0
                fb.miss_rate = sample if fb.audits == 0 else fb.miss_rate + alpha * (sample - fb.miss_rate)
                fb.audits += 1
                fb.since_change += 1
                fb.updated_at = ts
                self._adjust(c, period, key, fb)
            return
        if reason.startswith("safety"):
            keys = sorted(escalated & triggers)
            if not keys and ":" in reason:
                keys = [normalise_flag(reason.split(":", 1)[1])]
        elif reason == "low_confidence":
            keys = [LOW_CONFIDENCE_KEY]
        elif reason == "flag_flip":
            keys = [FLAG_FLIP_KEY]
        else:
            return  # a scene change is sent once per change: nothing to make stricter
        sample = 1.0 if kind == "dismissed" else 0.0
        for key in keys:
            fb = table.setdefault(key, FlagFeedback())
            fb.dismissal_rate = sample if fb.verdicts == 0 else fb.dismissal_rate + alpha * (sample - fb.dismissal_rate)
            fb.verdicts += 1
            fb.since_change += 1
            fb.updated_at = ts
            self._adjust(c, period, key, fb)

    def _adjust(self, c: AdaptiveConfig, period: str, key: str, fb: FlagFeedback) -> None:
        if fb.since_change < c.fp_min_samples:
            return
        before = fb.offset
        if key == LOW_CONFIDENCE_KEY:
            top, bottom = c.fp_max_confidence_steps, 0
        elif key == FLAG_FLIP_KEY:
            top, bottom = c.fp_max_flip_raise, 0
        else:
            top, bottom = c.fp_max_k_raise, -c.fp_max_k_lower
        # Misses first: a flag the student fails to raise costs more than a teacher call.
        if not key.startswith("@") and fb.audits >= c.fp_min_samples and fb.miss_rate >= c.fp_miss_above:
            if fb.offset > bottom:
                fb.offset -= 1
        elif fb.verdicts >= c.fp_min_samples and fb.dismissal_rate >= c.fp_raise_above and fb.offset < top:
            fb.offset += 1
        elif fb.offset > 0 and fb.verdicts >= c.fp_min_samples and fb.dismissal_rate <= c.fp_lower_below:
            fb.offset -= 1
        elif fb.offset < 0 and fb.audits >= c.fp_min_samples and fb.miss_rate < c.fp_miss_above / 2:
            fb.offset += 1
        if fb.offset != before:
            fb.since_change = 0
            name = {LOW_CONFIDENCE_KEY: "min_confidence", FLAG_FLIP_KEY: "flip_limit"}.get(key, f"persistence_k[{key}]")
            self.pending_figures[name] = {
                "period": period, "key": key, "offset": fb.offset, "previous_offset": before,
                "dismissal_rate": round(fb.dismissal_rate, 4), "verdicts": fb.verdicts,
                "miss_rate": round(fb.miss_rate, 4), "audits": fb.audits,
            }
            log.info("%s: feedback moved %s in period %s: offset %d -> %d", self.camera, key, period, before, fb.offset)

    def apply(self, c: AdaptiveConfig, period: str, values: dict[str, Any]) -> dict[str, int]:
        """Move ``values`` (one period's thresholds) by the period's feedback; the flags whose persistence k
        it moved away from the period's k, with their k."""
        table = self.table.get(period, {})
        if LOW_CONFIDENCE_KEY in table:
            steps = max(0, min(table[LOW_CONFIDENCE_KEY].offset, c.fp_max_confidence_steps))
            values["min_confidence"] = round(max(0.0, values["min_confidence"] - steps * c.fp_confidence_step), 4)
        if FLAG_FLIP_KEY in table:
            values["flip_limit"] = values["flip_limit"] + max(0, min(table[FLAG_FLIP_KEY].offset, c.fp_max_flip_raise))
        k, n = values["persistence_k"], values["persistence_n"]
        by_flag: dict[str, int] = {}
        for key, fb in table.items():
            if key.startswith("@") or fb.offset == 0:
                continue
            offset = max(-c.fp_max_k_lower, min(fb.offset, c.fp_max_k_raise))
            flag_k = max(1, min(n, k + offset))
            if flag_k != k:
                by_flag[key] = flag_k
        return by_flag
