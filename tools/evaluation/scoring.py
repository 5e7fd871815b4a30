"""Scoring one run against the labels, and pooling runs into metrics.

A run's event log folds into `Detection`s; `score_clip` matches them with the clip's labelled
events (type, overlap widened by ``match_tolerance_s``) and counts what `pooled_metrics` turns
into the report's figures: per-type event F1 (safety weighted `SAFETY_F1_WEIGHT`), safety
recall, time to alert, model-seconds (`tools.evaluation.costs`), frame accuracy (secondary).
`aggregate` takes each metric's spread over seeds, pooled over clips per seed.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.labels import ACTIVITY_TYPES, ClipLabels, LabelledEvent, is_safety_type
from tools.referee import RefereeScore

log = logging.getLogger("edgewatch.evaluation")


def read_event_log(path: Path) -> list[dict[str, Any]]:
    """The lines of a run's ``events.jsonl`` (a line that is not JSON is skipped with a warning)."""
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
        """Counts as a detection: an alert or a person/vehicle activity event, not dismissed."""
        if self.severity == "alert":
            return not self.dismissed
        return self.type in ACTIVITY_TYPES and not self.dismissed

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



def format_cell(cell: dict[str, Any] | None, kind: str) -> str:
    """A `spread` as a table cell: ``pct`` (percent), ``sec`` (seconds) or ``num``, with ± sd over seeds."""
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


def mean_of(agg: dict[str, dict[str, Any]], name: str, key: str) -> float | None:
    """The mean over seeds of metric ``key`` of variant ``name`` (None when not measured)."""
    cell = agg.get(name, {}).get(key)
    return None if not isinstance(cell, dict) else cell.get("mean")
