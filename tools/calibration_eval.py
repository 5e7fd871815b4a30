"""Raw against calibrated confidence in routing (simulated pair): fit the map on some seeds, route
held-out seeds with and without it (docs/LEARNING.md).
"""

from __future__ import annotations
import json
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from pipeline.learning.agreement_store import AgreementStore
from pipeline.clock import SystemClock
from pipeline.config.settings import Settings
from pipeline.sinks.decision_log import EscalationSent, VerdictReceived, read_decisions
from pipeline.records import Escalation, FrameReport, Verdict
from pipeline.learning.calibration_map import CalibrationMap, calibrated_confidences, examples_from, fit_calibration, unbiased_examples
from tools.calibration import expected_calibration_error


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

    decisions = list(read_decisions(out_dir / "decisions.jsonl"))
    score = score_clip(clip, detections_from_events(read("events.jsonl")),
                       sample_grid(clip, base.capture.sample_fps, base.evaluation.match_tolerance_s), base.evaluation.match_tolerance_s)
    return {"safety_found": score.safety_found, "safety_events": score.safety_events, "found": score.found, "events": score.events,
            "frames_correct": score.frames_correct, "frames": score.frames,
            "teacher_calls": sum(1 for d in decisions if isinstance(d, VerdictReceived)),
            "reasons": dict(Counter(d.reason for d in decisions if isinstance(d, EscalationSent)))}


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


def eval_line(name: str, p: Mapping[str, Any]) -> str:
    return (f"{name:<16} safety recall {p['safety_found']}/{p['safety_events']}  event recall {p['found']}/{p['events']}  "
            f"frame accuracy {p['frames_correct'] / max(1, p['frames']) * 100:.1f}%  teacher calls {p['teacher_calls']}  "
            f"escalations {', '.join(f'{k} {v}' for k, v in p['reasons'].items())}")
