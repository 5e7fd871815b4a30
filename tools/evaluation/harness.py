"""``edgewatch evaluate``: every policy variant on every clip, seed and confidence setting.

Work is split by clip: one job runs every (confidence setting, seed, variant) of one clip, so a
clip is decoded once (`replay.record_clip`, simulated pair) and replayed to all its runs; jobs
run in a pool of ``workers`` processes.  Records come back in a fixed order whatever finishes
first, so a report does not depend on the pool.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from pipeline.errors import UsageError
from tools.evaluation.plots import write_plots
from tools.evaluation.report import json_default, markdown_table, referee_scores, report_markdown
from tools.evaluation.runs import POLICIES, Variant, run_variant, variant_settings
from tools.evaluation.scoring import RunRecord, aggregate, sample_grid
from tools.evaluation.sweeps import (SWEEP_INFORMATIVENESS, SWEEP_STUDENT_ACCURACY, SWEEPS, cost_quality_points,
                                     variants_for)
from tools.labels import ClipLabels, LabelSet
from tools.referee import RefereeScore

log = logging.getLogger("edgewatch.evaluation")

#: Loggers whose level the parent passes to its workers (the command quiets per-run warnings).
QUIETED_LOGGERS = ("edgewatch", "edgewatch.runner", "edgewatch.states")


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


@dataclass(frozen=True)
class ClipJob:
    """Every run of one clip: each (settings, runs folder) for each seed, each variant."""

    labels: LabelSet
    clip: ClipLabels
    clip_index: int
    pair: str
    seeds: tuple[int, ...]
    variants: tuple[Variant, ...]
    settings: tuple[tuple[Settings, Path], ...]
    fixed_interval_s: float | None
    replay: bool
    log_levels: dict[str, int] = field(default_factory=dict)


def run_clip(job: ClipJob) -> list[list[RunRecord]]:
    """The records of one clip, per entry of ``job.settings`` (in seed, then variant order)."""
    for name, level in job.log_levels.items():
        logging.getLogger(name).setLevel(level)
    recording = None
    if job.replay and job.pair == "simulated":
        from tools.evaluation.replay import record_clip

        first = variant_settings(job.settings[0][0], Variant("ours", "ours"), job.clip_index, job.settings[0][1])
        recording = record_clip(job.labels.video_path(job.clip), first)
    out: list[list[RunRecord]] = []
    for settings, runs_dir in job.settings:
        grid = sample_grid(job.clip, settings.capture.sample_fps, settings.evaluation.match_tolerance_s)
        records: list[RunRecord] = []
        for seed in job.seeds:
            mine: list[RunRecord] = []
            for variant in job.variants:
                if variant.policy == "fixed_interval" and variant.fixed_interval_s is None:
                    variant = Variant(variant.policy, variant.name,
                                      fixed_interval_s=job.fixed_interval_s or _matched_interval(job.clip, mine))
                run_dir = runs_dir / f"seed{seed}" / Path(job.clip.file).stem / variant.name.replace("@", "_").replace("=", "")
                log.info("seed %s %s: %s", seed, job.clip.file, variant.name)
                mine.append(run_variant(variant, pair=job.pair, base=settings, labels=job.labels, clip=job.clip,
                                        clip_index=job.clip_index, seed=seed, out_dir=run_dir, grid=grid, recording=recording))
            reference = next((r.analysed for r in mine if r.variant == "student_only"), 0)
            for r in mine:
                r.reference_frames = reference
            records.extend(mine)
        out.append(records)
    return out


def _matched_interval(clip: ClipLabels, done: Sequence[RunRecord]) -> float:
    """Fixed interval whose teacher images on the clip equal ours' (at least one frame)."""
    ours = next((r for r in done if r.variant == "ours"), None)
    images = max(1, ours.teacher_frames if ours else 1)
    return max(0.5, clip.duration_s / images)


