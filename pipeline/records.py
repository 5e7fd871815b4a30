"""Immutable records that cross stage boundaries.

Every stage takes and returns these; none reaches into another stage's internals.
Times are seconds of *source* time (the frame's own timestamp), never wall-clock time,
so a replayed file behaves exactly like a live camera.

Two kinds of record live here:

* the **wire contracts** (`StudentAnswer`, `TeacherAnswer`): pydantic models whose JSON
  schema is what a model is asked to return (``format=`` in Ollama) and what its answer
  is validated against.  They use the camelCase field names of the documented contract
  (``safetyFlags``) and forbid extra keys;
* the **pipeline records** (`Frame`, `EncodedFrame`, `FrameReport`, `WindowStats`,
  `Escalation`, `Verdict`, `Event`): frozen dataclasses that carry the contract plus
  provenance (which camera, frame, backend, model, prompt version, latency).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

# --------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------

#: Safety flags a model may raise.  ``tamper`` (camera covered, moved, blinded) and
#: ``model_error`` (the analysis itself failed) are operational flags that matter too.
SAFETY_FLAGS: tuple[str, ...] = ("fire", "smoke", "fall", "intrusion", "weapon", "blood", "tamper")
MODEL_ERROR_FLAG = "model_error"
#: Flags that are always safety triggers whatever the configured list says: a covered or
#: moved camera is blind to every other hazard, so it must reach a person.
ALWAYS_TRIGGERS: frozenset[str] = frozenset({"tamper"})

_SPACES = re.compile(r"[\s\-]+")


def normalise_flag(raw: str) -> str:
    """Lower-case, trim and snake-case a flag so ``"Person Fall"`` and ``person_fall`` compare equal."""
    return _SPACES.sub("_", raw.strip().lower()).strip("_")


# --------------------------------------------------------------------------------------
# Wire contracts (what models must answer)
# --------------------------------------------------------------------------------------


class StudentAnswer(BaseModel):
    """The strict contract the student model answers for one frame."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    observations: list[str] = Field(
        description="Short factual phrases about what is visible, e.g. 'person walking left'.",
        max_length=20,
    )
    safety_flags: list[str] = Field(
        alias="safetyFlags",
        description="Safety-relevant flags, lower-case words such as fire, smoke, fall, intrusion, weapon, blood, tamper. Empty when nothing is wrong.",
        max_length=10,
    )
    confidence: float = Field(ge=0.0, le=1.0, description="How sure the model is of this answer, 0..1.")

    @field_validator("observations", "safety_flags")
    @classmethod
    def _strip_items(cls, items: list[str]) -> list[str]:
        return [s.strip() for s in items if s and s.strip()]

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema sent to a model as its output format (by alias: ``safetyFlags``)."""
        return cls.model_json_schema(by_alias=True)


class TeacherAnswer(BaseModel):
    """The strict contract the teacher model answers for one escalated sequence."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    verdict: Literal["confirmed", "dismissed"] = Field(
        description="'confirmed' when the sequence really shows the escalated concern, 'dismissed' otherwise."
    )
    observations: list[str] = Field(description="What the sequence shows, short factual phrases.", max_length=20)
    safety_flags: list[str] = Field(
        alias="safetyFlags", description="Safety flags the teacher sees in the sequence.", max_length=10
    )
    confidence: float = Field(ge=0.0, le=1.0, description="How sure the teacher is of its verdict, 0..1.")
    explanation: str = Field(description="One paragraph: why confirmed or dismissed.", max_length=2000)

    @field_validator("observations", "safety_flags")
    @classmethod
    def _strip_items(cls, items: list[str]) -> list[str]:
        return [s.strip() for s in items if s and s.strip()]

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.model_json_schema(by_alias=True)


# --------------------------------------------------------------------------------------
# Pipeline records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mover:
    """One moving thing the dense motion observer tracks (`pipeline.frames.motion`); box in frame fractions."""

    x: float
    y: float
    w: float
    h: float
    aspect: float
    """Height over width in pixels: > 1 upright, < 1 lying or wide."""
    area: float
    """Share of the frame its moving pixels cover."""
    track: int = 0

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h

    @property
    def touches_bottom(self) -> bool:
        return self.y + self.h >= 0.99

    @property
    def touches_side(self) -> bool:
        return self.x <= 0.01 or self.x + self.w >= 0.99

    def to_json(self) -> dict[str, Any]:
        return {"track": self.track, "box": [round(v, 3) for v in (self.x, self.y, self.w, self.h)],
                "aspect": round(self.aspect, 2)}


