"""``run_camera.py evaluate``: how much of the teacher's accuracy routing keeps, at what cost.

Every policy runs the real pipeline (`pipeline.runner.Runner`: capture, gate, encode, window,
states, policy, teacher queue) on the same labelled clips with the same student/teacher pair:

=====================  ==========================================================================
student_only           our pipeline, a policy that never escalates (alerts from k-of-n persistence)
teacher_only           the teacher answers every analysed frame (it sits in the student's slot)
ours                   the default `EscalationPolicy` (sequences of up to ``max_keyframes``)
fixed_interval         gate off, one frame every N s straight to the teacher (N matched to ours'
                       teacher images on the clip unless ``--fixed-interval-s``)
confidence_only        any single frame below ``min_confidence`` goes to the teacher alone
ours_single_frame      ours, but each escalation carries one keyframe (``max_keyframes = 1``)
=====================  ==========================================================================

Metrics (per seed pooled over clips, then mean ± sd over seeds):

* **event recall / precision** — a labelled event is found when a detection of its type
  overlaps it widened by ``match_tolerance_s`` each side.  Detections are alerts that the
  teacher did not dismiss, and for person/vehicle the activity events; ``motion`` activity
  has no labelled counterpart and is not counted.  Precision = detections that overlap a
  labelled event of their type / detections.
* **safety recall**, and **missed vs teacher-only**: labelled safety events that the
  teacher-only run found and this policy did not (same clip, same seed).
* **frame accuracy** — on the standard sampling grid (every 1 / ``capture.sample_fps`` s,
  the frames the pipeline samples) inside labelled intervals (events or quiet), leaving out
  ``match_tolerance_s`` either side of each safety event's start and end: the set of safety
  types the system is alerting on at that instant (open alerts — a dismissed one until its
  dismissal) equals the labelled set.  Every policy is scored at the same instants, whatever
  it analysed.  Activity (person/vehicle) is scored by event recall/precision only: activity
  events are not routed to the teacher.
* **time to alert** — for found safety events: start of the first matching detection minus
  the event's start (0 when it was already open).
* **calls, images, share, compute** — student calls; teacher calls (reviews, or analysed
  frames when the teacher sits in the student's slot); teacher images (keyframes sent, a
  frame in two sequences counted twice; in the slot, one per analysed frame); teacher share
  = distinct frames the teacher saw / frames the standard pipeline analyses on that clip
  (the student-only run's analysed frames); model compute = summed latencies: measured for
  offline/ollama, the configured figures for simulated.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.baselines import ConfidenceOnly, NeverEscalate
from pipeline.clock import Clock, SystemClock
from pipeline.config import Settings
from pipeline.errors import ConfigError, UsageError
from pipeline.incidents.escalation import EscalationPolicy, Thresholds
from tools import referee
from tools.labels import ACTIVITY_TYPES, ClipLabels, LabelledEvent, LabelSet, is_safety_type
from tools.referee import RefereeScore
from pipeline.records import EncodedFrame, Escalation, FrameReport, Priority, Verdict, VerdictKind

log = logging.getLogger("edgewatch.evaluation")

ROOT = Path(__file__).resolve().parent.parent
DEMO_LABELS = ROOT / "fixtures" / "demo" / "demo.labels.json"
SHARED_CLIPS = ROOT.parent / "shared" / "fixtures" / "clips"

POLICIES: tuple[str, ...] = ("student_only", "teacher_only", "ours", "ours_single_frame", "confidence_only", "fixed_interval")
#: Policies in which the teacher answers frames in the student's slot.
TEACHER_SLOT = frozenset({"teacher_only", "fixed_interval"})
PAIRS = ("simulated", "offline", "ollama")
SWEEPS = ("none", "thresholds", "models", "all")
#: Each policy family over its own knob (``--sweep thresholds``): cost–quality curves.
SWEEP_MIN_CONFIDENCE = (0.5, 0.6, 0.8, 0.9)
SWEEP_PERSISTENCE = ((1, 3), (3, 4))
SWEEP_MAX_KEYFRAMES = (1, 3)
SWEEP_AUDIT_EVERY = (30, 480)
SWEEP_SAMPLE_FPS = (1.0, 0.5)
SWEEP_FIXED_INTERVAL_S = (1.0, 2.0, 5.0, 10.0, 20.0)
#: Confidence settings the simulated pair is run at by default (``--informativeness``).
INFORMATIVENESS = (0.0, 0.5)
SWEEP_STUDENT_ACCURACY = (0.55, 0.68, 0.8)
SWEEP_INFORMATIVENESS = (0.0, 0.5, 1.0)
#: Frames of context the teacher-in-the-student's-slot adapter shows with each frame.
TEACHER_SLOT_CONTEXT = 2


# --------------------------------------------------------------------------------------
# The teacher answering single frames (teacher-only, fixed interval)
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# Detections and matching
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detection:
    """One event of the run's event log, folded over its lines (final type and review)."""

    id: str
    type: str
    severity: str
    start: float
    end: float
    """Source time the event ended (inf when still open at the end of the run)."""
    review: str = "not_reviewed"

    @property
    def dismissed(self) -> bool:
        return self.review == "dismissed"

    @property
    def counts(self) -> bool:
        """Counts as a detection: an alert not dismissed, or person/vehicle activity."""
        if self.severity == "alert":
            return not self.dismissed
        return self.type in ACTIVITY_TYPES

    @property
    def shown(self) -> bool:
        """Part of what the system reports at an instant (a dismissed alert until its dismissal)."""
        return self.severity == "alert" or self.type in ACTIVITY_TYPES

    def overlaps(self, event: LabelledEvent, tolerance_s: float) -> bool:
        return self.type == event.type and self.start <= event.end + tolerance_s and self.end >= event.start - tolerance_s


