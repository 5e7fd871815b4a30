"""What the thresholds' owner says: the values in force for a camera (`InForce`), a change of one of them
(`ThresholdChange`, written to the decision log), and the smoothed teacher feedback on one flag (`FlagFeedback`).
"""

from __future__ import annotations
from dataclasses import dataclass, field
from typing import Any, Mapping
from pipeline.incidents.escalation import Thresholds


@dataclass(frozen=True, slots=True)
class InForce:
    """What is in force for one camera from ``since`` (source seconds) on."""

    camera: str
    period: str
    period_reason: str
    """Why this period: 'clock', 'brightness', 'no profile matches' or 'adaptation disabled'."""
    thresholds: Thresholds
    """Give this to the policy (it includes the load ``bar``)."""
    persistence_k_by_flag: Mapping[str, int]
    """Flags whose persistence k feedback moved away from ``thresholds.persistence_k``."""
    gate_block_min_change: float
    sample_fps: float
    since: float
    """Source time from which these exact values are in force."""
    local_time: str | None = None
    brightness: float | None = None
    """Smoothed mean luma the period was chosen with (None when not measured)."""

    def values(self) -> dict[str, Any]:
        """Flat name → value, the names `ThresholdChange` uses."""
        t = self.thresholds
        out: dict[str, Any] = {
            "period": self.period,
            "min_confidence": round(t.min_confidence, 4),
            "persistence_k": t.persistence_k,
            "persistence_n": t.persistence_n,
            "audit_every": t.audit_every,
            "flip_limit": t.flip_limit,
            "bar": t.bar,
            "gate_block_min_change": self.gate_block_min_change,
            "sample_fps": self.sample_fps,
        }
        for flag, k in sorted(self.persistence_k_by_flag.items()):
            out[f"persistence_k[{flag}]"] = k
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "period": self.period,
            "period_reason": self.period_reason,
            "since": round(self.since, 3),
            "local_time": self.local_time,
            "brightness": None if self.brightness is None else round(self.brightness, 1),
            "thresholds": self.thresholds.to_json(),
            "persistence_k_by_flag": dict(sorted(self.persistence_k_by_flag.items())),
            "gate_block_min_change": self.gate_block_min_change,
            "sample_fps": self.sample_fps,
        }


@dataclass(frozen=True, slots=True)
class ThresholdChange:
    """One value in force changed: a line of the decision log."""

    camera: str
    timestamp: float
    name: str
    old: Any
    new: Any
    cause: str
    """'profile', 'load', 'fp_feedback' or 'reload'.  Written to the decision log as a
    `pipeline.sinks.decision_log.ThresholdChangeLine`."""
    period: str
    figures: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class FlagFeedback:
    """Smoothed teacher feedback on one flag (or reason key) in one period of one camera."""

    dismissal_rate: float = 0.0
    verdicts: int = 0
    """Escalations of this flag the teacher ruled on (confirmed or dismissed)."""
    miss_rate: float = 0.0
    audits: int = 0
    """Audit verdicts counted for this flag."""
    offset: int = 0
    """Steps applied: > 0 stricter (more persistence), < 0 looser (audit misses)."""
    since_change: int = 0
    """Verdicts counted since ``offset`` last moved."""
    updated_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dismissal_rate": round(self.dismissal_rate, 4),
            "verdicts": self.verdicts,
            "miss_rate": round(self.miss_rate, 4),
            "audits": self.audits,
            "offset": self.offset,
            "since_change": self.since_change,
            "updated_at": self.updated_at,
        }
