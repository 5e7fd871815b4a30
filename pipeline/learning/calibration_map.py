"""The calibration map used at run time, and the Learner the runner holds.

Every teacher verdict in the agreement store (`pipeline.learning.agreement_store`) labels the
student's reports on the keyframes the teacher saw: a report **agrees** when its safety flags
(normalised, ``model_error`` left out) equal the teacher's.  From those labels a monotone map
(isotonic regression by pool-adjacent-violators) turns raw confidence into the probability of
agreeing, fitted overall and per flag ("none" = reports without a flag) once a group has
``learning.calibration_min_examples`` examples.  `CalibrationMap.apply` picks the flag's map
(the lowest when several flags), else the overall one, else leaves the confidence raw.  Each
fitted map has a version (``cal/<examples>-<hash>``; ``raw`` = identity).  The `Learner` fits
*selection-aware* (`unbiased_examples`): unflagged reports only from audits, since the others
were stored because something else escalated (docs/LEARNING.md).  Reports on the map
(reliability, ECE, readiness, export) are tools: `tools.calibration`.
"""

from __future__ import annotations

import logging
import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
import numpy as np
from pipeline.learning.agreement_store import AddResult, AgreementRecord, AgreementStore, safety_set, store_path_for
from pipeline.clock import Clock
from pipeline.config.learning import LearningConfig
from pipeline.config.settings import Settings
from pipeline.sinks.decision_log import CalibrationChange
from pipeline.records import Escalation, FrameReport, Verdict, VerdictKind

log = logging.getLogger("edgewatch.learning")

RAW_VERSION = "raw"


NO_FLAG = "none"


OVERALL = "overall"


#: Refit the map after this many newly stored records.
REFIT_EVERY = 20


#: Raw confidences remembered per Learner (for restoring them in the store).
_RAW_MEMORY = 20_000


#: A verdict below this teacher confidence is not a good fine-tuning example.
MIN_TEACHER_CONFIDENCE = 0.5


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


class Learner:
    """The agreement store plus the calibration map in force (runner's thread only).

    Wiring (runner): ``report = learner.calibrate(report)`` before the window sees a report;
    ``learner.record(result.escalation, verdict, thresholds=..., skill_version=...)`` for each
    verdict; ``learner.close()`` at the end.  ``on_change`` receives a decision-log record
    (``kind: calibration``) whenever a new map version comes into force.
    """

    def __init__(self, store: AgreementStore, cfg: LearningConfig, *,
                 on_change: Callable[[CalibrationChange], None] | None = None, refit_every: int = REFIT_EVERY) -> None:
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
    def open(cls, settings: Settings, clock: Clock, *, on_change: Callable[[CalibrationChange], None] | None = None) -> "Learner | None":
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
                self.on_change(CalibrationChange(version=new.version, examples=new.examples, groups=sorted(new.by_flag),
                                                 applied=self.cfg.calibrate and not new.is_identity))
        return self.map

    def close(self) -> None:
        self.store.close()
