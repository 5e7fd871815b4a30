"""Validation cases from a run's decision log: the sequences the teacher ruled on, joined with what the
student said about their keyframes (read through the typed decision-log reader).
"""

from __future__ import annotations

import logging
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
import numpy as np
from pipeline.config.capture import CaptureConfig
from pipeline.config.encode import EncodeConfig
from pipeline.incidents.evidence import match_safety
from pipeline.sinks.decision_log import EscalationSent, FrameDecision, VerdictReceived, read_decisions
from pipeline.records import SAFETY_FLAGS, normalise_flag
from tools.validation_suite import DECOY_WEIGHT, ExpectedFact, PLAIN_WEIGHT, SAFETY_WEIGHT, SuiteError, ValidationCase, encode_case_frame

log = logging.getLogger("edgewatch.skills")


@dataclass(frozen=True, slots=True)
class ReviewedSequence:
    """A sequence the teacher ruled on, joined with what the student said about its keyframes."""

    escalation_id: str
    camera: str
    reason: str
    keyframe_times: tuple[float, ...]
    verdict: str
    teacher_flags: frozenset[str]
    teacher_observations: tuple[str, ...]
    student_flags: frozenset[str]
    student_observations: tuple[str, ...]

    @property
    def missed(self) -> frozenset[str]:
        """Flags the teacher saw that the student did not raise (or speak of)."""
        return self.teacher_flags - self.student_flags if self.verdict == "confirmed" else frozenset()

    @property
    def false_alarms(self) -> frozenset[str]:
        """Flags the student raised on a sequence the teacher dismissed."""
        return self.student_flags - self.teacher_flags if self.verdict == "dismissed" else frozenset()

    def failure_text(self) -> str | None:
        """One line for the teacher's synthesis prompt, or None when the student was right."""
        said = "; ".join(self.student_observations[:4]) or "nothing"
        saw = "; ".join(self.teacher_observations[:4]) or "nothing"
        if self.missed:
            return (f"missed {', '.join(sorted(self.missed))} at t={self.keyframe_times[-1]:.1f}s: "
                    f"the student said '{said}', the reviewer saw '{saw}'")
        if self.false_alarms:
            return (f"false alarm {', '.join(sorted(self.false_alarms))} at t={self.keyframe_times[-1]:.1f}s: "
                    f"the student said '{said}', the reviewer dismissed it ('{saw}')")
        return None


def _read_log(path: Path) -> list[Any]:
    if not path.is_file():
        raise SuiteError(f"decision log not found: {path}")
    try:
        return list(read_decisions(path))
    except OSError as exc:
        raise SuiteError(f"cannot read decision log {path}: {exc}") from None


def reviewed_sequences(decision_log: Path) -> tuple[ReviewedSequence, ...]:
    """Every confirmed or dismissed teacher verdict in a run's ``decisions.jsonl``, with the student's side."""
    records = _read_log(Path(decision_log))
    escalations = {r.id: r for r in records if isinstance(r, EscalationSent)}
    student_at: dict[tuple[str, float], dict[str, Any]] = {}
    for r in records:
        if isinstance(r, FrameDecision) and isinstance(r.student, dict):
            student_at[(str(r.camera), round(float(r.t or 0.0), 3))] = r.student
    out: list[ReviewedSequence] = []
    for r in records:
        if not isinstance(r, VerdictReceived):
            continue
        v = r.verdict
        if v.get("verdict") not in ("confirmed", "dismissed"):
            continue
        esc = escalations.get(r.escalation_id)
        if esc is None:
            continue
        camera = str(v.get("camera", esc.camera))
        times = tuple(float(t) for t in esc.keyframes or [] if isinstance(t, (int, float)))
        if not times:
            continue
        s_flags: set[str] = set()
        s_obs: list[str] = []
        for t in times:
            said = student_at.get((camera, round(t, 3)))
            if said is None:
                continue
            obs = [str(o) for o in said.get("observations") or []]
            s_obs.extend(o for o in obs if o not in s_obs)
            s_flags |= match_safety(said.get("safetyFlags") or [], obs, SAFETY_FLAGS)
        t_obs = tuple(str(o) for o in v.get("observations") or [])
        out.append(ReviewedSequence(
            escalation_id=str(r.escalation_id),
            camera=camera,
            reason=str(esc.reason or ""),
            keyframe_times=times,
            verdict=str(v["verdict"]),
            teacher_flags=frozenset(normalise_flag(f) for f in v.get("safetyFlags") or [] if normalise_flag(f) in SAFETY_FLAGS),
            teacher_observations=t_obs,
            student_flags=frozenset(s_flags),
            student_observations=tuple(s_obs),
        ))
    return tuple(out)


def failure_cases(decision_log: Path, limit: int = 20) -> list[str]:
    """One line per student miss or false alarm the teacher corrected (most recent last, at most ``limit``)."""
    lines = [text for seq in reviewed_sequences(decision_log) if (text := seq.failure_text()) is not None]
    return lines[-limit:]


def decision_log_cases(decision_log: Path, source: str, *, heldout_every: int = 3,
                       encode_cfg: EncodeConfig | None = None) -> tuple[ValidationCase, ...]:
    """Teacher-reviewed sequences as cases: the keyframes re-read from ``source`` (the run's video).

    The teacher's flags are the expected flags and its observations the expected facts; a
    deterministic share (every ``heldout_every``-th by escalation id hash) goes to held-out."""
    from pipeline.sources.capture import open_source
    from pipeline.clock import SystemClock

    sequences = reviewed_sequences(Path(decision_log))
    if not sequences:
        return ()
    wanted = {round(t, 2) for seq in sequences for t in seq.keyframe_times}
    found: dict[float, np.ndarray] = {}
    cfg = encode_cfg or EncodeConfig()
    with open_source(source, camera_id="suite", cfg=CaptureConfig(), clock=SystemClock()) as src:
        for frame in src.frames():
            key = round(frame.timestamp, 2)
            if key in wanted and key not in found:
                found[key] = frame.image
            if len(found) == len(wanted):
                break
    cases: list[ValidationCase] = []
    for seq in sequences:
        images = [(t, found.get(round(t, 2))) for t in seq.keyframe_times]
        if any(img is None for _, img in images):
            log.warning("decision-log case %s: keyframes not found in %s; skipped", seq.escalation_id, source)
            continue
        frames = tuple(encode_case_frame(img, seq.camera, i, t, cfg) for i, (t, img) in enumerate(images) if img is not None)
        facts = tuple(ExpectedFact(o, tuple(w for w in re.findall(r"[a-z]+", o.lower()) if len(w) > 3)[:6] or (o.lower(),))
                      for o in seq.teacher_observations[:4])
        bucket = int(hashlib.sha256(seq.escalation_id.encode()).hexdigest(), 16) % max(1, heldout_every)
        weight = SAFETY_WEIGHT if seq.teacher_flags else DECOY_WEIGHT if seq.false_alarms else PLAIN_WEIGHT
        cases.append(ValidationCase(
            id=f"log-{seq.escalation_id}", frames=frames, facts=facts, flags=seq.teacher_flags, weight=weight,
            split="heldout" if bucket == 0 else "train", source="decision_log",
            note=f"{seq.reason}: teacher {seq.verdict}",
        ))
    return tuple(cases)
