"""Argument parsing and text for `edgewatch thresholds`: the periods, what is in force now, feedback rates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from commands.parsing import ArgumentParser
from pipeline.incidents.threshold_state import resolve_state_path
from pipeline.incidents.thresholds import ThresholdController


def _format_values(values: Mapping[str, Any]) -> str:
    parts = [
        f"min_conf {values['min_confidence']:.2f}",
        f"persistence {values['persistence_k']}/{values['persistence_n']}",
        f"audit every {values['audit_every']}",
        f"flip limit {values['flip_limit']}",
        f"gate {values['gate_block_min_change']:g}",
        f"{values['sample_fps']:g} fps",
    ]
    per_flag = [f"{k[len('persistence_k['):-1]} k={v}" for k, v in values.items() if k.startswith("persistence_k[")]
    if per_flag:
        parts.append("per-flag " + ", ".join(per_flag))
    return ", ".join(parts)


def render_summary(summary: Mapping[str, Any]) -> str:
    inforce = summary["in_force"]
    lines = [
        f"camera {summary['camera']}: period {inforce['period']} ({inforce['period_reason']}) at {inforce['local_time']} "
        f"[{summary['timezone']}]" + ("" if summary["enabled"] else " — adaptation disabled"),
        "  periods (thresholds in force per period, feedback included):",
    ]
    for name, p in summary["periods"].items():
        when = p["clock"] or "otherwise"
        light = f", brightness {p['brightness'][0]:g}-{p['brightness'][1]:g}" if p["brightness"] else ""
        lines.append(f"    {name:<10} {when}{light}: {_format_values(p['thresholds'])}")
    feedback = summary["feedback"]
    if not any(feedback.values()):
        lines.append("  teacher feedback: none recorded yet")
    else:
        lines.append("  teacher feedback (smoothed rates per period and flag):")
        for period, table in feedback.items():
            for key, fb in table.items():
                lines.append(
                    f"    {period:<10} {key:<16} dismissed {fb['dismissal_rate']:.2f} of {fb['verdicts']} verdicts, "
                    f"audit misses {fb['miss_rate']:.2f} of {fb['audits']} audits, adjustment {fb['offset']:+d}"
                )
    lines.append(f"  state file: {summary['state_file']}" + (f" — WARNING: {summary['state_warning']}" if summary["state_warning"] else ""))
    return "\n".join(lines)




def cmd_thresholds(argv: Sequence[str]) -> int:
    """Print the periods, the thresholds in force now and the feedback rates of each camera."""
    from pipeline.clock import SystemClock
    from pipeline.config.loading import load_settings

    parser = ArgumentParser(prog="edgewatch thresholds", description="Show adaptive thresholds: periods, what is in force now, teacher-feedback rates.")
    parser.add_argument("--config", type=Path, help="YAML config file")
    parser.add_argument("--state", type=Path, help="feedback state file (default: adaptive.state_file or OUT/thresholds_state.json)")
    parser.add_argument("--camera", action="append", default=[], help="camera id (repeatable; default: config camera_id and every camera in the state file)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(list(argv))
    settings = load_settings(args.config)
    state_path = args.state or resolve_state_path(settings)
    cameras = list(args.camera)
    if not cameras:
        cameras = [settings.camera_id]
        try:
            data = json.loads(state_path.read_text(encoding="utf-8")) if state_path.exists() else {}
            stored = data.get("cameras", {}) if isinstance(data, dict) else {}
            cameras += sorted(c for c in stored if isinstance(c, str) and c not in cameras)
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # the controller below reports the unusable file
    clock = SystemClock()
    summaries = []
    for camera in cameras:
        controller = ThresholdController(settings, camera, clock, state_path, live=True)
        controller.update(0.0)
        summaries.append(controller.summary())
    if args.json:
        sys.stdout.write(json.dumps(summaries, indent=1, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(render_summary(s) for s in summaries) + "\n")
    return 0
