"""Plots (matplotlib is optional, the ``plots`` extra): cost–quality curves and per-clip timelines."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.sinks.decision_log import EscalationSent, FrameDecision, StateTransition, VerdictReceived, read_decisions
from tools.evaluation.runs import POLICIES
from tools.evaluation.scoring import RunRecord, detections_from_events, read_event_log
from tools.labels import ClipLabels, LabelSet

log = logging.getLogger("edgewatch.evaluation")


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
    decisions = list(read_decisions(run_dir / "decisions.jsonl"))
    detections = detections_from_events(read_event_log(run_dir / "events.jsonl"))
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
    reports = [d for d in decisions if isinstance(d, FrameDecision)]
    for r in reports:
        for f in (r.student or {}).get("safetyFlags", []):
            if f in row:
                ax.plot(r.t, row[f], "k|", markersize=6)
    for d in decisions:
        if isinstance(d, EscalationSent):
            ax.axvline(d.t, color="tab:orange", alpha=0.5, lw=1)
        elif isinstance(d, VerdictReceived):
            ax.plot(d.t, -0.8, "v", color="tab:green" if d.verdict.get("verdict") == "confirmed" else "tab:gray")
        elif isinstance(d, StateTransition):
            ax.text(d.t, len(types) - 0.3, d.dest or "", fontsize=6, rotation=90, va="bottom")
    ax.set_yticks(range(len(types)), types)
    ax.set_ylim(-1.2, len(types) + 0.8)
    ax.set_title(f"{clip.file} — ours, {backend} pair, seed {seed}: labels (green), alerts (red), activity (blue), "
                 "dismissed (grey), student flags (|), escalations (orange), verdicts (v)", fontsize=8)
    axc.plot([r.t for r in reports], [(r.student or {}).get("confidence", 0) for r in reports], ".-", ms=3)
    axc.set_ylabel("student conf.")
    axc.set_xlabel("source seconds")
    axc.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["cost_quality_plot", "write_plots"]