@dataclass(frozen=True, slots=True)
class FallSighting:
    """A tracked upright mover that came down fast and stayed low: the dense observer's fall."""

    track: int
    onset: float
    """Source time at which the silhouette was first low."""
    timestamp: float
    """Source time of the newest frame that still showed it down."""
    how: str
    standing: Mover
    """The upright sighting the drop is measured from."""
    lying: Mover
    top_drop: float
    """How far the top came down, in standing heights."""
    descent_s: float
    """Seconds from the last upright sighting to the first low one."""

    def to_json(self) -> dict[str, Any]:
        return {"track": self.track, "onset": round(self.onset, 3), "t": round(self.timestamp, 3), "how": self.how,
                "standing": self.standing.to_json(), "lying": self.lying.to_json(), "top_drop": self.top_drop,
                "descent_s": self.descent_s}


@dataclass(frozen=True, slots=True)
class MotionRecord:
    """What the dense motion observer saw up to one frame (it looks at many more frames than the student)."""

    timestamp: float
    moving_fraction: float
    """Share of the (small) frame that differs from the learnt background."""
    movers: tuple[Mover, ...]
    fall: FallSighting | None = None
    """A mover that fell and is (still) down, else None."""
    view_reset: bool = False
    """The whole view changed at this frame (camera moved, lights): the background is learnt again."""

    def to_json(self) -> dict[str, Any]:
        return {"t": round(self.timestamp, 3), "moving": round(self.moving_fraction, 4),
                "movers": [m.to_json() for m in self.movers[:8]],
                **({"fall": self.fall.to_json()} if self.fall else {}), **({"view_reset": True} if self.view_reset else {})}


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One decoded frame.  ``image`` is BGR uint8 (H, W, 3) and must be treated as read-only."""

    source_id: str
    index: int
    timestamp: float
    image: np.ndarray
    motion: MotionRecord | None = None
    """What the dense motion observer saw up to this frame (set by the pipeline when it observes)."""

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


class GateReason(str, Enum):
    """Why the gate let a frame through or skipped it."""

    FIRST = "first"
    CHANGE = "change"
    GLOBAL_CHANGE = "global_change"
    HEARTBEAT = "heartbeat"
    SAFETY_WATCH = "safety_watch"
    """Static, but a safety flag is open: the student keeps looking at up to sample_fps."""
    STATIC = "static"


@dataclass(frozen=True, slots=True)
class GateDecision:
    passed: bool
    reason: GateReason
    score: float
    """Change score of this frame against the last analysed one (0..255 mean abs difference)."""
    changed_fraction: float = 0.0
    """Share of the downscaled frame whose pixels changed noticeably (0..1)."""
    salience: float = 0.0
    """How much the change stands out from what normally moves in its regions (0 = nothing does)."""
    region: tuple[float, float, float, float] | None = None
    """Bounding box (x0, y0, x1, y1 as fractions of width and height) of the regions whose change stood out."""
    global_kind: str | None = None
    """For a global change (or a blank first frame): 'lighting_change' or 'tamper' (covered, moved, view replaced)."""


@dataclass(frozen=True, slots=True, eq=False)
class EncodedFrame:
    """A frame resized and JPEG-encoded once, reused by every consumer (student, teacher, snapshots)."""

    frame: Frame
    jpeg: bytes
    b64: str
    width: int
    height: int
    gate: GateDecision

    @property
    def timestamp(self) -> float:
        return self.frame.timestamp


@dataclass(frozen=True, slots=True)
class FrameReport:
    """The student's answer for one frame plus where it came from."""

    camera: str
    frame_index: int
    timestamp: float
    observations: tuple[str, ...]
    safety_flags: tuple[str, ...]
    confidence: float
    backend: str
    """'offline', 'ollama' or 'simulated' — always named, never hidden."""
    model: str
    prompt_version: str
    latency_ms: float
    error: str | None = None
    """Set when the analysis failed; the report then has confidence 0 and flag ``model_error``."""
    timings: dict[str, float] = field(default_factory=dict, hash=False, compare=False)
    """Backend-specific measured timings (Ollama's total/load/eval durations, in ms)."""

    @property
    def flags(self) -> frozenset[str]:
        return frozenset(normalise_flag(f) for f in self.safety_flags)

    @classmethod
    def from_answer(
        cls,
        answer: StudentAnswer,
        *,
        frame: Frame,
        backend: str,
        model: str,
        prompt_version: str,
        latency_ms: float,
        timings: dict[str, float] | None = None,
    ) -> "FrameReport":
        return cls(
            camera=frame.source_id,
            frame_index=frame.index,
            timestamp=frame.timestamp,
            observations=tuple(answer.observations),
            safety_flags=tuple(normalise_flag(f) for f in answer.safety_flags),
            confidence=float(answer.confidence),
            backend=backend,
            model=model,
            prompt_version=prompt_version,
            latency_ms=latency_ms,
            timings=dict(timings or {}),
        )

    @classmethod
    def failed(
        cls, *, frame: Frame, backend: str, model: str, prompt_version: str, latency_ms: float, error: str
    ) -> "FrameReport":
        """A failed analysis: never fabricated, confidence 0, flag ``model_error``; it counts toward escalation."""
        return cls(
            camera=frame.source_id,
            frame_index=frame.index,
            timestamp=frame.timestamp,
            observations=(),
            safety_flags=(MODEL_ERROR_FLAG,),
            confidence=0.0,
            backend=backend,
            model=model,
            prompt_version=prompt_version,
            latency_ms=latency_ms,
            error=error,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "frame": self.frame_index,
            "t": round(self.timestamp, 3),
            "observations": list(self.observations),
            "safetyFlags": list(self.safety_flags),
            "confidence": round(self.confidence, 4),
            "backend": self.backend,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "latency_ms": round(self.latency_ms, 2),
            **({"error": self.error} if self.error else {}),
            **({"timings": self.timings} if self.timings else {}),
        }