def detections_from_events(lines: Iterable[dict[str, Any]]) -> list[Detection]:
    """Fold event-log lines (new/update/end with one id) into detections."""
    folded: dict[str, dict[str, Any]] = {}
    for line in lines:
        eid = line.get("id")
        if not isinstance(eid, str):
            continue
        d = folded.setdefault(eid, {"start": line.get("start"), "end": None})
        d["type"] = line.get("type")
        d["severity"] = line.get("severity")
        d["review"] = line.get("review", "not_reviewed")
        if line.get("phase") == "end" and line.get("end") is not None:
            d["end"] = line["end"]
    out = []
    for eid, d in folded.items():
        if d["start"] is None or d["type"] is None:
            continue
        end = math.inf if d["end"] is None else float(d["end"])
        out.append(Detection(eid, str(d["type"]), str(d["severity"]), float(d["start"]), end, str(d["review"])))
    return sorted(out, key=lambda x: (x.start, x.id))


@dataclass(frozen=True)
class MatchResult:
    found: dict[int, Detection]
    """Index of a labelled event → its earliest matching detection."""
    true_detections: frozenset[str]
    """Ids of counted detections that overlap a labelled event of their type."""
    counted: int


def match_events(events: Sequence[LabelledEvent], detections: Sequence[Detection], tolerance_s: float) -> MatchResult:
    counted = [d for d in detections if d.counts]
    found: dict[int, Detection] = {}
    true_ids: set[str] = set()
    for i, ev in enumerate(events):
        hits = [d for d in counted if d.overlaps(ev, tolerance_s)]
        if hits:
            found[i] = min(hits, key=lambda d: (d.start, d.id))
            true_ids.update(d.id for d in hits)
    return MatchResult(found=found, true_detections=frozenset(true_ids), counted=len(counted))


def alerted_types(detections: Sequence[Detection], t: float) -> frozenset[str]:
    """The safety types the system is alerting on at instant ``t`` (a dismissed alert until its dismissal)."""
    return frozenset(d.type for d in detections if d.severity == "alert" and is_safety_type(d.type) and d.start <= t < d.end)


def safety_truth(clip: ClipLabels, t: float) -> frozenset[str]:
    return frozenset(x for x in clip.truth_at(t) if is_safety_type(x))


def sample_grid(clip: ClipLabels, sample_fps: float, margin_s: float = 0.0) -> list[float]:
    """The instants frame accuracy is scored at: the sampling grid inside labelled intervals,
    leaving out ``margin_s`` either side of each safety event's start and end (label times are
    approximate, and every alert is raised and ended a little after the scene changes)."""
    step = 1.0 / sample_fps
    n = int(math.floor(clip.duration_s / step + 1e-9))
    edges = [x for e in clip.events if e.safety for x in (e.start, e.end)]
    return [round(k * step, 6) for k in range(n + 1)
            if clip.is_labelled(k * step) and all(abs(k * step - x) > margin_s for x in edges)]


@dataclass
class ClipScore:
    """Counts for one policy on one clip (summed over clips before ratios are taken)."""

    events: int = 0
    found: int = 0
    safety_events: int = 0
    safety_found: int = 0
    detections: int = 0
    true_detections: int = 0
    frames: int = 0
    frames_correct: int = 0
    safety_delays: dict[int, float] = field(default_factory=dict)
    """Safety events found: index into the clip's events → time to alert (s)."""
    by_type: dict[str, list[int]] = field(default_factory=dict)
    """Type → [labelled events, found, counted detections, detections overlapping a labelled event of the type]."""

    @property
    def found_safety(self) -> set[int]:
        return set(self.safety_delays)

    @property
    def alert_delays(self) -> list[float]:
        return list(self.safety_delays.values())


def score_clip(clip: ClipLabels, detections: Sequence[Detection], grid: Sequence[float], tolerance_s: float) -> ClipScore:
    m = match_events(clip.events, detections, tolerance_s)
    s = ClipScore()
    s.events = len(clip.events)
    s.found = len(m.found)
    for i, ev in enumerate(clip.events):
        if ev.safety:
            s.safety_events += 1
            if i in m.found:
                s.safety_found += 1
                s.safety_delays[i] = max(0.0, m.found[i].start - ev.start)
    s.detections = m.counted
    s.true_detections = len(m.true_detections)
    for i, ev in enumerate(clip.events):
        row = s.by_type.setdefault(ev.type, [0, 0, 0, 0])
        row[0] += 1
        row[1] += int(i in m.found)
    for d in detections:
        if d.counts:
            row = s.by_type.setdefault(d.type, [0, 0, 0, 0])
            row[2] += 1
            row[3] += int(d.id in m.true_detections)
    for t in grid:
        s.frames += 1
        s.frames_correct += int(alerted_types(detections, t) == safety_truth(clip, t))
    return s


# --------------------------------------------------------------------------------------
# Running policies
# --------------------------------------------------------------------------------------


