"""`escalation:` when a sequence goes to the teacher, and the one persistence rule."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.config.base import Section

DEFAULT_SAFETY_TRIGGERS = ["fire", "weapon", "fall", "intrusion", "smoke", "blood"]


class EscalationConfig(Section):
    min_confidence: float = Field(0.72, ge=0.0, le=1.0, description="Student confidence below this, sustained over the window, escalates.")
    safety_triggers: list[str] = Field(default_factory=lambda: list(DEFAULT_SAFETY_TRIGGERS), description="Flags that are safety triggers (tamper always is one: a blinded camera sees no other hazard).")
    persistence_k: int = Field(2, ge=1, le=100, description="A safety trigger must be in k of the last n analysed frames to persist: it escalates to the teacher and, without a verdict, moves suspicious → alert (one rule for both).")
    persistence_n: int = Field(3, ge=1, le=100, description="See persistence_k.")
    audit_every: int = Field(120, ge=1, le=100000, description="Send a calm sequence to the teacher every this many analysed frames (samples silent misses).")
    flip_limit: int = Field(4, ge=1, le=1000, description="A flag switching on/off at least this many times in the window escalates.")
    suppress_after_dismiss_s: float = Field(30.0, ge=0, le=86400, description="After the teacher dismisses a pattern, its low-confidence, flip and scene-change signals do not escalate again for this long (safety evidence is never suppressed: a dismissal covers only the frames the teacher saw).")
    reask_after_s: float = Field(2.0, ge=0, le=3600, description="A dismissed safety pattern that persists again on frames after the teacher's last keyframe is asked again at most this often (its alert stands meanwhile).")
    review_alerts: bool = Field(True, description="An alert the monitor raised on the student's word alone (a flag carried over gate-skipped frames, a tamper the gate backs) and still unreviewed at the next analysed frame goes to the teacher too, so no alert is left unreviewed while the teacher is reachable.")
    rearm_after_s: float = Field(2.0, ge=0, le=3600, description="A safety flag that returns after an analysed frame without it, and after being absent this long, is a new onset: earlier dismissals and escalations of it no longer hold it back.")

    @model_validator(mode="after")
    def _k_le_n(self) -> "EscalationConfig":
        if self.persistence_k > self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) must be <= persistence_n ({self.persistence_n})")
        return self
