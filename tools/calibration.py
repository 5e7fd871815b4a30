"""Learning from the teacher: calibration, fine-tune readiness and dataset export.

Every teacher verdict in the agreement store (`pipeline.learning.agreement_store`) labels the
student's reports on the keyframes the teacher saw: a report **agrees** when its safety
flags (normalised, ``model_error`` left out) equal the teacher's.  From those labels:

* **calibration** — a reliability table (student confidence in bins against the share that
  agrees), the expected calibration error (ECE), and a monotone map (isotonic regression by
  pool-adjacent-violators) from raw confidence to the probability of agreeing, fitted
  overall and per flag ("none" = reports without a flag) once a group has
  ``learning.calibration_min_examples`` examples.  `CalibrationMap.apply` picks the flag's
  map (the lowest when several flags), else the overall one, else leaves the confidence raw.
  Each fitted map has a version (``cal/<examples>-<hash>``; ``raw`` = identity).  The
  `Learner` fits *selection-aware* (`unbiased_examples`): unflagged reports only from audits,
  since the others were stored because something else escalated (docs/LEARNING.md);
* **readiness** — examples per class, balance, agreement per flag, and whether the held-out
  scores of the last K skill versions have plateaued; "ready" only with
  ``readiness_min_examples`` good examples *and* a plateau;
* **export** — a chat-format dataset (ShareGPT or messages) of the teacher's answers in the
  student's contract, split by camera and time with no near-duplicate frame across the split.

`Learner` is what the runner holds: it maps each report's confidence (`calibrate`) and keeps
each verdict (`record`), refitting the map as examples arrive.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import shutil
import sys
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.learning.agreement_store import AddResult, AgreementRecord, AgreementStore, hamming, safety_set, store_path_for
from pipeline.clock import Clock, SystemClock
from pipeline.config import LearningConfig, Settings
from pipeline.errors import UsageError
from pipeline.records import Escalation, FrameReport, StudentAnswer, Verdict, VerdictKind

log = logging.getLogger("edgewatch.calibration")

RAW_VERSION = "raw"
NO_FLAG = "none"
OVERALL = "overall"
DEFAULT_BINS = 10
#: Refit the map after this many newly stored records.
REFIT_EVERY = 20
#: Raw confidences remembered per Learner (for restoring them in the store).
_RAW_MEMORY = 20_000
#: A verdict below this teacher confidence is not a good fine-tuning example.
MIN_TEACHER_CONFIDENCE = 0.5
FORMATS = ("sharegpt", "messages")


# --------------------------------------------------------------------------------------
# Examples, reliability, ECE
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    """One student report on a frame the teacher reviewed, labelled by the teacher."""

    confidence: float
    flags: frozenset[str]
    agrees: bool
    camera: str
    record_id: int
    audit: bool = False
    """From an audit: a calm sequence sampled on a frame count, not chosen by the student's answer."""


def group_of(flags: Iterable[str]) -> tuple[str, ...]:
    """The per-flag groups a report falls in: each of its flags, or "none"."""
    fl = sorted(safety_set(flags))
    return tuple(fl) if fl else (NO_FLAG,)


def examples_from(records: Iterable[AgreementRecord]) -> list[Example]:
    """Labelled examples: the student's report on each keyframe (failed analyses left out)."""
    out = []
    for rec in records:
        if rec.verdict == VerdictKind.UNVERIFIED:
            continue
        for kf in rec.keyframes:
            report = rec.report_for(kf)
            if report is None or report.error:
                continue
            flags = safety_set(report.safety_flags)
            out.append(Example(float(report.confidence), flags, flags == rec.teacher_flags, rec.camera, rec.id, rec.is_audit))
    return out


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_confidence: float
    agreement: float

    @property
    def gap(self) -> float:
        return self.mean_confidence - self.agreement


def reliability_table(confidence: Sequence[float], agrees: Sequence[bool], bins: int = DEFAULT_BINS) -> list[ReliabilityBin]:
    """Equal-width bins over 0..1 (the last includes 1.0); empty bins are left out."""
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    hit = np.asarray(agrees, dtype=float)
    if conf.shape != hit.shape:
        raise ValueError("confidence and agrees differ in length")
    which = np.minimum((conf * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if n:
            out.append(ReliabilityBin(b / bins, (b + 1) / bins, n, float(conf[mask].mean()), float(hit[mask].mean())))
    return out


def expected_calibration_error(confidence: Sequence[float], agrees: Sequence[bool], bins: int = DEFAULT_BINS) -> float:
    """Σ_bins (n_b / N) · |mean confidence_b − agreement_b|; NaN without examples."""
    table = reliability_table(confidence, agrees, bins)
    total = sum(b.n for b in table)
    return float(sum(b.n * abs(b.gap) for b in table) / total) if total else float("nan")


# --------------------------------------------------------------------------------------
# The monotone map
# --------------------------------------------------------------------------------------


def isotonic_fit(x: Sequence[float], y: Sequence[float], weight: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing least-squares fit of y on x by pool-adjacent-violators.

    Returns the knots (block mean of x, block value), increasing in x, for linear interpolation.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    ws = np.ones_like(xs) if weight is None else np.asarray(weight, dtype=float)
    if xs.size == 0:
        raise ValueError("isotonic_fit needs at least one point")
    order = np.argsort(xs, kind="mergesort")
    xs, ys, ws = xs[order], ys[order], ws[order]
    # Blocks: [weight, weighted y sum, weighted x sum]; merge while the last two decrease.
    blocks: list[list[float]] = []
    for xi, yi, wi in zip(xs, ys, ws):
        blocks.append([wi, wi * yi, wi * xi])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            w, sy, sx = blocks.pop()
            blocks[-1][0] += w
            blocks[-1][1] += sy
            blocks[-1][2] += sx
    knots_x = np.array([b[2] / b[0] for b in blocks])
    knots_y = np.array([b[1] / b[0] for b in blocks])
    return knots_x, knots_y


@dataclass(frozen=True)
class MonotoneMap:
    """Piecewise-linear, non-decreasing map through isotonic knots, clamped at both ends."""

    knots_x: tuple[float, ...]
    knots_y: tuple[float, ...]
    n: int

    @classmethod
    def fit(cls, confidence: Sequence[float], agrees: Sequence[bool]) -> "MonotoneMap":
        kx, ky = isotonic_fit(confidence, np.asarray(agrees, dtype=float))
        n = len(confidence)
        # Keep away from 0 and 1: a handful of examples never proves certainty.
        ky = np.clip(ky, 1.0 / (n + 2), 1.0 - 1.0 / (n + 2))
        return cls(tuple(round(float(v), 6) for v in kx), tuple(round(float(v), 6) for v in ky), n)

    def __call__(self, confidence: float | np.ndarray) -> Any:
        return np.interp(confidence, self.knots_x, self.knots_y)

    def to_json(self) -> dict[str, Any]:
        return {"x": list(self.knots_x), "y": list(self.knots_y), "n": self.n}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "MonotoneMap":
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]), int(data["n"]))


