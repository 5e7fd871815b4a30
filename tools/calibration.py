"""Calibration reports: the reliability table (student confidence in bins against the share of
reports the teacher agreed with) and the expected calibration error (ECE), raw and through the
calibration map (`pipeline.learning.calibration_map`, which also explains what "agrees" means).
Readiness is `tools.readiness`, the dataset export `tools.dataset_export`, the routing experiment
`tools.calibration_eval`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.learning.calibration_map import CalibrationMap, Example, OVERALL, calibrated_confidences, examples_from, fit_calibration, group_of

log = logging.getLogger("edgewatch.calibration")

DEFAULT_BINS = 10


# --------------------------------------------------------------------------------------
# Examples, reliability, ECE
# --------------------------------------------------------------------------------------








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














# --------------------------------------------------------------------------------------
# What the runner holds
# --------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------
# Readiness
# --------------------------------------------------------------------------------------
















# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------
















# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------








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










__all__ = ["CalibrationMap", "Example", "Learner", "MonotoneMap", "Readiness", "cmd_calibration", "cmd_export_dataset",
           "cmd_finetune_readiness", "examples_from", "expected_calibration_error", "export_dataset", "fit_calibration",
           "isotonic_fit", "prompt_plateau", "readiness", "reliability_table", "split_records"]


# --------------------------------------------------------------------------------------
# Measuring it: the evaluation harness with raw against calibrated confidence
# --------------------------------------------------------------------------------------