@dataclass(frozen=True, slots=True)
class SafetyEvidence:
    """What one analysed frame says about safety, read once (`pipeline.incidents.evidence`) and read by
    everyone after: the monitor's guards, the escalation policy, the keyframe chooser, the learner."""

    timestamp: float
    triggers: frozenset[str]
    """Canonical safety triggers the frame's flags or observations name (synonyms, negation applied)."""
    activity: str | None
    """``person``, ``vehicle`` or ``motion`` when the observations show something present or moving."""
    confidence: float
    """The report's confidence, clamped to 0..1 (0 for a failed analysis)."""
    failed: bool = False
    """The analysis failed (``model_error``, nothing observed): no evidence either way."""
    gate_hint: str | None = None
    """The change gate's reading of a whole-view change: 'tamper' or 'lighting_change'."""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Aggregates of the student's reports over the last ``window_s`` seconds of source time."""

    camera: str
    timestamp: float
    """Source time of the newest report in the window."""
    window_s: float
    n_reports: int
    flag_streak: dict[str, int]
    """For each flag in the newest report: how many consecutive newest reports carry it."""
    flips: dict[str, int]
    """How many times each flag switched on or off between consecutive reports."""
    confidence_mean: float
    confidence_last: float
    active_flags: frozenset[str]
    """Flags in the newest report."""
    observations: tuple[str, ...]
    """Observations of the newest report."""
    scene_change: bool = False
    """The newest analysed frame passed the gate as a global (most-of-frame) change."""
    scene_change_kind: str | None = None
    """The change gate's reading of that global change: 'tamper' (covered, moved, another view) or 'lighting_change'."""
    errors: int = 0
    """Reports in the window that were failed analyses."""
    evidence: SafetyEvidence | None = None
    """The newest report's safety evidence."""
    recent_evidence: tuple[SafetyEvidence, ...] = ()
    """The safety evidence of each report in the window, oldest first (for k-of-n persistence)."""


class Priority(int, Enum):
    """Teacher-queue priority; a larger value is served first and shed last."""

    AUDIT = 1
    SCENE_CHANGE = 2
    FLAG_FLIP = 3
    LOW_CONFIDENCE = 4
    SAFETY = 9