@dataclass(frozen=True)
class CalibrationMap:
    """Raw student confidence → probability that the teacher agrees; versioned."""

    version: str = RAW_VERSION
    overall: MonotoneMap | None = None
    by_flag: Mapping[str, MonotoneMap] = field(default_factory=dict)
    examples: int = 0
    unflagged_raw: bool = False
    """A report without a flag keeps its raw confidence unless the ``none`` map exists (fitted on
    audits only, see `fit_calibration(selection_aware=True)`): the overall map says nothing about it."""

    @property
    def is_identity(self) -> bool:
        return self.overall is None and not self.by_flag

    def apply(self, confidence: float, flags: Iterable[str] = ()) -> float:
        """The calibrated confidence of a report with these flags (raw when no map covers it)."""
        groups = group_of(flags)
        maps = [self.by_flag[g] for g in groups if g in self.by_flag]
        if not maps and self.unflagged_raw and groups == (NO_FLAG,):
            return float(confidence)
        if not maps and self.overall is not None:
            maps = [self.overall]
        if not maps:
            return float(confidence)
        return float(min(m(float(confidence)) for m in maps))

    def apply_report(self, report: FrameReport) -> FrameReport:
        """The report with calibrated confidence (failed analyses keep their 0)."""
        if report.error or self.is_identity:
            return report
        return replace(report, confidence=self.apply(report.confidence, report.safety_flags))

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "examples": self.examples,
                "overall": self.overall.to_json() if self.overall else None,
                "by_flag": {k: m.to_json() for k, m in sorted(self.by_flag.items())},
                **({"unflagged_raw": True} if self.unflagged_raw else {})}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CalibrationMap":
        return cls(version=str(data["version"]), examples=int(data.get("examples", 0)),
                   overall=MonotoneMap.from_json(data["overall"]) if data.get("overall") else None,
                   by_flag={str(k): MonotoneMap.from_json(v) for k, v in (data.get("by_flag") or {}).items()},
                   unflagged_raw=bool(data.get("unflagged_raw", False)))


def unbiased_examples(examples: Sequence[Example]) -> list[Example]:
    """The examples whose selection does not lean on whether the student was right.

    A report *with* a safety flag is escalated whenever its flag persists, right or wrong, so
    the flagged reports in the store are close to all of them (if anything the persistent,
    likelier-right ones).  A report *without* a flag reaches the store only inside an
    escalation some *other* frame caused (a flag nearby, low confidence, a flip, a scene
    change): mostly beside an event, where the student misses it.  Fitted on those, the map
    says a calm report is almost always wrong, while on the calm frames it is applied to the
    student is right ~95% of the time.  Only audits sample calm frames without looking at the
    student's answer, so they alone stand for the unflagged group.
    """
    return [e for e in examples if e.flags or e.audit]


def fit_calibration(examples: Sequence[Example], min_examples: int, *, selection_aware: bool = False) -> CalibrationMap:
    """Overall and per-group maps for every group with at least ``min_examples`` examples.

    ``selection_aware`` (what the `Learner` uses): fit only on `unbiased_examples`, so the
    ``none`` map comes from audits alone, and leave unflagged reports raw while it is missing."""
    if selection_aware:
        examples = unbiased_examples(examples)
    if len(examples) < min_examples:
        return CalibrationMap(examples=len(examples))
    overall = MonotoneMap.fit([e.confidence for e in examples], [e.agrees for e in examples])
    groups: dict[str, list[Example]] = {}
    for e in examples:
        for g in group_of(e.flags):
            groups.setdefault(g, []).append(e)
    by_flag = {g: MonotoneMap.fit([e.confidence for e in ex], [e.agrees for e in ex])
               for g, ex in sorted(groups.items()) if len(ex) >= min_examples}
    body = json.dumps({"overall": overall.to_json(), "by_flag": {k: v.to_json() for k, v in by_flag.items()},
                       **({"unflagged_raw": True} if selection_aware else {})}, sort_keys=True)
    version = f"cal/{len(examples)}-{hashlib.sha1(body.encode()).hexdigest()[:8]}"
    return CalibrationMap(version=version, overall=overall, by_flag=by_flag, examples=len(examples), unflagged_raw=selection_aware)


def calibrated_confidences(cmap: CalibrationMap, examples: Sequence[Example]) -> list[float]:
    return [cmap.apply(e.confidence, e.flags) for e in examples]


# --------------------------------------------------------------------------------------
# What the runner holds
# --------------------------------------------------------------------------------------


