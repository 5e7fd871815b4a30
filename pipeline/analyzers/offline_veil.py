"""Smoke as a drifting veil: the student's second smoke cue, next to a fire.

Smoke between the camera and the scene adds grey light and takes contrast away: where it
drifts in, a patch becomes brighter, greyer (low saturation) and loses the fine detail it
had a moment ago (the texture of the ground, of the floor, of the wall shows through
faintly).  Flames entering a patch brighten it too, but they are saturated; a patch burning
down to ash gets darker; a grey object moving in (a coat, a car) is the concern of the
tracker, and without a fire nearby no veil is smoke here at all (`offline_fire`'s rule).

The cue is temporal by construction: each analysed frame is compared cell by cell with the
previous analysed frame, so a steady haze, fog or a grey wall veils nothing new; smoke keeps
veiling new cells as it drifts.  It must do so over ``VEIL_PERSIST`` analysed frames in a row,
on a share of the frame of at least ``VEIL_MIN_SHARE``, within ``VEIL_NEAR_FIRE`` (a share of
the frame's width) of where flame colour was seen in the last seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CELLS_ACROSS = 32
"""Cells across the frame's width; each cell's brightness, detail and saturation are compared."""
VEIL_BRIGHTER = 8.0
"""A veiled cell's mean grey rose by at least this much (0..255) since the previous analysed frame..."""
VEIL_DETAIL_KEPT = 0.75
"""...its detail (mean absolute Laplacian) fell to at most this share of what it was..."""
VEIL_MAX_SATURATION = 50.0
"""...its mean saturation (0..255) is at most this (grey, not flame-coloured)..."""
VEIL_MIN_DETAIL = 1.0
"""...and it had some texture to veil (a flat wall cannot lose detail)."""
VEIL_MIN_SHARE = 0.012
"""Share of the frame's cells newly veiled in one analysed frame for the frame to count."""
VEIL_PERSIST = 2
"""Analysed frames in a row (each at most ``VEIL_MAX_GAP_S`` after the last) that must count."""
VEIL_MAX_GAP_S = 1.5
VEIL_NEAR_FIRE = 0.2
"""Veiled cells count only within this share of the frame's width of recent flame colour."""


@dataclass(frozen=True, slots=True)
class CellStats:
    """Per-cell mean grey, detail and saturation of one analysed frame."""

    timestamp: float
    grey: np.ndarray
    detail: np.ndarray
    saturation: np.ndarray


@dataclass
class VeilState:
    """Per-camera memory of the veil cue."""

    previous: CellStats | None = None
    streak: int = 0
    last_t: float = float("-inf")

    def clear(self) -> None:
        self.previous = None
        self.streak = 0


def cell_stats(grey: np.ndarray, hsv: np.ndarray, t: float) -> CellStats:
    """Mean grey, mean |Laplacian| and mean saturation per cell (``CELLS_ACROSS`` across)."""
    h, w = grey.shape
    size = max(4, w // CELLS_ACROSS)
    rows, cols = h // size, w // size
    g = grey[:rows * size, :cols * size].astype(np.float32)
    lap = np.abs(cv2.Laplacian(g, cv2.CV_32F))
    sat = hsv[:rows * size, :cols * size, 1].astype(np.float32)

    def per_cell(a: np.ndarray) -> np.ndarray:
        return a.reshape(rows, size, cols, size).mean(axis=(1, 3))

    return CellStats(timestamp=t, grey=per_cell(g), detail=per_cell(lap), saturation=per_cell(sat))


def newly_veiled(now: CellStats, before: CellStats) -> np.ndarray:
    """Cells that became brighter, greyer and softer since ``before`` (boolean, cell grid)."""
    return ((now.grey >= before.grey + VEIL_BRIGHTER) & (now.detail <= VEIL_DETAIL_KEPT * before.detail)
            & (now.saturation <= VEIL_MAX_SATURATION) & (before.detail > VEIL_MIN_DETAIL))


def near(mask: np.ndarray, cells_shape: tuple[int, int], reach: float) -> np.ndarray:
    """Cells within ``reach`` (share of the width) of any pixel of ``mask`` (boolean, cell grid)."""
    rows, cols = cells_shape
    if not mask.any():
        return np.zeros(cells_shape, bool)
    small = cv2.resize(mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_AREA) > 0
    small |= cv2.resize(mask.astype(np.uint8), (cols, rows), interpolation=cv2.INTER_NEAREST) > 0
    k = max(1, int(round(reach * cols)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
    return cv2.dilate(small.astype(np.uint8), kernel).astype(bool)


def judge_veil(st: VeilState, t: float, grey: np.ndarray, hsv: np.ndarray,
               flames: np.ndarray) -> tuple[float, bool]:
    """(share of cells newly veiled near the flames, is_smoke) for one analysed frame.

    ``flames``: where flame colour was seen in the last seconds (boolean, work-image size); the
    caller decides whether there is a fire at all.  Always updates the reference frame.
    """
    now = cell_stats(grey, hsv, t)
    before, st.previous = st.previous, now
    if before is None or before.grey.shape != now.grey.shape or t - before.timestamp > VEIL_MAX_GAP_S:
        st.streak = 0
        return 0.0, False
    veiled = newly_veiled(now, before) & near(flames, now.grey.shape, VEIL_NEAR_FIRE)
    share = float(veiled.mean())
    if share >= VEIL_MIN_SHARE and t - st.last_t <= VEIL_MAX_GAP_S:
        st.streak += 1
    elif share >= VEIL_MIN_SHARE:
        st.streak = 1
    else:
        st.streak = 0
    if share >= VEIL_MIN_SHARE:
        st.last_t = t
    return share, st.streak >= VEIL_PERSIST


__all__ = ["VeilState", "cell_stats", "judge_veil", "newly_veiled"]