@dataclass
class RunRecord:
    """One policy on one clip with one seed: its score and its costs."""

    policy: str
    variant: str
    clip: str
    seed: int
    score: ClipScore
    analysed: int
    student_calls: int
    teacher_calls: int
    teacher_images: int
    teacher_frames: int
    """Distinct analysed frames the teacher saw."""
    student_ms: float
    teacher_ms: float
    escalations: int
    out_dir: str
    reference_frames: int = 0
    """Frames the standard pipeline analyses on this clip (the student-only run's)."""
    model_s: float = 0.0
    """Model-seconds charged by the cost model (`Settings.cost`): calls, images, output tokens."""
    referee: RefereeScore = field(default_factory=RefereeScore)
    """The event log scored by ``real_clips.py``'s rules (`tools.referee`)."""

    @property
    def teacher_share(self) -> float:
        return self.teacher_frames / self.reference_frames if self.reference_frames else float("nan")

    def to_json(self) -> dict[str, Any]:
        s = self.score
        return {"policy": self.policy, "variant": self.variant, "clip": self.clip, "seed": self.seed,
                "events": s.events, "found": s.found, "safety_events": s.safety_events, "safety_found": s.safety_found,
                "detections": s.detections, "true_detections": s.true_detections, "frames": s.frames,
                "frames_correct": s.frames_correct, "alert_delays_s": [round(d, 3) for d in s.alert_delays],
                "analysed": self.analysed, "student_calls": self.student_calls, "teacher_calls": self.teacher_calls,
                "teacher_images": self.teacher_images, "teacher_frames": self.teacher_frames, "reference_frames": self.reference_frames,
                "teacher_share": None if math.isnan(self.teacher_share) else round(self.teacher_share, 4),
                "student_ms": round(self.student_ms, 1), "teacher_ms": round(self.teacher_ms, 1),
                "model_s": round(self.model_s, 3), "by_type": s.by_type, "referee": self.referee.to_json(),
                "escalations": self.escalations, "out_dir": self.out_dir}


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


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s: skipping a line that is not JSON", path)
    return out


BackendFactory = Callable[[Settings, ClipLabels, int, bool], Any]


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
                seed: int, out_dir: Path, grid: Sequence[float], clock: Clock | None = None) -> RunRecord:
    """Run one policy variant over one clip through the real `Runner` and score it."""
    from pipeline.runner import Runner

    clock = clock or SystemClock()
    settings = variant_settings(base, variant, clip_index, out_dir)
    # The sinks append: a run folder reused from an earlier evaluation must start empty.
    for stale in ("events.jsonl", "decisions.jsonl", "summary.json", "metrics.json"):
        (out_dir / stale).unlink(missing_ok=True)
    teacher_slot = variant.policy in TEACHER_SLOT
    backends = make_backends(pair, settings, clip, seed, teacher_slot, clock)
    Runner(settings, backends, clock=clock, policy_factory=policy_factory(variant)).run(str(labels.video_path(clip)))
    events = _read_jsonl(out_dir / "events.jsonl")
    decisions = _read_jsonl(out_dir / "decisions.jsonl")
    detections = detections_from_events(events)
    score = score_clip(clip, detections, grid, settings.evaluation.match_tolerance_s)
    slot_ms = sum(float(d.get("student", {}).get("latency_ms", 0.0)) for d in decisions if d.get("kind") == "decision")
    analysed = sum(1 for d in decisions if d.get("kind") == "decision")
    keyframes = {d["id"]: len(d.get("keyframes", [])) for d in decisions if d.get("kind") == "escalation"}
    keyframe_times = {d["id"]: d.get("keyframes", []) for d in decisions if d.get("kind") == "escalation"}
    verdicts = [d for d in decisions if d.get("kind") == "verdict"]
    verdict_ms = sum(float(v.get("latency_ms", 0.0)) for v in verdicts)
    reviewed_images = sum(keyframes.get(v.get("escalation_id"), 0) for v in verdicts)
    # Distinct frames the teacher looked at (sequences overlap: a frame seen twice counts once).
    seen_frames = {round(float(t), 3) for v in verdicts for t in keyframe_times.get(v.get("escalation_id"), [])}
    # Images sent in the teacher's slot: one per frame, or the frame and its context (offline sequence teacher).
    slot_images = (backends.student.images if isinstance(backends.student, TeacherAsStudent) else analysed) if teacher_slot else 0
    slot_tokens = sum(float(d.get("student", {}).get("timings", {}).get("eval_count", 0.0)) for d in decisions
                      if d.get("kind") == "decision")
    verdict_tokens = sum(float(v.get("timings", {}).get("eval_count", 0.0)) for v in verdicts)
    cost = settings.cost
    model_s = cost.teacher_s(len(verdicts), reviewed_images, verdict_tokens) + (
        cost.teacher_s(analysed, slot_images, slot_tokens) if teacher_slot else cost.student_s(analysed, analysed, slot_tokens))
    record = RunRecord(
        policy=variant.policy, variant=variant.name, clip=clip.file, seed=seed, score=score, analysed=analysed,
        student_calls=0 if teacher_slot else analysed,
        teacher_calls=(analysed if teacher_slot else 0) + len(verdicts),
        teacher_images=(analysed if teacher_slot else 0) + reviewed_images,
        teacher_frames=analysed if teacher_slot else len(seen_frames),
        student_ms=0.0 if teacher_slot else slot_ms,
        teacher_ms=(slot_ms if teacher_slot else 0.0) + verdict_ms,
        escalations=len(keyframes), out_dir=str(out_dir), model_s=model_s,
        referee=referee.score(clip, referee.event_lines(events)),
    )
    (out_dir / "metrics.json").write_text(json.dumps(record.to_json(), indent=2) + "\n", encoding="utf-8")
    return record


# --------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def pooled_metrics(records: Sequence[RunRecord], teacher_only: Sequence[RunRecord] = ()) -> dict[str, float]:
    """Metrics of one policy variant for one seed, pooled over clips."""
    ev = sum(r.score.events for r in records)
    delays = [d for r in records for d in r.score.alert_delays]
    ref = sum(r.reference_frames for r in records)
    by_clip = {r.clip: r for r in teacher_only}
    missed = 0
    for r in records:
        t = by_clip.get(r.clip)
        if t is not None:
            missed += len(t.score.found_safety - r.score.found_safety)
    return {
        "event_f1": weighted_event_f1(records),
        "event_f1_per_type": per_type_event_f1(records),
        "event_recall": _ratio(sum(r.score.found for r in records), ev),
        "precision": _ratio(sum(r.score.true_detections for r in records), sum(r.score.detections for r in records)),
        "safety_recall": _ratio(sum(r.score.safety_found for r in records), sum(r.score.safety_events for r in records)),
        "missed_vs_teacher_only": float(missed) if teacher_only else float("nan"),
        "frame_accuracy": _ratio(sum(r.score.frames_correct for r in records), sum(r.score.frames for r in records)),
        "time_to_alert_s": statistics.fmean(delays) if delays else float("nan"),
        "student_calls": float(sum(r.student_calls for r in records)),
        "teacher_calls": float(sum(r.teacher_calls for r in records)),
        "teacher_images": float(sum(r.teacher_images for r in records)),
        "teacher_share": _ratio(sum(r.teacher_frames for r in records), ref),
        "compute_s": sum(r.student_ms + r.teacher_ms for r in records) / 1000.0,
        "model_seconds": sum(r.model_s for r in records),
        "safety_found": float(sum(r.score.safety_found for r in records)),
        "tamper_recall": _ratio(sum(r.score.by_type.get("tamper", [0, 0])[1] for r in records),
                                sum(r.score.by_type.get("tamper", [0, 0])[0] for r in records)),
    }