class Learner:
    """The agreement store plus the calibration map in force (runner's thread only).

    Wiring (runner): ``report = learner.calibrate(report)`` before the window sees a report;
    ``learner.record(result.escalation, verdict, thresholds=..., skill_version=...)`` for each
    verdict; ``learner.close()`` at the end.  ``on_change`` receives a decision-log record
    (``kind: calibration``) whenever a new map version comes into force.
    """

    def __init__(self, store: AgreementStore, cfg: LearningConfig, *,
                 on_change: Callable[[dict[str, Any]], None] | None = None, refit_every: int = REFIT_EVERY) -> None:
        self.store = store
        self.cfg = cfg
        self.on_change = on_change
        self.refit_every = max(1, refit_every)
        self._raw: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._since_refit = 0
        self.outcomes: Counter[str] = Counter()
        self.map = CalibrationMap()
        self.refit()

    @classmethod
    def open(cls, settings: Settings, clock: Clock, *, on_change: Callable[[dict[str, Any]], None] | None = None) -> "Learner | None":
        """None when ``learning.enabled`` is false."""
        cfg = settings.learning
        if not cfg.enabled:
            return None
        store = AgreementStore.open(store_path_for(cfg, settings.output.out_dir), cfg, clock)
        return cls(store, cfg, on_change=on_change)

    @property
    def version(self) -> str:
        return self.map.version

    @property
    def applying(self) -> bool:
        """Are reports leaving `calibrate` on the calibrated scale?  (The policy reads its
        thresholds accordingly: `EscalationPolicy.confidence_calibrated`.)"""
        return self.cfg.calibrate and not self.map.is_identity

    def calibrate(self, report: FrameReport) -> FrameReport:
        """The report with calibrated confidence (raw until enough examples, or with ``calibrate: false``)."""
        if not self.cfg.calibrate or self.map.is_identity or report.error:
            return report
        key = (report.camera, report.frame_index)
        self._raw[key] = report.confidence
        self._raw.move_to_end(key)
        while len(self._raw) > _RAW_MEMORY:
            self._raw.popitem(last=False)
        return self.map.apply_report(report)

    def record(self, escalation: Escalation, verdict: Verdict, *, thresholds: Mapping[str, Any], skill_version: str) -> AddResult:
        """Keep one verdict (the store restores the raw confidences this Learner mapped)."""
        raw = {(r.camera, r.frame_index): self._raw[(r.camera, r.frame_index)]
               for r in escalation.timeline if (r.camera, r.frame_index) in self._raw}
        result = self.store.add(escalation, verdict, skill_version=skill_version, thresholds=thresholds,
                                calibration_version=self.map.version, raw_confidence=raw)
        self.outcomes[result.outcome] += 1
        if result.stored:
            self._since_refit += 1
            if self._since_refit >= self.refit_every:
                self.refit()
        return result

    def refit(self) -> CalibrationMap:
        self._since_refit = 0
        new = fit_calibration(examples_from(self.store.records()), self.cfg.calibration_min_examples, selection_aware=True)
        if new.version != self.map.version:
            self.map = new
            log.info("calibration map %s in force (%d examples)", new.version, new.examples)
            if self.on_change is not None:
                self.on_change({"kind": "calibration", "version": new.version, "examples": new.examples,
                                "groups": sorted(new.by_flag), "applied": self.cfg.calibrate and not new.is_identity})
        return self.map

    def close(self) -> None:
        self.store.close()


# --------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------


def good_records(records: Iterable[AgreementRecord]) -> list[AgreementRecord]:
    """Records worth training on: a firm verdict, an image on disk, a student report on it."""
    out = []
    for rec in records:
        if rec.verdict == VerdictKind.UNVERIFIED or rec.teacher_confidence < MIN_TEACHER_CONFIDENCE or not rec.keyframes:
            continue
        kf = rec.newest_keyframe
        if not kf.path.is_file():
            continue
        report = rec.report_for(kf)
        if report is not None and report.error:
            continue
        out.append(rec)
    return out


def classes_of(rec: AgreementRecord) -> tuple[str, ...]:
    return tuple(sorted(rec.teacher_flags)) or (NO_FLAG,)


@dataclass(frozen=True)
class Plateau:
    reached: bool
    versions: tuple[str, ...]
    scores: tuple[float, ...]
    why: str


def prompt_plateau(skills_dir: Path, k: int, margin: float, task: str = "student") -> Plateau:
    """Have the held-out scores of the last ``k`` scored skill versions settled within ``margin``?"""
    from tools.skills import SkillError, heldout, list_skills

    try:
        skills = list_skills(Path(skills_dir), task)
    except SkillError as exc:
        return Plateau(False, (), (), f"skills folder unreadable: {exc}")
    scored: list[tuple[str, float, Any]] = []
    for s in skills:
        try:
            scored.append((s.version, float(heldout(s.scores)["overall"]), _comparable_key(s.scores)))
        except (SkillError, KeyError, TypeError, ValueError):
            continue
    if scored:
        # Only versions scored the same way as the newest one compare.
        key = scored[-1][2]
        scored = [x for x in scored if x[2] == key]
    last = scored[-k:]
    versions, scores = tuple(v for v, _, _ in last), tuple(round(s, 4) for _, s, _ in last)
    if len(last) < k:
        return Plateau(False, versions, scores, f"need {k} skill versions with comparable held-out scores, have {len(last)} "
                                                "(run `skills synthesize` and `skills score`)")
    spread = max(scores) - min(scores)
    if spread > margin:
        return Plateau(False, versions, scores, f"held-out scores of the last {k} versions still move by {spread:.3f} "
                                                f"(> margin {margin:.3f}): keep improving the prompt first")
    return Plateau(True, versions, scores, f"the last {k} versions' held-out scores lie within {spread:.3f} (<= {margin:.3f})")