def run_all(variants: Sequence[Variant], *, labels: LabelSet, clips: Sequence[ClipLabels], pair: str, seeds: Sequence[int],
            settings: Sequence[tuple[Settings, Path]], fixed_interval_s: float | None, say: Callable[[str], None],
            workers: int = 1, replay: bool = True) -> list[list[RunRecord]]:
    """Every variant on every clip and seed, for each (settings, runs folder); records per entry of
    ``settings``, ordered by seed, clip, variant."""
    # Fixed interval (budget-matched to ours) needs ours first.
    ordered = tuple(sorted(variants, key=lambda v: v.policy == "fixed_interval"))
    levels = {name: logging.getLogger(name).level for name in QUIETED_LOGGERS}
    jobs = [ClipJob(labels, clip, ci, pair, tuple(seeds), ordered, tuple(settings), fixed_interval_s, replay, levels)
            for ci, clip in enumerate(labels.clips) if clip in clips]
    results: list[list[list[RunRecord]]] = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(run_clip(job))
            say(f"{job.clip.file}: {sum(len(r) for r in results[-1])} runs")
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_clip, job) for job in jobs]
            for job, future in zip(jobs, futures):
                results.append(future.result())
                say(f"{job.clip.file}: {sum(len(r) for r in results[-1])} runs")
    per_setting: list[list[RunRecord]] = []
    for k in range(len(settings)):
        mine = [r for clip_result in results for r in clip_result[k]]
        clip_order = {clip.file: i for i, clip in enumerate(clips)}
        mine.sort(key=lambda r: (r.seed, clip_order.get(r.clip, 0)))  # stable: variants keep their order
        per_setting.append(mine)
    return per_setting


def _clips_with_video(labels: LabelSet, only: Sequence[str]) -> tuple[list[ClipLabels], list[str]]:
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
    return clips, skipped


