"""`escalation:` when a sequence goes to the teacher, and the one persistence rule."""

from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.config.base import Section

DEFAULT_SAFETY_TRIGGERS = ["fire", "weapon", "fall", "intrusion", "smoke", "blood"]


class EscalationConfig(Section):
    min_confidence: float = Field(0.5, ge=0.0, le=1.0, description="Student confidence below this, sustained over the window, escalates (0.5 from the routing evaluation: 0.6-0.72 cost 2-6 model-s more per run of the 17 shared clips and bought no event F1, docs/EVALUATION.md).")
    safety_triggers: list[str] = Field(default_factory=lambda: list(DEFAULT_SAFETY_TRIGGERS), description="Flags that are safety triggers (tamper always is one: a blinded camera sees no other hazard).")
    persistence_k: int = Field(2, ge=1, le=100, description="A safety trigger must be in k of the last n analysed frames to persist: it escalates to the teacher and, without a verdict, moves suspicious → alert (one rule for both).")
    persistence_n: int = Field(3, ge=1, le=100, description="See persistence_k.")
    audit_every: int = Field(480, ge=1, le=100000, description="Send a calm sequence to the teacher every this many analysed frames (samples silent misses; 480 = 4 min at 2 fps: the 120 measured before cost model-seconds and found nothing more, docs/EVALUATION.md).")
    flip_limit: int = Field(1000, ge=1, le=1000, description="A flag switching on/off at least this many times in the window escalates. The default (1000) never triggers: flickering safety flags are asked through persistence, re-asks and the end-of-source question, and flip escalations cost 6 model-s for 0.7 points of event F1 on the shared clips (docs/EVALUATION.md); set 4 to bring them back.")
    suppress_after_dismiss_s: float = Field(30.0, ge=0, le=86400, description="After the teacher dismisses a pattern, its low-confidence, flip and scene-change signals do not escalate again for this long (safety evidence is never suppressed: a dismissal covers only the frames the teacher saw).")
    reask_after_s: float = Field(2.0, ge=0, le=3600, description="A dismissed safety pattern that persists again on frames after the teacher's last keyframe is asked again at most this often (its alert stands meanwhile).")
    review_alerts: bool = Field(True, description="An alert the monitor raised on the student's word alone (a flag carried over gate-skipped frames, a tamper the gate backs) and still unreviewed at the next analysed frame goes to the teacher too, so no alert is left unreviewed while the teacher is reachable.")
    rearm_after_s: float = Field(2.0, ge=0, le=3600, description="A safety flag that returns after an analysed frame without it, and after being absent this long, is a new onset: earlier dismissals and escalations of it no longer hold it back.")
    reask_when_due: bool = Field(True, description="A dismissed safety type seen again while the re-ask rate limit holds is owed a question: asked as soon as reask_after_s allows, while its evidence is still in the window (not dropped when it stops persisting).")
    hold_confirmed: bool = Field(True, description="A safety type the teacher confirmed is not asked again while the student's evidence of it goes on; a new onset (absent rearm_after_s, then back) or a quiet spell re-arms it (instead of re-asking every window length).")
    review_activity: bool = Field(True, description="Every verdict's observations review the open person/vehicle activity events: one the student named on a keyframe the teacher saw and the teacher does not name is dismissed (it stays dismissed while it goes on; a later look that shows the kind opens a confirmed one). No extra teacher call (pipeline/incidents/activity_review.py).")
    confirm_named_only: bool = Field(False, description="On: a confirmed verdict confirms the safety types it names, and an asked type it does not name (asked about a fall and smoke, it names smoke) is dismissed for the frames the teacher saw, as by a dismissal (pipeline/incidents/verdicts.py). Off by default: a confirmation silent on a type has not said it is absent, and escalation must never erase an alert (with the offline teacher, whose smoke check is weaker than the student's veil rule, it erased the demo's smoke).")
    ask_blips: bool = Field(False, description="A safety flag on the newest frame that does not persist (yet) is asked of the teacher too, below safety priority, once per pattern per cool-off: a real fall seen on one frame only is confirmed instead of lost; costs a teacher call per student phantom.")
    reask_unseen: bool = Field(False, description="On: a question asked again after a dismissal shows the teacher the frames it has not seen: its keyframes start at the first flagged frame after the dismissal's last keyframe, not at the pattern's onset it already looked at. Off by default: it saved 0.3 model-s in the simulated grid, but with the offline teacher the first frames after a dismissal were as ambiguous as the ones it dismissed, and the demo's fire was dismissed twice and alerted 3 s late.")
    ask_at_end: bool = Field(True, description="When a source ends, safety evidence of its last persistence_n frames that no verdict covers is asked of the teacher even if it never persisted (a flag on a clip's last frame, a scene cut just before a camera is lost).")

    @model_validator(mode="after")
    def _k_le_n(self) -> "EscalationConfig":
        if self.persistence_k > self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) must be <= persistence_n ({self.persistence_n})")
        return self
