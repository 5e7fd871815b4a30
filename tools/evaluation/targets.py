"""Issue 17's targets, checked against the aggregates of one confidence setting.

* ours finds at least as many safety events as student only, summed over clips, on every seed;
* every fixed-interval and confidence-only point is dominated by an ours point (no more
  model-seconds, no lower event F1, no later time to alert on the safety events both found);
* the best ours point at <= 20% of teacher-only model-seconds keeps >= 97% of teacher-only event
  F1 with safety recall at least teacher-only's;
* tamper and scene-cut events are found by teacher only and by ours.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from tools.evaluation.scoring import format_cell as _fmt
from tools.evaluation.scoring import mean_of as _mean

#: Share of teacher-only model-seconds the cheap ours point may cost, and the share of its event F1 it must keep.
COST_SHARE = 0.2
F1_SHARE = 0.97


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
        cheap = [(n, v) for n, v in ours_points.items() if (_mean(agg, n, "model_seconds") or math.inf) <= COST_SHARE * t_cost]
        if cheap:
            name, best = max(cheap, key=lambda nv: _mean(agg, nv[0], "event_f1") or 0.0)
            f1, safety = _mean(agg, name, "event_f1") or 0.0, _mean(agg, name, "safety_recall") or 0.0
            ok = f1 >= F1_SHARE * t_f1 and (t_safety is None or safety >= t_safety - 1e-9)
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


__all__ = ["COST_SHARE", "F1_SHARE", "dominated", "paired_time_to_alert", "target_check"]