@dataclass(frozen=True, slots=True, eq=False)
class Escalation:
    """A sequence sent to the teacher: keyframes in time order plus the student's timeline."""

    id: str
    camera: str
    incident_id: str
    reason: str
    priority: Priority
    created_at: float
    """Source time of the newest report when the decision was taken."""
    flags: frozenset[str]
    keyframes: tuple[EncodedFrame, ...]
    timeline: tuple[FrameReport, ...]
    merged_ids: tuple[str, ...] = ()
    """Ids of other escalations folded into this one by the batching window."""

    def timeline_text(self) -> str:
        """The student's timeline as plain text, one line per report."""
        lines = []
        for r in self.timeline:
            flags = ",".join(r.safety_flags) or "-"
            obs = "; ".join(r.observations) or "-"
            lines.append(f"t={r.timestamp:.2f}s conf={r.confidence:.2f} flags={flags} obs={obs}")
        return "\n".join(lines)


class VerdictKind(str, Enum):
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class Verdict:
    escalation_id: str
    camera: str
    incident_id: str
    kind: VerdictKind
    observations: tuple[str, ...]
    safety_flags: tuple[str, ...]
    confidence: float
    explanation: str
    backend: str
    model: str
    latency_ms: float
    timings: dict[str, float] = field(default_factory=dict, hash=False, compare=False)

    @classmethod
    def from_answer(
        cls, answer: TeacherAnswer, *, escalation: Escalation, backend: str, model: str, latency_ms: float,
        timings: dict[str, float] | None = None,
    ) -> "Verdict":
        return cls(
            escalation_id=escalation.id,
            camera=escalation.camera,
            incident_id=escalation.incident_id,
            kind=VerdictKind(answer.verdict),
            observations=tuple(answer.observations),
            safety_flags=tuple(normalise_flag(f) for f in answer.safety_flags),
            confidence=float(answer.confidence),
            explanation=answer.explanation,
            backend=backend,
            model=model,
            latency_ms=latency_ms,
            timings=dict(timings or {}),
        )

    @classmethod
    def unverified(cls, escalation: Escalation, *, backend: str, model: str, latency_ms: float, why: str) -> "Verdict":
        return cls(
            escalation_id=escalation.id,
            camera=escalation.camera,
            incident_id=escalation.incident_id,
            kind=VerdictKind.UNVERIFIED,
            observations=(),
            safety_flags=(),
            confidence=0.0,
            explanation=why,
            backend=backend,
            model=model,
            latency_ms=latency_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "escalation_id": self.escalation_id,
            "camera": self.camera,
            "incident_id": self.incident_id,
            "verdict": self.kind.value,
            "observations": list(self.observations),
            "safetyFlags": list(self.safety_flags),
            "confidence": round(self.confidence, 4),
            "explanation": self.explanation,
            "backend": self.backend,
            "model": self.model,
            "latency_ms": round(self.latency_ms, 2),
            **({"timings": self.timings} if self.timings else {}),
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of a camera's monitor, with the reason and the figures that caused it."""

    camera: str
    timestamp: float
    source: str
    dest: str
    trigger: str
    reason: str
    figures: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class ReviewStatus(str, Enum):
    """Where an event stands with the teacher: alert first, explanation later."""

    NOT_REVIEWED = "not_reviewed"
    PENDING_REVIEW = "pending_review"
    CONFIRMED = "confirmed"
    DISMISSED = "dismissed"
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the event log.  The same ``id`` appears with phase new, then update(s), then end."""

    id: str
    camera: str
    type: str
    """What happened: a safety flag (fall, fire, smoke, intrusion, tamper, ...) or activity (person, vehicle, motion)."""
    severity: Literal["activity", "alert"]
    phase: Literal["new", "update", "end"]
    state: str
    """The camera's monitor state when this line was written."""
    start: float
    end: float | None
    flags: tuple[str, ...]
    peak_confidence: float
    reasons: tuple[str, ...]
    review: ReviewStatus = ReviewStatus.NOT_REVIEWED
    explanation: str = ""
    snapshot: str | None = None
    previous_id: str | None = None
    """The event this one continues under a new type (motion seen to be a person), if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "camera": self.camera,
            "type": self.type,
            "severity": self.severity,
            "phase": self.phase,
            "state": self.state,
            "start": round(self.start, 3),
            "end": None if self.end is None else round(self.end, 3),
            "flags": list(self.flags),
            "peak_confidence": round(self.peak_confidence, 4),
            "reasons": list(self.reasons),
            "review": self.review.value,
            "explanation": self.explanation,
            "snapshot": self.snapshot,
            "previous_id": self.previous_id,
        }