def _comparable_key(scores: Mapping[str, Any] | None) -> str:
    s = scores or {}
    return json.dumps([s.get("suite"), s.get("methods"), s.get("student_model")], sort_keys=True, default=str)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    good_examples: int
    reviewed: int
    per_class: dict[str, int]
    balance: float
    """Smallest class count / largest (1 = balanced; 0 = a class has none)."""
    agreement_by_flag: dict[str, tuple[float, int]]
    plateau: Plateau
    missing: tuple[str, ...]
    need: int
    """Good examples needed (learning.readiness_min_examples)."""

    def render(self) -> str:
        lines = [f"fine-tune readiness: {'READY' if self.ready else 'NOT READY'}",
                 f"  reviewed records {self.reviewed}, good examples {self.good_examples} (need {self.need})"]
        classes = ", ".join(f"{c} {n}" for c, n in sorted(self.per_class.items(), key=lambda kv: -kv[1])) or "none"
        lines.append(f"  examples per class: {classes}; balance (smallest/largest) {self.balance:.2f}")
        agree = ", ".join(f"{g} {a * 100:.0f}% of {n}" for g, (a, n) in sorted(self.agreement_by_flag.items())) or "no examples"
        lines.append(f"  student-teacher agreement per flag: {agree}")
        pl = self.plateau
        lines.append(f"  prompt scores: {pl.why}" + (f" ({', '.join(f'{v} {s:.3f}' for v, s in zip(pl.versions, pl.scores))})" if pl.versions else ""))
        for m in self.missing:
            lines.append(f"  missing: {m}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "good_examples": self.good_examples, "reviewed": self.reviewed, "per_class": self.per_class,
                "balance": round(self.balance, 4),
                "agreement_by_flag": {g: {"agreement": round(a, 4), "n": n} for g, (a, n) in self.agreement_by_flag.items()},
                "plateau": {"reached": self.plateau.reached, "versions": list(self.plateau.versions),
                            "scores": list(self.plateau.scores), "why": self.plateau.why},
                "missing": list(self.missing)}


def readiness(records: Sequence[AgreementRecord], skills_dir: Path, cfg: LearningConfig) -> Readiness:
    good = good_records(records)
    per_class: Counter[str] = Counter(c for rec in good for c in classes_of(rec))
    balance = (min(per_class.values()) / max(per_class.values())) if per_class else 0.0
    examples = examples_from(records)
    by_flag: dict[str, list[bool]] = {}
    for e in examples:
        for g in group_of(e.flags):
            by_flag.setdefault(g, []).append(e.agrees)
        by_flag.setdefault(OVERALL, []).append(e.agrees)
    agreement = {g: (sum(v) / len(v), len(v)) for g, v in by_flag.items()}
    plateau = prompt_plateau(skills_dir, cfg.plateau_k, cfg.plateau_margin)
    missing = []
    if len(good) < cfg.readiness_min_examples:
        missing.append(f"{cfg.readiness_min_examples - len(good)} more good examples ({len(good)} of {cfg.readiness_min_examples}: "
                       f"reviewed, firm verdict, image on disk)")
    if not plateau.reached:
        missing.append(f"a prompt-score plateau: {plateau.why}")
    r = Readiness(ready=not missing, good_examples=len(good), reviewed=len(records), per_class=dict(per_class),
                  balance=balance, agreement_by_flag=agreement, plateau=plateau, missing=tuple(missing),
                  need=cfg.readiness_min_examples)
    return r


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSummary:
    out_dir: Path
    train: int
    validation: int
    dropped_near_duplicates: int
    card: Path


def teacher_answer_json(rec: AgreementRecord) -> str:
    """The teacher's answer in the student's contract (StudentAnswer, by alias)."""
    answer = StudentAnswer(observations=list(rec.teacher_observations)[:20], safety_flags=sorted(rec.teacher_flags)[:10],
                           confidence=round(min(1.0, max(0.0, rec.teacher_confidence)), 3))
    return answer.model_dump_json(by_alias=True)


def split_records(records: Sequence[AgreementRecord], validation_fraction: float, dedupe_distance: int
                  ) -> tuple[list[AgreementRecord], list[AgreementRecord], int]:
    """Per camera, the latest ``validation_fraction`` (by time stored) go to validation; then
    train records whose image is a near-duplicate of any validation image are dropped."""
    by_camera: dict[str, list[AgreementRecord]] = {}
    for rec in records:
        by_camera.setdefault(rec.camera, []).append(rec)
    train, val = [], []
    for cam in sorted(by_camera):
        recs = sorted(by_camera[cam], key=lambda r: (r.stored_at, r.id))
        n_val = int(round(len(recs) * validation_fraction))
        if len(recs) >= 2:
            n_val = min(len(recs) - 1, max(1, n_val))
        cut = len(recs) - n_val
        train += recs[:cut]
        val += recs[cut:]
    val_hashes = [r.newest_keyframe.phash for r in val]
    kept = [r for r in train if all(hamming(r.newest_keyframe.phash, h) > dedupe_distance for h in val_hashes)]
    return kept, val, len(train) - len(kept)


