"""The report: tables (markdown), the per-type table by the referee's rules, and report.md."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.config import Settings
from tools import referee
from tools.evaluation.runs import POLICIES
from tools.evaluation.scoring import RunRecord
from tools.evaluation.scoring import format_cell as _fmt
from tools.evaluation.targets import target_check
from tools.labels import ClipLabels, LabelSet
from tools.referee import RefereeScore

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


def markdown_table(agg: dict[str, dict[str, Any]], variants: Sequence[str]) -> str:
    head = "| policy | " + " | ".join(label for _, label, _ in _COLUMNS) + " |"
    sep = "|---|" + "|".join("---:" for _ in _COLUMNS) + "|"
    rows = [head, sep]
    for name in variants:
        if name not in agg:
            continue
        rows.append(f"| {name} | " + " | ".join(_fmt(agg[name].get(key), kind) for key, _, kind in _COLUMNS) + " |")
    return "\n".join(rows)



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


def json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(type(value).__name__)


def sweep_table(rows: Sequence[dict[str, Any]]) -> str:
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


def report_markdown(*, pair: str, labels: LabelSet, clips: Sequence[ClipLabels], seeds: Sequence[int], base: Settings,
                     blocks: Sequence[Any], skipped: Sequence[str], model_sweep: Sequence[dict[str, Any]],
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
        lines += ["", "## Sweep over the simulated student", "", sweep_table(model_sweep)]
    if plots:
        lines += ["", "## Plots", "", *[f"- {Path(p).relative_to(out) if Path(p).is_relative_to(out) else p}" for p in plots]]
    return "\n".join(lines) + "\n"


__all__ = ["json_default", "markdown_table", "referee_scores", "report_markdown", "sweep_table"]