#: Weight of a safety event, and of a safety detection, in the event F1 (person/vehicle weigh 1).
SAFETY_F1_WEIGHT = 3.0


def _type_rows(records: Sequence[RunRecord]) -> dict[str, list[int]]:
    """Type → [labelled events, found, counted detections, true detections], pooled over clips."""
    rows: dict[str, list[int]] = {}
    for r in records:
        for t, counts in r.score.by_type.items():
            acc = rows.setdefault(t, [0, 0, 0, 0])
            for i, c in enumerate(counts):
                acc[i] += c
    return rows


def _f1(recall: float, precision: float) -> float:
    return 2 * recall * precision / (recall + precision) if recall + precision else 0.0


def weighted_event_f1(records: Sequence[RunRecord]) -> float:
    """Event F1 with every safety event and every safety detection weighing `SAFETY_F1_WEIGHT`:
    recall = weighted share of labelled events found (matched by type), precision = weighted share
    of counted detections that overlap a labelled event of their type.  A false alert of a type no
    clip has (a phantom) weighs like any other false safety alert."""
    w = lambda t: SAFETY_F1_WEIGHT if is_safety_type(t) else 1.0  # noqa: E731
    rows = _type_rows(records).items()
    events, found = sum(w(t) * c[0] for t, c in rows), sum(w(t) * c[1] for t, c in rows)
    dets, true = sum(w(t) * c[2] for t, c in rows), sum(w(t) * c[3] for t, c in rows)
    if not events and not dets:
        return float("nan")
    return _f1(found / events if events else 0.0, true / dets if dets else 0.0)


def per_type_event_f1(records: Sequence[RunRecord]) -> float:
    """The per-type F1 averaged over types (safety types weighted `SAFETY_F1_WEIGHT`), a type only
    ever detected scoring 0 — kept in report.json for comparison: one phantom alert of a type
    adds a whole zero-F1 type to that seed, so it swings by ~15 points from seed to seed."""
    total_w, total = 0.0, 0.0
    for t, (events, found, dets, true) in _type_rows(records).items():
        weight = SAFETY_F1_WEIGHT if is_safety_type(t) else 1.0
        total_w += weight
        total += weight * _f1(found / events if events else 0.0, true / dets if dets else 0.0)
    return total / total_w if total_w else float("nan")


def spread(values: Sequence[float]) -> dict[str, float | None]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"mean": None, "sd": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "min": min(vals), "max": max(vals), "n": len(vals)}


def aggregate(records: Sequence[RunRecord], seeds: Sequence[int]) -> dict[str, dict[str, Any]]:
    """Per variant: each metric's spread over seeds (plus accuracy relative to teacher-only)."""
    out: dict[str, dict[str, Any]] = {}
    variants = list(dict.fromkeys(r.variant for r in records))
    for name in variants:
        per_seed: dict[str, list[float]] = {}
        for seed in seeds:
            mine = [r for r in records if r.variant == name and r.seed == seed]
            if not mine:
                continue
            tonly = [r for r in records if r.variant == "teacher_only" and r.seed == seed]
            m = pooled_metrics(mine, tonly)
            if tonly:
                m["accuracy_vs_teacher_only"] = _ratio(m["frame_accuracy"], pooled_metrics(tonly)["frame_accuracy"])
            for k, v in m.items():
                per_seed.setdefault(k, []).append(v)
        policy = next(r.policy for r in records if r.variant == name)
        setting = name.split("@", 1)[1] if "@" in name else "default"
        delays = {f"{r.clip}|{r.seed}|{i}": d for r in records if r.variant == name for i, d in r.score.safety_delays.items()}
        out[name] = {"policy": policy, "setting": setting, **{k: spread(v) for k, v in per_seed.items()},
                     "safety_found_by_seed": per_seed.get("safety_found", []), "alert_delays": delays}
    return out


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("event_f1", "event F1 (safety 3x)", "pct"),
    ("safety_recall", "safety recall", "pct"),
    ("time_to_alert_s", "time to alert (s)", "sec"),
    ("model_seconds", "model-seconds", "sec"),
    ("event_recall", "event recall", "pct"),
    ("precision", "precision", "pct"),
    ("missed_vs_teacher_only", "safety missed vs teacher-only", "num"),
    ("frame_accuracy", "frame accuracy (secondary)", "pct"),
    ("student_calls", "student calls", "num"),
    ("teacher_calls", "teacher calls", "num"),
    ("teacher_images", "teacher images", "num"),
    ("teacher_share", "teacher share", "pct"),
    ("compute_s", "latency sum (s)", "sec"),
)