def _sample(rec: AgreementRecord, image: str, system: str, fmt: str) -> dict[str, Any]:
    from pipeline.analyzers.prompts import student_user_text

    answer = teacher_answer_json(rec)
    meta = {"id": f"{rec.camera}:{rec.id}", "camera": rec.camera, "escalation_id": rec.escalation_id,
            "verdict": rec.verdict.value, "skill_version": rec.skill_version, "teacher_model": rec.teacher_model}
    if fmt == "sharegpt":
        return {"conversations": [{"from": "human", "value": "<image>" + student_user_text()},
                                  {"from": "gpt", "value": answer}],
                "system": system, "images": [image], "meta": meta}
    return {"messages": [{"role": "system", "content": [{"type": "text", "text": system}]},
                         {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": student_user_text()}]},
                         {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
            "images": [image], "meta": meta}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def export_dataset(records: Sequence[AgreementRecord], out_dir: Path, fmt: str, *, system_prompt: str, prompt_version: str,
                   cfg: LearningConfig) -> ExportSummary:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    good = good_records(records)
    if not good:
        raise UsageError("nothing to export: the store holds no good examples")
    train, val, dropped = split_records(good, cfg.validation_fraction, cfg.dedupe_distance)
    out_dir = Path(out_dir)
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", train), ("validation", val)):
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for rec in part:
                src = rec.newest_keyframe.path
                rel = f"images/{rec.camera}-{rec.id}{src.suffix or '.jpg'}"
                shutil.copyfile(src, out_dir / rel)
                fh.write(json.dumps(_sample(rec, rel, system_prompt, fmt), ensure_ascii=False) + "\n")
    info_key = "edgewatch_student"
    if fmt == "sharegpt":
        info = {f"{info_key}_{n}": {"file_name": f"{n}.jsonl", "formatting": "sharegpt",
                                   "columns": {"messages": "conversations", "system": "system", "images": "images"}}
                for n in ("train", "validation")}
    else:
        info = {f"{info_key}_{n}": {"file_name": f"{n}.jsonl", "formatting": "openai-messages",
                                   "columns": {"messages": "messages", "images": "images"}} for n in ("train", "validation")}
    (out_dir / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    card = out_dir / "README.md"
    card.write_text(_card(train, val, dropped, fmt, prompt_version), encoding="utf-8")
    return ExportSummary(out_dir, len(train), len(val), dropped, card)


def _card(train: Sequence[AgreementRecord], val: Sequence[AgreementRecord], dropped: int, fmt: str, prompt_version: str) -> str:
    every = [*train, *val]

    def counts(part: Sequence[AgreementRecord]) -> str:
        c = Counter(x for r in part for x in classes_of(r))
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"

    start, end = (min(r.stored_at for r in every), max(r.stored_at for r in every)) if every else (0.0, 0.0)
    lines = [
        "# edgewatch student fine-tuning data",
        "",
        f"- format: **{fmt}** (`train.jsonl`, `validation.jsonl`; images in `images/`, paths relative to this folder)",
        f"- examples: train {len(train)}, validation {len(val)}; {dropped} train example(s) dropped as near-duplicates of a validation frame",
        f"- classes (teacher's flags; 'none' = nothing unsafe): train {counts(train)}; validation {counts(val)}",
        f"- verdicts: {', '.join(f'{k} {v}' for k, v in sorted(Counter(r.verdict.value for r in every).items()))}",
        f"- sources: cameras {', '.join(sorted({r.camera for r in every}))}; teacher {', '.join(sorted({r.teacher_model for r in every}))}; "
        f"student {', '.join(sorted({r.student_model for r in every}))}",
        f"- skill (prompt) versions of the reviewed runs: {', '.join(sorted({r.skill_version for r in every}))}; "
        f"system prompt in the data: {prompt_version} (the active skill)",
        f"- date range (stored): {_iso(start)} .. {_iso(end)}",
        "- split: per camera by time (each camera's latest examples are validation); no train frame within the "
        "perceptual-hash distance of a validation frame",
        "- assistant turns are the teacher's answers in the student's contract (StudentAnswer JSON: observations, "
        "safetyFlags, confidence = the teacher's)",
        "",
        "Load: LLaMA-Factory (`dataset_info.json` beside the data), or any chat template taking "
        "system/user/assistant turns with images (e.g. `datasets.load_dataset('json', data_files=...)`).",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    from commands.main import _ArgumentParser

    p = _ArgumentParser(prog=prog, description=description)
    p.add_argument("--store", type=Path, help="agreement store (default: learning.store_path, or agreement.sqlite in output.out_dir)")
    p.add_argument("--config", type=Path, help="YAML config file")
    return p


def _open_store(args: argparse.Namespace) -> tuple[Settings, AgreementStore]:
    from pipeline.config import load_settings

    settings = load_settings(args.config)
    path = args.store or store_path_for(settings.learning, settings.output.out_dir)
    return settings, AgreementStore.open_existing(path, settings.learning, SystemClock())


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def calibration_rows(examples: Sequence[Example], cmap: CalibrationMap, bins: int) -> list[dict[str, Any]]:
    """Reliability rows for overall and each flag group, raw and calibrated."""
    groups: dict[str, list[Example]] = {OVERALL: list(examples)}
    for e in examples:
        for g in group_of(e.flags):
            groups.setdefault(g, []).append(e)
    rows = []
    for g, ex in groups.items():
        raw = [e.confidence for e in ex]
        cal = calibrated_confidences(cmap, ex)
        hit = [e.agrees for e in ex]
        for which, conf in (("raw", raw), ("calibrated", cal)):
            for b in reliability_table(conf, hit, bins):
                rows.append({"group": g, "confidence": which, "bin": f"{b.low:.1f}-{b.high:.1f}", "n": b.n,
                             "mean_confidence": round(b.mean_confidence, 4), "agreement": round(b.agreement, 4)})
    return rows


def cmd_calibration(argv: Sequence[str]) -> int:
    p = _base_parser("edgewatch calibration", "Reliability of the student's confidence against the teacher's verdicts, "
                     "the expected calibration error, and the calibration map fitted on the agreement store.")
    p.add_argument("--plot", type=Path, help="write a reliability plot here (PNG; needs matplotlib, else a CSV and JSON beside it)")
    p.add_argument("--bins", type=int, default=DEFAULT_BINS, help="confidence bins (default 10)")
    args = p.parse_args(list(argv))
    if not 2 <= args.bins <= 100:
        raise UsageError(f"--bins must be in 2..100 (got {args.bins})")
    settings, store = _open_store(args)
    with store:
        examples = examples_from(store.records())
    cmap = fit_calibration(examples, settings.learning.calibration_min_examples, selection_aware=True)
    _out(f"agreement store {store.path}: {len(examples)} labelled student reports; map {cmap.version}"
         + ("" if not cmap.is_identity else f" (identity: fewer than {settings.learning.calibration_min_examples} examples)"))
    if not examples:
        return 0
    groups: dict[str, list[Example]] = {OVERALL: list(examples)}
    for e in examples:
        for g in group_of(e.flags):
            groups.setdefault(g, []).append(e)
    _out(f"{'group':<12} {'n':>6} {'agree':>7} {'ECE raw':>8} {'ECE cal*':>9}  map")
    for g, ex in groups.items():
        hit = [e.agrees for e in ex]
        ece_raw = expected_calibration_error([e.confidence for e in ex], hit, args.bins)
        ece_cal = expected_calibration_error(calibrated_confidences(cmap, ex), hit, args.bins)
        which = "flag" if g in cmap.by_flag else ("overall" if cmap.overall is not None else "raw")
        if g == NO_FLAG and g not in cmap.by_flag and cmap.unflagged_raw:
            which = "raw (too few audits)"
        _out(f"{g:<12} {len(ex):>6} {sum(hit) / len(hit) * 100:>6.1f}% {ece_raw:>8.3f} {ece_cal:>9.3f}  {which}")
    _out("* in-sample: the map was fitted on these examples")
    _out("")
    _out(f"{'bin':<9} {'n':>6} {'confidence':>10} {'agreement':>10}   (overall, raw)")
    for b in reliability_table([e.confidence for e in examples], [e.agrees for e in examples], args.bins):
        _out(f"{b.low:.1f}-{b.high:.1f}  {b.n:>6} {b.mean_confidence:>10.3f} {b.agreement:>10.3f}")
    if args.plot is not None:
        _write_plot(args.plot, examples, cmap, args.bins)
    return 0


def _write_plot(path: Path, examples: Sequence[Example], cmap: CalibrationMap, bins: int) -> None:
    rows = calibration_rows(examples, cmap, bins)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        csv_path, json_path = path.with_suffix(".csv"), path.with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        json_path.write_text(json.dumps({"map": cmap.to_json(), "rows": rows}, indent=2) + "\n", encoding="utf-8")
        _out(f"matplotlib is not installed (pip install 'edgewatch[plots]'): no plot; table written to {csv_path} and {json_path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for which, style in (("raw", "o-"), ("calibrated", "s--")):
        pts = [r for r in rows if r["group"] == OVERALL and r["confidence"] == which]
        ax.plot([r["mean_confidence"] for r in pts], [r["agreement"] for r in pts], style, label=f"{which} (overall)")
    xs = np.linspace(0, 1, 101)
    if cmap.overall is not None:
        ax.plot(xs, cmap.overall(xs), color="black", linewidth=1, label=f"map {cmap.version}")
    ax.set_xlabel("student confidence")
    ax.set_ylabel("share the teacher agrees with")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    _out(f"reliability plot: {path}")


def cmd_finetune_readiness(argv: Sequence[str]) -> int:
    p = _base_parser("edgewatch finetune-readiness", "Is fine-tuning the student worth it yet? Examples per class, balance, "
                     "agreement per flag, and the prompt-score plateau. Exit 0 when ready, 1 when not.")
    p.add_argument("--skills-dir", type=Path, help="skills folder (default: skills.dir)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(list(argv))
    settings, store = _open_store(args)
    with store:
        records = store.records()
    result = readiness(records, args.skills_dir or settings.skills.dir, settings.learning)
    _out(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return 0 if result.ready else 1


def cmd_export_dataset(argv: Sequence[str]) -> int:
    p = _base_parser("edgewatch export-dataset", "Export the reviewed examples as a chat-format fine-tuning dataset "
                     "(refused until finetune-readiness says ready, unless --force).")
    p.add_argument("--format", choices=FORMATS, required=True, help="sharegpt (LLaMA-Factory) or messages (OpenAI/HF chat)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty or absent)")
    p.add_argument("--skills-dir", type=Path, help="skills folder (default: skills.dir)")
    p.add_argument("--force", action="store_true", help="export even when not ready")
    args = p.parse_args(list(argv))
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out {args.out} exists and is not an empty folder")
    settings, store = _open_store(args)
    with store:
        records = store.records()
    skills_dir = args.skills_dir or settings.skills.dir
    verdict = readiness(records, skills_dir, settings.learning)
    if not verdict.ready and not args.force:
        _out(verdict.render())
        raise UsageError("not ready for fine-tuning (see above); --force exports anyway")
    from tools.skills import load_active_prompt

    prompt = load_active_prompt("student", skills_dir)
    summary = export_dataset(records, args.out, args.format, system_prompt=prompt.text, prompt_version=prompt.version,
                             cfg=settings.learning)
    _out(f"exported {summary.train} train + {summary.validation} validation examples ({args.format}) to {summary.out_dir}; "
         f"{summary.dropped_near_duplicates} near-duplicate(s) dropped; card {summary.card}")
    return 0


__all__ = ["CalibrationMap", "Example", "Learner", "MonotoneMap", "Readiness", "cmd_calibration", "cmd_export_dataset",
           "cmd_finetune_readiness", "examples_from", "expected_calibration_error", "export_dataset", "fit_calibration",
           "isotonic_fit", "prompt_plateau", "readiness", "reliability_table", "split_records"]


# --------------------------------------------------------------------------------------
# Measuring it: the evaluation harness with raw against calibrated confidence
# --------------------------------------------------------------------------------------


class RecordingTeacher:
    """Wraps a teacher: every verdict also goes into an agreement store (stands in for the
    runner's wiring while measuring).  ``camera_tag`` keeps runs of different seeds apart."""

    def __init__(self, teacher: Any, store: AgreementStore, camera_tag: str) -> None:
        self.teacher = teacher
        self.backend = teacher.backend
        self.model = teacher.model
        self.store = store
        self.camera_tag = camera_tag

    def review(self, escalation: Escalation) -> Verdict:
        verdict = self.teacher.review(escalation)
        self.store.add(replace(escalation, camera=f"{escalation.camera}-{self.camera_tag}"), verdict,
                       skill_version=getattr(self.teacher, "prompt_version", "simulated/1"), thresholds={})
        return verdict

    def close(self) -> None:
        self.teacher.close()


class CalibratedStudent:
    """Wraps a student: each report's confidence goes through the map (what `Learner.calibrate` does in the runner)."""

    def __init__(self, student: Any, cmap: CalibrationMap) -> None:
        self.student = student
        self.cmap = cmap
        self.backend = student.backend
        self.model = student.model
        self.prompt_version = student.prompt_version

    def analyze(self, item: Any) -> FrameReport:
        return self.cmap.apply_report(self.student.analyze(item))

    def close(self) -> None:
        self.student.close()


def _run_ours(base: Settings, labels: Any, clip: Any, seed: int, out_dir: Path, *,
              store: AgreementStore | None = None, cmap: CalibrationMap | None = None,
              calibrated_policy: bool = True) -> dict[str, Any]:
    """Our policy on one clip through the real Runner with the simulated pair; its score and cost."""
    from pipeline.incidents.escalation import EscalationPolicy, Thresholds
    from tools.evaluation import Variant, detections_from_events, make_backends, policy_factory, sample_grid, score_clip, variant_settings
    from pipeline.runner import Runner

    clock = SystemClock()
    variant = Variant("ours", "ours")
    settings = variant_settings(base, variant, 0, out_dir)
    for stale in ("events.jsonl", "decisions.jsonl", "summary.json"):
        (out_dir / stale).unlink(missing_ok=True)
    backends = make_backends("simulated", settings, clip, seed, False, clock)
    if store is not None:
        backends.teacher = RecordingTeacher(backends.teacher, store, f"seed{seed}")
    factory = policy_factory(variant)
    if cmap is not None:
        backends.student = CalibratedStudent(backends.student, cmap)
        if calibrated_policy and not cmap.is_identity:
            # What the runner does when `Learner.applying`: the policy reads the calibrated scale.
            def factory(s: Settings, camera: str) -> Any:
                return EscalationPolicy(Thresholds.from_config(s.escalation), confidence_calibrated=True)
    Runner(settings, backends, clock=clock, policy_factory=factory).run(str(labels.video_path(clip)))

    def read(name: str) -> list[dict[str, Any]]:
        path = out_dir / name
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()] if path.is_file() else []

    decisions = read("decisions.jsonl")
    score = score_clip(clip, detections_from_events(read("events.jsonl")),
                       sample_grid(clip, base.capture.sample_fps, base.evaluation.match_tolerance_s), base.evaluation.match_tolerance_s)
    return {"safety_found": score.safety_found, "safety_events": score.safety_events, "found": score.found, "events": score.events,
            "frames_correct": score.frames_correct, "frames": score.frames,
            "teacher_calls": sum(1 for d in decisions if d.get("kind") == "verdict"),
            "reasons": dict(Counter(d.get("reason") for d in decisions if d.get("kind") == "escalation"))}


def evaluate_calibration(*, fit_seeds: Sequence[int], test_seeds: Sequence[int], informativeness: float, out: Path,
                         base: Settings | None = None, labels_path: Path | None = None,
                         calibrated_min_confidence: Sequence[float] = (), ablations: bool = False) -> dict[str, Any]:
    """Fit the map on the verdicts of runs with ``fit_seeds``; compare raw and calibrated
    confidence on runs with ``test_seeds`` (simulated pair, our policy, demo clip by default).

    ``calibrated_min_confidence``: extra calibrated runs with ``escalation.min_confidence`` set to
    each value (a calibrated confidence is a probability, so its threshold means something else).
    ``ablations``: also run the old fit (every example, biased) with the raw-scale policy (as
    measured before the selection-aware fit) and the new map with the raw-scale policy."""
    from tools.evaluation import DEMO_LABELS
    from tools.labels import load_labels

    base = base or Settings()
    base = base.model_copy(update={"evaluation": base.evaluation.model_copy(update={"confidence_informativeness": informativeness})})
    labels = load_labels(labels_path or DEMO_LABELS)
    out = Path(out)
    for name in ("fit.sqlite", "heldout.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (out / (name + suffix)).unlink(missing_ok=True)
        shutil.rmtree(out / name.replace(".sqlite", "-frames"), ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    clock = SystemClock()
    fit_store = AgreementStore.open(out / "fit.sqlite", base.learning, clock)
    held_store = AgreementStore.open(out / "heldout.sqlite", base.learning, clock)
    try:
        for seed in fit_seeds:
            for ci, clip in enumerate(labels.clips):
                _run_ours(base, labels, clip, seed, out / "runs" / f"fit-seed{seed}-{ci}", store=fit_store)
        fit_examples = examples_from(fit_store.records())
        cmap = fit_calibration(fit_examples, base.learning.calibration_min_examples, selection_aware=True)
        biased = fit_calibration(fit_examples, base.learning.calibration_min_examples)
        per_seed = []
        for seed in test_seeds:
            raw_runs = [_run_ours(base, labels, clip, seed, out / "runs" / f"raw-seed{seed}-{ci}", store=held_store)
                        for ci, clip in enumerate(labels.clips)]
            cal_runs = [_run_ours(base, labels, clip, seed, out / "runs" / f"cal-seed{seed}-{ci}", cmap=cmap)
                        for ci, clip in enumerate(labels.clips)]
            row = {"seed": seed, "raw": _pool(raw_runs), "calibrated": _pool(cal_runs)}
            if ablations:
                row["calibrated:biased-fit,raw-policy"] = _pool([
                    _run_ours(base, labels, clip, seed, out / "runs" / f"calbiased-seed{seed}-{ci}", cmap=biased, calibrated_policy=False)
                    for ci, clip in enumerate(labels.clips)])
                row["calibrated:map-only"] = _pool([
                    _run_ours(base, labels, clip, seed, out / "runs" / f"calmap-seed{seed}-{ci}", cmap=cmap, calibrated_policy=False)
                    for ci, clip in enumerate(labels.clips)])
            for mc in calibrated_min_confidence:
                at = base.model_copy(update={"escalation": base.escalation.model_copy(update={"min_confidence": mc})})
                row[f"calibrated@{mc:g}"] = _pool([_run_ours(at, labels, clip, seed, out / "runs" / f"cal{mc:g}-seed{seed}-{ci}", cmap=cmap)
                                                    for ci, clip in enumerate(labels.clips)])
            per_seed.append(row)
        held = examples_from(held_store.records())
    finally:
        fit_store.close()
        held_store.close()
    hit = [e.agrees for e in held]
    fair = unbiased_examples(held)
    fair_hit = [e.agrees for e in fair]
    result = {
        "backend": "simulated", "informativeness": informativeness, "fit_seeds": list(fit_seeds), "test_seeds": list(test_seeds),
        "fit_examples": len(fit_examples), "map": cmap.version, "map_groups": sorted(cmap.by_flag),
        "heldout_examples": len(held),
        "heldout_ece_raw": expected_calibration_error([e.confidence for e in held], hit) if held else None,
        "heldout_ece_calibrated": expected_calibration_error(calibrated_confidences(cmap, held), hit) if held else None,
        "heldout_ece_calibrated_biased_fit": expected_calibration_error(calibrated_confidences(biased, held), hit) if held else None,
        "heldout_unbiased_examples": len(fair),
        "heldout_unbiased_ece_raw": expected_calibration_error([e.confidence for e in fair], fair_hit) if fair else None,
        "heldout_unbiased_ece_calibrated": expected_calibration_error(calibrated_confidences(cmap, fair), fair_hit) if fair else None,
        "per_seed": per_seed,
        **{k: _pool([s[k] for s in per_seed]) for k in (per_seed[0] if per_seed else {}) if k != "seed"},
    }
    (out / f"calibration_eval_inf{informativeness:g}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _pool(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    keys = ("safety_found", "safety_events", "found", "events", "frames_correct", "frames", "teacher_calls")
    pooled: dict[str, Any] = {k: sum(int(r[k]) for r in runs) for k in keys}
    reasons: Counter[str] = Counter()
    for r in runs:
        reasons.update(r["reasons"])
    pooled["reasons"] = dict(sorted(reasons.items()))
    return pooled


def _eval_line(name: str, p: Mapping[str, Any]) -> str:
    return (f"{name:<16} safety recall {p['safety_found']}/{p['safety_events']}  event recall {p['found']}/{p['events']}  "
            f"frame accuracy {p['frames_correct'] / max(1, p['frames']) * 100:.1f}%  teacher calls {p['teacher_calls']}  "
            f"escalations {', '.join(f'{k} {v}' for k, v in p['reasons'].items())}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tools.calibration evaluate``: raw against calibrated confidence (simulated pair)."""
    from commands.main import _ArgumentParser

    p = _ArgumentParser(prog="python -m tools.calibration evaluate")
    p.add_argument("command", choices=["evaluate"])
    p.add_argument("--fit-seeds", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--test-seeds", default="100,101,102,103,104,105,106,107,108,109")
    p.add_argument("--informativeness", default="0,0.5,1", help="comma-separated simulated confidence informativeness values")
    p.add_argument("--labels", type=Path, help="labels file (default: the demo clip)")
    p.add_argument("--calibrated-min-confidence", default="", help="also run calibrated with these min_confidence values")
    p.add_argument("--ablations", action="store_true", help="also run the old (biased) fit and the new map with the raw-scale policy")
    p.add_argument("--config", type=Path)
    p.add_argument("--out", type=Path, default=Path("edgewatch-calibration-eval"))
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    from pipeline.config import load_settings

    logging.basicConfig(level=logging.ERROR)
    base = load_settings(args.config)
    fit = [int(s) for s in args.fit_seeds.split(",") if s.strip()]
    test = [int(s) for s in args.test_seeds.split(",") if s.strip()]
    for inf in (float(x) for x in args.informativeness.split(",") if x.strip()):
        r = evaluate_calibration(fit_seeds=fit, test_seeds=test, informativeness=inf, out=args.out / f"inf{inf:g}",
                                 base=base, labels_path=args.labels,
                                 calibrated_min_confidence=[float(x) for x in args.calibrated_min_confidence.split(",") if x.strip()],
                                 ablations=args.ablations)
        print(f"backend simulated, informativeness {inf:g}: map {r['map']} from {r['fit_examples']} examples "
              f"(groups {', '.join(r['map_groups']) or '-'}); held-out ECE raw {r['heldout_ece_raw']:.3f} -> "
              f"calibrated {r['heldout_ece_calibrated']:.3f} (biased fit {r['heldout_ece_calibrated_biased_fit']:.3f}) on "
              f"{r['heldout_examples']} examples; on the {r['heldout_unbiased_examples']} flagged or audit examples "
              f"raw {r['heldout_unbiased_ece_raw']:.3f} -> calibrated {r['heldout_unbiased_ece_calibrated']:.3f}")
        for key in [k for k in r if k == "raw" or k.startswith("calibrated")]:
            print("  " + _eval_line(key, r[key]))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