def evaluate(*, labels: LabelSet, pair: str, seeds: Sequence[int], out: Path, base: Settings,
             policies: Sequence[str] = POLICIES, sweep: str = "none", fixed_interval_s: float | None = None,
             only: Sequence[str] = (), progress: Callable[[str], None] | None = None,
             informativeness: Sequence[float] = (), workers: int = 1, replay: bool = True,
             extra_variants: Sequence[Variant] = ()) -> EvaluationResult:
    """Run every policy variant on every clip for every seed, score, aggregate and write the report.

    ``extra_variants``: more points to run beside the policies and sweeps (an ablation's switches)."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise UsageError(f"unknown policy {unknown[0]!r} (choose from {', '.join(POLICIES)})")
    if sweep not in SWEEPS:
        raise UsageError(f"unknown sweep {sweep!r} (choose {', '.join(SWEEPS)})")
    if pair != "simulated" and sweep in ("models", "all"):
        raise UsageError("--sweep models varies the simulated models' parameters: use it with --pair simulated")
    say = progress or (lambda msg: log.info("%s", msg))
    out.mkdir(parents=True, exist_ok=True)
    clips, skipped = _clips_with_video(labels, only)
    # Student-only always runs: its analysed frames are every policy's teacher-share denominator.
    run_policies = list(dict.fromkeys(["student_only", *policies]))
    if "fixed_interval" in run_policies and fixed_interval_s is None and "ours" not in run_policies:
        run_policies.insert(run_policies.index("fixed_interval"), "ours")
    variants = variants_for(run_policies, sweep) + list(extra_variants)
    shown = [v.name for v in variants if v.policy in policies or v.policy == "student_only"]
    order = [n for n in POLICIES if n in shown] + [n for n in shown if n not in POLICIES]
    # The simulated pair runs at each confidence setting; the others have their own confidence.
    settings_by_inf: list[tuple[float | None, Settings]] = [(None, base)]
    if pair == "simulated" and informativeness:
        settings_by_inf = [(inf, base.model_copy(update={"evaluation": base.evaluation.model_copy(
            update={"confidence_informativeness": inf})})) for inf in informativeness]
    where = {inf: (out if len(settings_by_inf) == 1 else out / f"informativeness{inf:g}") for inf, _ in settings_by_inf}
    say(f"{pair} pair: {len(variants)} variant(s) x {len(clips)} clip(s) x {len(seeds)} seed(s) x {len(settings_by_inf)} setting(s)")
    per_setting = run_all(variants, labels=labels, clips=clips, pair=pair, seeds=seeds,
                          settings=[(s, where[inf] / "runs") for inf, s in settings_by_inf],
                          fixed_interval_s=fixed_interval_s, say=say, workers=workers, replay=replay)
    blocks: list[EvaluationBlock] = []
    for (inf, _), records in zip(settings_by_inf, per_setting):
        agg = aggregate(records, seeds)
        blocks.append(EvaluationBlock(inf, records, agg, markdown_table(agg, order), referee_scores(records, order)))
    model_sweep = []
    if sweep in ("models", "all"):
        model_sweep = _model_sweep(labels=labels, clips=clips, seeds=seeds, out=out / "sweep", base=base,
                                   policies=[p for p in POLICIES if p in run_policies], fixed_interval_s=fixed_interval_s,
                                   say=say, workers=workers, replay=replay)
    plots: list[str] = []
    for block in blocks:
        plots += write_plots(where[block.informativeness], block.aggregates, block.records, labels, clips, pair)
    report = report_markdown(pair=pair, labels=labels, clips=clips, seeds=seeds, base=base, blocks=blocks,
                             skipped=skipped, model_sweep=model_sweep, plots=plots, out=out)
    report_path = out / "report.md"
    report_path.write_text(report, encoding="utf-8")
    json_path = out / "report.json"
    records = [r for b in blocks for r in b.records]
    json_path.write_text(json.dumps({
        "pair": pair, "labels": str(labels.path), "clips": [c.file for c in clips], "skipped": skipped,
        "seeds": list(seeds), "evaluation_settings": base.evaluation.model_dump(), "cost_settings": base.cost.model_dump(),
        "escalation_settings": base.escalation.model_dump(), "sample_fps": base.capture.sample_fps,
        "points": cost_quality_points(blocks),
        "aggregates": blocks[0].aggregates,
        "by_informativeness": {f"{b.informativeness:g}": b.aggregates for b in blocks if b.informativeness is not None},
        "model_sweep": model_sweep,
        "runs": [{**r.to_json(), "informativeness": b.informativeness} for b in blocks for r in b.records], "plots": plots,
    }, indent=2, default=json_default) + "\n", encoding="utf-8")
    return EvaluationResult(records, blocks[0].aggregates, model_sweep, skipped, shown, report_path, json_path,
                            "\n\n".join(b.table for b in blocks), blocks)


def _model_sweep(*, labels: LabelSet, clips: Sequence[ClipLabels], seeds: Sequence[int], out: Path, base: Settings,
                 policies: Sequence[str], fixed_interval_s: float | None, say: Callable[[str], None], workers: int,
                 replay: bool) -> list[dict[str, Any]]:
    points = [(acc, inf) for acc in SWEEP_STUDENT_ACCURACY for inf in SWEEP_INFORMATIVENESS]
    settings = [(base.model_copy(update={"evaluation": base.evaluation.model_copy(
        update={"student_accuracy": acc, "confidence_informativeness": inf})}), out / f"acc{acc:g}_inf{inf:g}")
        for acc, inf in points]
    per_point = run_all([Variant(p, p) for p in policies], labels=labels, clips=clips, pair="simulated", seeds=seeds,
                        settings=settings, fixed_interval_s=fixed_interval_s, say=say, workers=workers, replay=replay)
    return [{"student_accuracy": acc, "confidence_informativeness": inf, "aggregates": aggregate(recs, seeds)}
            for (acc, inf), recs in zip(points, per_point)]


__all__ = ["ClipJob", "EvaluationBlock", "EvaluationResult", "evaluate", "run_all", "run_clip"]