def _fmt(cell: dict[str, Any] | None, kind: str) -> str:
    if not cell or cell.get("mean") is None:
        return "n/a"
    mean, sd, n = cell["mean"], cell["sd"], cell["n"]
    if kind == "pct":
        text = f"{mean * 100:.1f}%"
        return text + (f" ± {sd * 100:.1f}" if n > 1 else "")
    if kind == "sec":
        text = f"{mean:.2f}" if mean < 100 else f"{mean:.0f}"
        return text + (f" ± {sd:.2f}" if n > 1 and mean < 100 else (f" ± {sd:.0f}" if n > 1 else ""))
    text = f"{mean:.1f}" if mean != int(mean) or n > 1 else f"{int(mean)}"
    return text + (f" ± {sd:.1f}" if n > 1 else "")


def markdown_table(agg: dict[str, dict[str, Any]], variants: Sequence[str]) -> str:
    head = "| policy | " + " | ".join(label for _, label, _ in _COLUMNS) + " |"
    sep = "|---|" + "|".join("---:" for _ in _COLUMNS) + "|"
    rows = [head, sep]
    for name in variants:
        if name not in agg:
            continue
        rows.append(f"| {name} | " + " | ".join(_fmt(agg[name].get(key), kind) for key, _, kind in _COLUMNS) + " |")
    return "\n".join(rows)


