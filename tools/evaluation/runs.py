"""Running one policy variant on one clip through the real pipeline.

Every policy runs `pipeline.runner.Runner` (capture, gate, encode, window, states, policy,
teacher queue, sinks) with one student/teacher pair; only the routing policy and, for the
teacher-in-the-student's-slot policies, the model in the slot differ.  With a
`tools.evaluation.replay.ClipRecording` the pixel stages (decode, motion observer, the gate's
thumbnails) are replayed from one decode of the clip; everything after them runs as is.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.errors import UsageError
from pipeline.incidents.escalation import EscalationPolicy, Thresholds
from pipeline.records import EncodedFrame, Escalation, FrameReport, Priority, Verdict, VerdictKind
from pipeline.sinks.decision_log import read_decisions
from tools import referee
from tools.baselines import ConfidenceOnly, NeverEscalate
from tools.evaluation.costs import model_seconds, run_costs
from tools.evaluation.scoring import RunRecord, detections_from_events, read_event_log, score_clip
from tools.labels import ClipLabels, LabelSet

ROOT = Path(__file__).resolve().parent.parent.parent
DEMO_LABELS = ROOT / "fixtures" / "demo" / "demo.labels.json"
SHARED_CLIPS = ROOT.parent / "shared" / "fixtures" / "clips"

POLICIES: tuple[str, ...] = ("student_only", "teacher_only", "ours", "ours_single_frame", "confidence_only", "fixed_interval")
#: Policies in which the teacher answers frames in the student's slot.
TEACHER_SLOT = frozenset({"teacher_only", "fixed_interval"})
PAIRS = ("simulated", "offline", "ollama")
#: Frames of context the teacher-in-the-student's-slot adapter shows with each frame.
TEACHER_SLOT_CONTEXT = 2


class TeacherAsStudent:
    """Puts a `Teacher` in the student's slot: each analysed frame is reviewed, with the
    previous ``context`` analysed frames as context (a sequence teacher needs to see motion),
    and the verdict becomes the frame's report."""

    prompt_version = "teacher-per-frame/1"

    def __init__(self, teacher: Any, *, context: int = TEACHER_SLOT_CONTEXT) -> None:
        self.teacher = teacher
        self.backend = teacher.backend
        self.model = teacher.model
        self.context = max(0, context)
        self._recent: list[EncodedFrame] = []
        self.images = 0

    def analyze(self, item: EncodedFrame) -> FrameReport:
        frame = item.frame
        frames = tuple(self._recent[-self.context:]) + (item,) if self.context else (item,)
        self._recent = (self._recent + [item])[-max(1, self.context):]
        self.images += len(frames)
        escalation = Escalation(id=f"{frame.source_id}-frame-{frame.index}", camera=frame.source_id,
                                incident_id=f"{frame.source_id}-frame-{frame.index}", reason="teacher_per_frame",
                                priority=Priority.AUDIT, created_at=frame.timestamp, flags=frozenset(),
                                keyframes=frames, timeline=())
        verdict: Verdict = self.teacher.review(escalation)
        if verdict.kind == VerdictKind.UNVERIFIED:
            return FrameReport.failed(frame=frame, backend=self.backend, model=self.model, prompt_version=self.prompt_version,
                                      latency_ms=verdict.latency_ms, error=verdict.explanation[:200] or "unverified")
        return FrameReport(camera=frame.source_id, frame_index=frame.index, timestamp=frame.timestamp,
                           observations=verdict.observations, safety_flags=verdict.safety_flags,
                           confidence=verdict.confidence, backend=self.backend, model=self.model,
                           prompt_version=self.prompt_version, latency_ms=verdict.latency_ms, timings=dict(verdict.timings))

    def close(self) -> None:
        self.teacher.close()



@dataclass(frozen=True)
class Variant:
    """A policy with its settings overrides (the default, or one point of a sweep)."""

    policy: str
    name: str
    min_confidence: float | None = None
    fixed_interval_s: float | None = None
    evaluation: dict[str, float] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Settings section → field updates (a sweep's knob, an ablation's switch)."""

    @property
    def setting(self) -> str:
        """The part of the name after the policy ("default" for the policy as configured)."""
        return self.name.split("@", 1)[1] if "@" in self.name else "default"


def make_backends(pair: str, settings: Settings, clip: ClipLabels, seed: int, teacher_slot: bool, clock: Clock) -> Any:
    """`Backends` for one run; ``teacher_slot`` puts the teacher in the student's place."""
    from pipeline.analyzers.backends import Backends

    if pair == "simulated":
        from tools.simulated import SimulatedStudent, SimulatedTeacher

        cfg = settings.evaluation
        teacher = SimulatedTeacher(clip, cfg, seed=seed)
        student = SimulatedStudent(clip, cfg, seed=seed, role="teacher" if teacher_slot else "student")
        return Backends(student=student, teacher=teacher, notices=["student and teacher: simulated (labels through the error model)"])
    if pair == "offline":
        from pipeline.analyzers.offline import OfflineStudent, OfflineTeacher

        teacher = OfflineTeacher(settings.offline, settings.zones, clock)
        student: Any = TeacherAsStudent(OfflineTeacher(settings.offline, settings.zones, clock)) if teacher_slot \
            else OfflineStudent(settings.offline, settings.zones, clock)
        return Backends(student=student, teacher=teacher, notices=["student and teacher: the embedded offline analyzers"])
    if pair == "ollama":
        from pipeline.analyzers.backends import select_backends

        forced = settings.model_copy(update={
            "student": settings.student.model_copy(update={"backend": "ollama"}),
            "teacher": settings.teacher.model_copy(update={"backend": "ollama"}),
        })
        chosen = select_backends(forced, clock)
        if teacher_slot:
            chosen.student.close()
            return Backends(student=TeacherAsStudent(chosen.teacher), teacher=chosen.teacher, notices=chosen.notices)
        return chosen
    raise UsageError(f"unknown pair {pair!r} (choose {', '.join(PAIRS)})")


def variant_settings(base: Settings, variant: Variant, clip_index: int, out_dir: Path) -> Settings:
    s = base.model_copy(deep=True)
    updates: dict[str, Any] = {
        "camera_id": f"clip{clip_index:02d}",
        "output": s.output.model_copy(update={"out_dir": out_dir, "snapshots": False}),
        # One student call at a time: a replay is then deterministic.
        "student": s.student.model_copy(update={"max_concurrent": 1}),
        "teacher": s.teacher.model_copy(update={"wait_in_replay": True}),
    }
    if variant.evaluation:
        updates["evaluation"] = s.evaluation.model_copy(update=dict(variant.evaluation))
    if variant.min_confidence is not None:
        updates["escalation"] = s.escalation.model_copy(update={"min_confidence": variant.min_confidence})
    if variant.policy in ("ours_single_frame", "confidence_only"):
        updates["teacher"] = updates["teacher"].model_copy(update={"max_keyframes": 1})
    for section, fields in variant.overrides.items():
        current = updates.get(section, getattr(s, section))
        updates[section] = current.model_copy(update=dict(fields))
    if variant.policy == "fixed_interval":
        interval = variant.fixed_interval_s or 10.0
        updates["gate"] = s.gate.model_copy(update={"enabled": False})
        updates["capture"] = s.capture.model_copy(update={"sample_fps": min(60.0, 1.0 / interval)})
    return s.model_copy(update=updates)


def policy_factory(variant: Variant) -> Callable[[Settings, str], Any]:
    if variant.policy in ("ours", "ours_single_frame"):
        return lambda settings, camera: EscalationPolicy(Thresholds.from_config(settings.escalation))
    if variant.policy == "confidence_only":
        return lambda settings, camera: ConfidenceOnly(settings.escalation.min_confidence)
    return lambda settings, camera: NeverEscalate()


def run_variant(variant: Variant, *, pair: str, base: Settings, labels: LabelSet, clip: ClipLabels, clip_index: int,
                seed: int, out_dir: Path, grid: Sequence[float], clock: Clock | None = None,
                recording: Any | None = None) -> RunRecord:
    """Run one policy variant over one clip through the real `Runner` and score it.

    ``recording`` (`replay.ClipRecording` of this clip): replay its decode instead of decoding
    again, when the settings allow it (`replay.replayable`)."""
    from pipeline.runner import Runner
    from tools.evaluation import replay

    clock = clock or SystemClock()
    settings = variant_settings(base, variant, clip_index, out_dir)
    # A run folder reused from an earlier evaluation must start empty: the sinks append, and the
    # adaptive thresholds' feedback state and the agreement store there would carry into this run.
    if out_dir.is_dir():
        shutil.rmtree(out_dir)
    teacher_slot = variant.policy in TEACHER_SLOT
    backends = make_backends(pair, settings, clip, seed, teacher_slot, clock)
    runner = Runner(settings, backends, clock=clock, policy_factory=policy_factory(variant))
    if recording is not None and replay.replayable(pair, settings, recording):
        runner.run(str(labels.video_path(clip)), source=replay.ReplaySource(recording, settings.camera_id),
                   prepare=replay.stages_for(recording))
    else:
        runner.run(str(labels.video_path(clip)))
    events = read_event_log(out_dir / "events.jsonl")
    costs = run_costs(read_decisions(out_dir / "decisions.jsonl"))
    score = score_clip(clip, detections_from_events(events), grid, settings.evaluation.match_tolerance_s)
    analysed = costs.analysed
    # Images sent in the teacher's slot: one per frame, or the frame and its context (offline sequence teacher).
    slot_images = (backends.student.images if isinstance(backends.student, TeacherAsStudent) else analysed) if teacher_slot else 0
    record = RunRecord(
        policy=variant.policy, variant=variant.name, clip=clip.file, seed=seed, score=score, analysed=analysed,
        student_calls=0 if teacher_slot else analysed,
        teacher_calls=(analysed if teacher_slot else 0) + costs.verdicts,
        teacher_images=(analysed if teacher_slot else 0) + costs.reviewed_images,
        teacher_frames=analysed if teacher_slot else costs.teacher_frames,
        student_ms=0.0 if teacher_slot else costs.slot_ms,
        teacher_ms=(costs.slot_ms if teacher_slot else 0.0) + costs.verdict_ms,
        escalations=costs.escalations, out_dir=str(out_dir),
        model_s=model_seconds(costs, settings.cost, teacher_slot=teacher_slot, slot_images=slot_images),
        referee=referee.score(clip, referee.event_lines(events)),
    )
    (out_dir / "metrics.json").write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
    return record


__all__ = ["DEMO_LABELS", "PAIRS", "POLICIES", "SHARED_CLIPS", "TEACHER_SLOT", "TeacherAsStudent", "Variant", "make_backends",
           "policy_factory", "run_variant", "variant_settings"]