def _mean(agg: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
    cell = agg.get(name, {}).get(key)
    return None if not isinstance(cell, dict) else cell.get("mean")


def paired_time_to_alert(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float] | None:
    """Mean time to alert of ``a`` and of ``b`` over the safety events both found (same clip, seed
    and event), or None when they share none.  Each policy's own mean is over the events *it*
    found, so a policy that also finds the hard, late ones would look slower than one that
    misses them: alerting "no later" is judged on the same events."""
    da, db = a.get("alert_delays") or {}, b.get("alert_delays") or {}
    common = da.keys() & db.keys()
    if not common:
        return None
    return statistics.fmean(da[k] for k in common), statistics.fmean(db[k] for k in common)


def dominated(point: dict[str, Any], by: dict[str, Any]) -> bool:
    """``by`` costs no more model-seconds, scores no lower event F1 and alerts no later (on the
    safety events both found, `paired_time_to_alert`)."""
    m = lambda v, k: v.get(k, {}).get("mean")  # noqa: E731
    cost, f1, bcost, bf1 = m(point, "model_seconds"), m(point, "event_f1"), m(by, "model_seconds"), m(by, "event_f1")
    if None in (cost, f1, bcost, bf1):
        return False
    paired = paired_time_to_alert(point, by)
    later = paired is not None and paired[1] > paired[0] + 1e-9
    return bcost <= cost + 1e-9 and bf1 >= f1 - 1e-9 and not later


def target_check(agg: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 17's targets, stated against what was measured (means over seeds)."""
    lines = []
    ours_seeds, alone_seeds = agg.get("ours", {}).get("safety_found_by_seed"), agg.get("student_only", {}).get("safety_found_by_seed")
    if ours_seeds and alone_seeds:
        ok = all(o >= a for o, a in zip(ours_seeds, alone_seeds))
        lines.append(f"- safety events found per seed, ours vs student only: {[int(x) for x in ours_seeds]} vs "
                     f"{[int(x) for x in alone_seeds]} (target: ours >= student only on every seed): {'met' if ok else 'NOT met'}")
    ours_points = {n: v for n, v in agg.items() if v.get("policy") in ("ours", "ours_single_frame")}
    for name, v in agg.items():
        if v.get("policy") not in ("fixed_interval", "confidence_only"):
            continue
        by = next((o for o, ov in ours_points.items() if dominated(v, ov)), None)
        lines.append(f"- {name} ({_fmt(v.get('model_seconds'), 'sec')} model-s, F1 {_fmt(v.get('event_f1'), 'pct')}): "
                     + (f"dominated by {by}" if by else "NOT dominated by any ours point"))
    t_cost, t_f1, t_safety = (_mean(agg, "teacher_only", k) for k in ("model_seconds", "event_f1", "safety_recall"))
    if t_cost and t_f1 is not None:
        cheap = [(n, v) for n, v in ours_points.items() if (_mean(agg, n, "model_seconds") or math.inf) <= 0.2 * t_cost]
        if cheap:
            name, best = max(cheap, key=lambda nv: _mean(agg, nv[0], "event_f1") or 0.0)
            f1, safety = _mean(agg, name, "event_f1") or 0.0, _mean(agg, name, "safety_recall") or 0.0
            ok = f1 >= 0.97 * t_f1 and (t_safety is None or safety >= t_safety - 1e-9)
            lines.append(f"- best ours point at <= 20% of teacher-only model-seconds: {name} "
                         f"({(_mean(agg, name, 'model_seconds') or 0) / t_cost * 100:.1f}% of the cost) keeps "
                         f"{f1 / t_f1 * 100 if t_f1 else float('nan'):.1f}% of teacher-only event F1 (target >= 97%), safety recall "
                         f"{safety * 100:.1f}% vs {(t_safety or 0) * 100:.1f}%: {'met' if ok else 'NOT met'}")
        else:
            lines.append("- no ours point at <= 20% of teacher-only model-seconds: NOT met")
    for name in ("teacher_only", "ours"):
        tamper = _mean(agg, name, "tamper_recall")
        if tamper is not None:
            lines.append(f"- {name} finds {tamper * 100:.1f}% of tamper/scene-cut events")
    return lines


# --------------------------------------------------------------------------------------
# Plots (matplotlib is optional)
# --------------------------------------------------------------------------------------


def write_plots(out: Path, agg: dict[str, dict[str, Any]], records: Sequence[RunRecord], labels: LabelSet,
                clips: Sequence[ClipLabels], backend: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("plots skipped: matplotlib is not installed (pip install 'edgewatch[plots]')")
        return []
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = [cost_quality_plot(plt, plots / "cost_quality.png", agg, backend)]
    seed = records[0].seed if records else 0
    for clip in clips:
        run = next((r for r in records if r.variant == "ours" and r.clip == clip.file and r.seed == seed), None)
        if run is None:
            continue
        path = plots / f"timeline_{Path(clip.file).stem}.png"
        _timeline(plt, path, clip, Path(run.out_dir), backend, seed)
        written.append(str(path))
    return written


def cost_quality_plot(plt: Any, path: Path, agg: dict[str, dict[str, Any]], backend: str) -> str:
    """Event F1 and time to alert against model-seconds, one curve per policy family over its knob."""
    fig, (ax_f1, ax_tta) = plt.subplots(1, 2, figsize=(12, 5))
    for policy in POLICIES:
        pts = sorted((v["model_seconds"]["mean"], v["event_f1"]["mean"], (v.get("time_to_alert_s") or {}).get("mean"), v["setting"])
                     for v in agg.values() if v["policy"] == policy and v.get("model_seconds", {}).get("mean") is not None
                     and v.get("event_f1", {}).get("mean") is not None)
        if not pts:
            continue
        xs = [p[0] for p in pts]
        style = "-o" if len(pts) > 1 else "o"
        ax_f1.plot(xs, [p[1] for p in pts], style, label=policy)
        ax_tta.plot([p[0] for p in pts if p[2] is not None], [p[2] for p in pts if p[2] is not None], style, label=policy)
        for x, y, _, setting in pts:
            if setting != "default":
                ax_f1.annotate(setting, (x, y), fontsize=6, alpha=0.7)
    for ax, label in ((ax_f1, "event F1 (per type, safety 3x)"), (ax_tta, "time to alert (s)")):
        ax.set_xscale("log")
        ax.set_xlabel("model-seconds (cost model)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"cost–quality ({backend} pair)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _timeline(plt: Any, path: Path, clip: ClipLabels, run_dir: Path, backend: str, seed: int) -> None:
    decisions = _read_jsonl(run_dir / "decisions.jsonl")
    detections = detections_from_events(_read_jsonl(run_dir / "events.jsonl"))
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(11, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    types = sorted({e.type for e in clip.events} | {d.type for d in detections if d.shown})
    row = {t: i for i, t in enumerate(types)}
    for e in clip.events:
        ax.broken_barh([(e.start, e.end - e.start)], (row[e.type] - 0.4, 0.35), color="tab:green", alpha=0.6)
    for d in clip.decoys:
        if d.type in row:
            ax.broken_barh([(d.start, d.end - d.start)], (row[d.type] - 0.4, 0.35), color="tab:olive", alpha=0.3, hatch="//")
    for d in detections:
        if d.shown:
            end = min(d.end, clip.duration_s)
            colour = "tab:gray" if d.dismissed else ("tab:red" if d.severity == "alert" else "tab:blue")
            ax.broken_barh([(d.start, max(0.05, end - d.start))], (row[d.type] + 0.05, 0.35), color=colour, alpha=0.7)
    reports = [d for d in decisions if d.get("kind") == "decision"]
    for r in reports:
        for f in r.get("student", {}).get("safetyFlags", []):
            if f in row:
                ax.plot(r["t"], row[f], "k|", markersize=6)
    for d in decisions:
        if d.get("kind") == "escalation":
            ax.axvline(d["t"], color="tab:orange", alpha=0.5, lw=1)
        elif d.get("kind") == "verdict":
            ax.plot(d["t"], -0.8, "v", color="tab:green" if d.get("verdict") == "confirmed" else "tab:gray")
        elif d.get("kind") == "transition":
            ax.text(d["t"], len(types) - 0.3, d.get("to", ""), fontsize=6, rotation=90, va="bottom")
    ax.set_yticks(range(len(types)), types)
    ax.set_ylim(-1.2, len(types) + 0.8)
    ax.set_title(f"{clip.file} — ours, {backend} pair, seed {seed}: labels (green), alerts (red), activity (blue), "
                 "dismissed (grey), student flags (|), escalations (orange), verdicts (v)", fontsize=8)
    axc.plot([r["t"] for r in reports], [r.get("student", {}).get("confidence", 0) for r in reports], ".-", ms=3)
    axc.set_ylabel("student conf.")
    axc.set_xlabel("source seconds")
    axc.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# The harness
# --------------------------------------------------------------------------------------


@dataclass
class EvaluationBlock:
    """The runs at one confidence setting (None: the pair's own confidence)."""

    informativeness: float | None
    records: list[RunRecord]
    aggregates: dict[str, dict[str, Any]]
    table: str
    referee: dict[str, RefereeScore]


@dataclass
class EvaluationResult:
    records: list[RunRecord]
    aggregates: dict[str, dict[str, Any]]
    model_sweep: list[dict[str, Any]]
    skipped: list[str]
    variants: list[str]
    report_path: Path
    json_path: Path
    table: str
    blocks: list[EvaluationBlock] = field(default_factory=list)


def _variants_for(policies: Sequence[str], sweep: str) -> list[Variant]:
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
            out += [Variant("ours", f"ours@sample_fps={f:g}", overrides={"capture": {"sample_fps": f}}) for f in SWEEP_SAMPLE_FPS]
        if "confidence_only" in policies:
            out += [Variant("confidence_only", f"confidence_only@min_conf={c:g}", min_confidence=c) for c in SWEEP_MIN_CONFIDENCE]
        if "fixed_interval" in policies:
            out += [Variant("fixed_interval", f"fixed_interval@{n:g}s", fixed_interval_s=n) for n in SWEEP_FIXED_INTERVAL_S]
    return out


def evaluate(*, labels: LabelSet, pair: str, seeds: Sequence[int], out: Path, base: Settings,
             policies: Sequence[str] = POLICIES, sweep: str = "none", fixed_interval_s: float | None = None,
             only: Sequence[str] = (), progress: Callable[[str], None] | None = None,
             informativeness: Sequence[float] = ()) -> EvaluationResult:
    """Run every policy variant on every clip for every seed, score, aggregate and write the report."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise UsageError(f"unknown policy {unknown[0]!r} (choose from {', '.join(POLICIES)})")
    if sweep not in SWEEPS:
        raise UsageError(f"unknown sweep {sweep!r} (choose {', '.join(SWEEPS)})")
    if pair != "simulated" and sweep in ("models", "all"):
        raise UsageError("--sweep models varies the simulated models' parameters: use it with --pair simulated")
    say = progress or (lambda msg: log.info("%s", msg))
    out.mkdir(parents=True, exist_ok=True)
    clips, skipped = [], []
    for clip in labels.clips:
        if only and not any(o in clip.file for o in only):
            continue
        if not labels.video_path(clip).is_file():
            skipped.append(f"{clip.file}: video not found next to {labels.path.name}")
            log.warning("skipping %s: no video at %s", clip.file, labels.video_path(clip))
            continue
        clips.append(clip)
    if not clips:
        raise UsageError(f"no clip of {labels.path} has its video file beside it" + (" (after --only)" if only else ""))
    # Student-only always runs: its analysed frames are every policy's teacher-share denominator.
    run_policies = list(dict.fromkeys(["student_only", *policies]))
    if "fixed_interval" in run_policies and fixed_interval_s is None and "ours" not in run_policies:
        run_policies.insert(run_policies.index("fixed_interval"), "ours")
    variants = _variants_for(run_policies, sweep)
    # Fixed interval (budget-matched to ours) needs ours first.
    variants.sort(key=lambda v: v.policy == "fixed_interval")
    shown = [v.name for v in variants if v.policy in policies or v.policy == "student_only"]
    order = [n for n in POLICIES if n in shown] + [n for n in shown if n not in POLICIES]
    # The simulated pair runs at each confidence setting; the others have their own confidence.
    settings_by_inf: list[tuple[float | None, Settings]] = [(None, base)]
    if pair == "simulated" and informativeness:
        settings_by_inf = [(inf, base.model_copy(update={"evaluation": base.evaluation.model_copy(
            update={"confidence_informativeness": inf})})) for inf in informativeness]
    blocks: list[EvaluationBlock] = []
    for inf, settings in settings_by_inf:
        where = out if len(settings_by_inf) == 1 else out / f"informativeness{inf:g}"
        say(f"informativeness {inf:g}" if inf is not None else f"{pair} pair")
        records = _run_all(variants, labels=labels, clips=clips, pair=pair, seeds=seeds, out=where / "runs", base=settings,
                           fixed_interval_s=fixed_interval_s, say=say)
        agg = aggregate(records, seeds)
        blocks.append(EvaluationBlock(inf, records, agg, markdown_table(agg, order), referee_scores(records, order)))
    model_sweep = []
    if sweep in ("models", "all"):
        model_sweep = _model_sweep(labels=labels, clips=clips, seeds=seeds, out=out / "sweep", base=base,
                                   policies=[p for p in POLICIES if p in run_policies], fixed_interval_s=fixed_interval_s, say=say)
    plots: list[str] = []
    for block in blocks:
        where = out if len(blocks) == 1 else out / f"informativeness{block.informativeness:g}"
        plots += write_plots(where, block.aggregates, block.records, labels, clips, pair)
    report = _report_markdown(pair=pair, labels=labels, clips=clips, seeds=seeds, base=base, blocks=blocks,
                              skipped=skipped, model_sweep=model_sweep, plots=plots, out=out)
    report_path = out / "report.md"
    report_path.write_text(report, encoding="utf-8")
    json_path = out / "report.json"
    records = [r for b in blocks for r in b.records]
    json_path.write_text(json.dumps({
        "pair": pair, "labels": str(labels.path), "clips": [c.file for c in clips], "skipped": skipped,
        "seeds": list(seeds), "evaluation_settings": base.evaluation.model_dump(), "cost_settings": base.cost.model_dump(),
        "escalation_settings": base.escalation.model_dump(), "sample_fps": base.capture.sample_fps,
        "points": cost_quality_points(blocks, base),
        "aggregates": blocks[0].aggregates,
        "by_informativeness": {f"{b.informativeness:g}": b.aggregates for b in blocks if b.informativeness is not None},
        "model_sweep": model_sweep,
        "runs": [{**r.to_json(), "informativeness": b.informativeness} for b in blocks for r in b.records], "plots": plots,
    }, indent=2, default=_json_default) + "\n", encoding="utf-8")
    return EvaluationResult(records, blocks[0].aggregates, model_sweep, skipped, shown, report_path, json_path,
                            "\n\n".join(b.table for b in blocks), blocks)


def cost_quality_points(blocks: Sequence["EvaluationBlock"], base: Settings) -> list[dict[str, Any]]:
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


def referee_scores(records: Sequence[RunRecord], order: Sequence[str]) -> dict[str, RefereeScore]:
    """Per variant, the referee's counts summed over clips (and seeds)."""
    out: dict[str, RefereeScore] = {}
    for name in order:
        total = RefereeScore()
        for r in records:
            if r.variant == name:
                total.add(r.referee)
        if any(r.variant == name for r in records):
            out[name] = total
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(type(value).__name__)


def _run_all(variants: Sequence[Variant], *, labels: LabelSet, clips: Sequence[ClipLabels], pair: str,
             seeds: Sequence[int], out: Path, base: Settings, fixed_interval_s: float | None,
             say: Callable[[str], None]) -> list[RunRecord]:
    records: list[RunRecord] = []
    for seed in seeds:
        for ci, clip in enumerate(labels.clips):
            if clip not in clips:
                continue
            grid = sample_grid(clip, base.capture.sample_fps, base.evaluation.match_tolerance_s)
            mine: list[RunRecord] = []
            for variant in variants:
                if variant.policy == "fixed_interval" and variant.fixed_interval_s is None:
                    variant = Variant(variant.policy, variant.name, fixed_interval_s=fixed_interval_s or _matched_interval(clip, mine))
                run_dir = out / f"seed{seed}" / Path(clip.file).stem / variant.name.replace("@", "_").replace("=", "")
                say(f"seed {seed} {clip.file}: {variant.name}")
                mine.append(run_variant(variant, pair=pair, base=base, labels=labels, clip=clip, clip_index=ci,
                                        seed=seed, out_dir=run_dir, grid=grid))
            reference = next((r.analysed for r in mine if r.variant == "student_only"), 0)
            for r in mine:
                r.reference_frames = reference
            records.extend(mine)
    return records


def _matched_interval(clip: ClipLabels, done: Sequence[RunRecord]) -> float:
    """Fixed interval whose teacher images on the clip equal ours' (at least one frame)."""
    ours = next((r for r in done if r.variant == "ours"), None)
    images = max(1, ours.teacher_frames if ours else 1)
    return max(0.5, clip.duration_s / images)


def _model_sweep(*, labels: LabelSet, clips: Sequence[ClipLabels], seeds: Sequence[int], out: Path, base: Settings,
                 policies: Sequence[str], fixed_interval_s: float | None, say: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for acc in SWEEP_STUDENT_ACCURACY:
        for inf in SWEEP_INFORMATIVENESS:
            cfg = base.evaluation.model_copy(update={"student_accuracy": acc, "confidence_informativeness": inf})
            point = base.model_copy(update={"evaluation": cfg})
            variants = sorted((Variant(p, p) for p in policies), key=lambda v: v.policy == "fixed_interval")
            recs = _run_all(variants, labels=labels, clips=clips, pair="simulated", seeds=seeds,
                            out=out / f"acc{acc:g}_inf{inf:g}", base=point, fixed_interval_s=fixed_interval_s, say=say)
            agg = aggregate(recs, seeds)
            rows.append({"student_accuracy": acc, "confidence_informativeness": inf, "aggregates": agg})
    return rows


def _sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    pols = [p for p in POLICIES if rows and p in rows[0]["aggregates"]]
    head = "| student accuracy | confidence informativeness | " + " | ".join(f"{p} acc (share)" for p in pols) + " | ours / teacher-only | ours missed vs teacher-only |"
    lines = [head, "|---:|---:|" + "---:|" * (len(pols) + 2)]
    for row in rows:
        agg = row["aggregates"]
        cells = []
        for p in pols:
            a, s = agg[p].get("frame_accuracy", {}), agg[p].get("teacher_share", {})
            cells.append(f"{_fmt(a, 'pct')} ({_fmt(s, 'pct').split(' ')[0]})")
        cells.append(_fmt(agg.get("ours", {}).get("accuracy_vs_teacher_only"), "pct"))
        cells.append(_fmt(agg.get("ours", {}).get("missed_vs_teacher_only"), "num"))
        lines.append(f"| {row['student_accuracy']:g} | {row['confidence_informativeness']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_markdown(*, pair: str, labels: LabelSet, clips: Sequence[ClipLabels], seeds: Sequence[int], base: Settings,
                     blocks: Sequence[EvaluationBlock], skipped: Sequence[str], model_sweep: Sequence[dict[str, Any]],
                     plots: Sequence[str], out: Path) -> str:
    ev, cost = base.evaluation, base.cost
    lines = [
        f"# Routing evaluation — {pair} pair",
        "",
        f"- backend: **{pair}** (student and teacher)" + (
            f"; simulated error model: student accuracy {ev.student_accuracy:g} (calm {ev.student_calm_accuracy:g}), "
            f"teacher {ev.teacher_accuracy:g} (calm {ev.teacher_calm_accuracy:g}), error bursts {ev.error_burst_s:g} s"
            if pair == "simulated" else "; latencies measured (latency sum column)"),
        f"- cost model: student {cost.student_call_ms:g} ms per call + {cost.student_image_ms:g} ms per image; teacher "
        f"{cost.teacher_call_ms:g} ms per call + {cost.teacher_image_ms:g} ms per image; per reported output token "
        f"{cost.student_output_token_ms:g} / {cost.teacher_output_token_ms:g} ms",
        f"- labels: {labels.path} — {len(clips)} clip(s)",
        f"- seeds: {', '.join(str(s) for s in seeds)} (cells are mean ± sd over seeds, pooled over clips)",
        f"- event matching: ± {ev.match_tolerance_s:g} s; frame accuracy (secondary) on the {base.capture.sample_fps:g} fps grid",
    ]
    for block in blocks:
        title = f"confidence informativeness {block.informativeness:g}" if block.informativeness is not None else "results"
        lines += ["", f"## {title.capitalize()}", "", block.table, "", "### Targets (issue 17)", "", *target_check(block.aggregates),
                  "", "### Per type, by the referee's rules (real_clips.py: 1 s before, 2 s after; every event line counts)"
                  + (f", summed over {len(seeds)} seeds" if len(seeds) > 1 else ""), "", referee.per_type_table(block.referee)]
    if skipped:
        lines += ["", "## Skipped", "", *[f"- {s}" for s in skipped]]
    if model_sweep:
        lines += ["", "## Sweep over the simulated student", "", _sweep_table(model_sweep)]
    if plots:
        lines += ["", "## Plots", "", *[f"- {Path(p).relative_to(out) if Path(p).is_relative_to(out) else p}" for p in plots]]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------








__all__ = ["POLICIES", "Detection", "TeacherAsStudent", "aggregate", "cmd_evaluate", "detections_from_events",
           "evaluate", "match_events", "pooled_metrics", "alerted_types", "run_variant", "sample_grid", "score_clip"]
_ = ConfigError  # label and config problems surface as ConfigError from their loaders
