"""The student's fire and smoke rules: colour is never enough, the region must behave like flames or smoke.

Fire: a flame-coloured region that is *new* in the scene (not a wooden floor or a sunlit
wall), stays where it is, and flickers — its outline and its pixels' brightness change
between analysed frames — in ``FIRE_PERSIST`` analysed frames in a row.  A steady emitter
(lamp, screen, billboard, reflection) keeps its outline and brightness; an orange object
(a balloon, a vest) moves as one body.

Smoke: only where flames were seen in this camera within ``SMOKE_AFTER_FIRE_S``.  A soft,
grey, detail-veiling region that persists and spreads; or a veil drifting over the view next to
the flames, taking brightness up and detail away from new patches frame after frame
(`offline_veil`).  Without visible flames the student
reports haze at most: grey soft regions without a source are far more often shadows, coats,
fog or exposure changes than smoke, and a false smoke alarm is a defect.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.analyzers.offline_veil import VeilState, judge_veil
from pipeline.analyzers.offline_vision import WorkImage, clean_mask, region_name, smoke_mask

FIRE_MIN_AREA = 0.0015
FIRE_FLICKER = 0.15
"""Changed share of the union of two consecutive flame masks: flames re-shape, a lamp does not."""
FIRE_PIXEL_CHANGE = 12.0
"""Mean brightness change (0..255) of the region's pixels between analysed frames."""
FIRE_PERSIST = 3
"""Analysed frames in a row the region must flicker in place before fire is claimed."""
SMOKE_MIN_AREA = 0.005
SMOKE_SOFTNESS = 0.16
"""Mean edge gradient of the difference over its mean: smoke's haze is soft, objects are crisp."""
SMOKE_VEIL = 0.8
"""Detail (Laplacian) inside a smoke region must fall below this share of the background's there."""
SMOKE_AFTER_FIRE_S = 60.0
"""Smoke is claimed only within this many seconds of flames seen in the same camera."""
VEIL_FLAME_MEMORY_S = 3.0
"""Flame colour seen this recently marks where a drifting veil may be its smoke."""


@dataclass
class FireState:
    """Per-camera memory of the fire and smoke rules."""

    history: deque[tuple[float, np.ndarray, np.ndarray]] = field(default_factory=lambda: deque(maxlen=8))
    """(t, flame mask, value channel) of the latest analysed frames that had a flame-coloured region."""
    streak: int = 0
    """Consecutive analysed frames whose region flickered in place."""
    last_fire_t: float | None = None
    smoke_history: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=6))
    veil: VeilState = field(default_factory=VeilState)
    """The drifting-veil smoke cue (`offline_veil`)."""

    def clear(self) -> None:
        self.history.clear()
        self.streak = 0
        self.smoke_history.clear()
        self.veil.clear()


def fire_evidence(current: np.ndarray, previous: np.ndarray, recent: np.ndarray) -> tuple[float, bool, bool]:
    """(flicker, anchored, rigid) of a flame-coloured mask against the previous analysed frame's.

    Flicker is the changed share of the union of the two masks.  Anchored: most of the mask
    lies where flame colour was seen in the recent frames (``recent``: their union) — a
    burning area stays where it burns even when its flames come and go.  Rigid: once the two
    masks are aligned on their centroids they still overlap well — one body that moved (a
    balloon, a coat, a car), not flames that re-shape.
    """
    cur, prev = current.astype(bool), previous.astype(bool)
    union = int((cur | prev).sum())
    if union == 0 or cur.sum() == 0 or prev.sum() == 0:
        return 0.0, False, False
    flicker = float((cur ^ prev).sum()) / union
    around = cv2.dilate(recent.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    anchored = float((cur & around).sum()) / float(cur.sum()) >= 0.5
    ys_c, xs_c = np.nonzero(cur)
    ys_p, xs_p = np.nonzero(prev)
    dx, dy = int(round(xs_c.mean() - xs_p.mean())), int(round(ys_c.mean() - ys_p.mean()))
    shifted = np.roll(np.roll(prev, dy, axis=0), dx, axis=1)
    aligned_iou = float((cur & shifted).sum()) / max(1, int((cur | shifted).sum()))
    raw_iou = float((cur & prev).sum()) / union
    # Aligning must explain the change: flames that flicker in place gain nothing from it.
    rigid = aligned_iou >= 0.5 and aligned_iou >= raw_iou + 0.2
    return flicker, anchored, rigid


def judge_fire(st: FireState, t: float, work: WorkImage, fire: np.ndarray) -> tuple[str | None, float, bool]:
    """(observation, strength, is_fire) for this frame's flame-coloured, new-in-scene mask."""
    area = float(fire.mean())
    if area < FIRE_MIN_AREA:
        st.history.clear()
        st.streak = 0
        return None, 0.0, False
    value = work.hsv[..., 2].astype(np.float32)
    previous = st.history[-1] if st.history else None
    st.history.append((t, fire, value))
    ys, xs = np.nonzero(fire)
    where = region_name(float(xs.mean()) / fire.shape[1])
    if previous is None or t - previous[0] > 3.0:
        st.streak = 0
        return f"orange light at {where}", 0.6, False
    recent = np.zeros(fire.shape, bool)
    for ts, mask, _ in list(st.history)[:-1]:
        if t - ts <= 3.0:
            recent |= mask.astype(bool)
    flicker, anchored, rigid = fire_evidence(fire, previous[1], recent)
    both = fire.astype(bool) | previous[1].astype(bool)
    pixel_change = float(np.abs(value - previous[2])[both].mean())
    if anchored and not rigid and flicker >= FIRE_FLICKER and pixel_change >= FIRE_PIXEL_CHANGE:
        st.streak += 1
    else:
        st.streak = 0
    if rigid or not anchored:
        return f"orange object moving at {where}", 0.6, False
    if st.streak == 0:
        return f"steady orange light at {where}", 0.75, False
    if st.streak + 1 < FIRE_PERSIST:
        return f"orange light flickering at {where}", 0.6, False
    oldest_t, oldest, _ = st.history[0]
    growth = area / max(1e-6, float(oldest.mean())) if t - oldest_t >= 1.0 else 1.0
    st.last_fire_t = t
    return f"flickering fire at {where}" + (", growing" if growth >= 1.3 else ""), (0.85 if growth >= 1.3 else 0.75), True


def soft_grey_region(work: WorkImage, diff: np.ndarray, fg: np.ndarray, fire: np.ndarray,
                     background: np.ndarray | None = None) -> tuple[float, float, np.ndarray]:
    """(area share, softness, region mask) of the largest changed region that is grey and soft-edged, like smoke."""
    cand = clean_mask(fg.astype(bool) & smoke_mask(work).astype(bool) & ~fire.astype(bool))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    if n <= 1:
        return 0.0, 1.0, np.zeros(fg.shape, bool)
    i = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region = labels == i
    area = float(region.mean())
    gx = cv2.Sobel(diff, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(diff, cv2.CV_32F, 0, 1, ksize=3)
    grad = cv2.magnitude(gx, gy)
    zone = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    mean_diff = float(diff[region].mean()) if region.any() else 0.0
    softness = float(grad[zone].mean()) / (8.0 * mean_diff) if mean_diff > 1e-3 else 1.0
    if background is not None:
        # Haze hides detail: the region's own edges must be weaker than the background's there.
        def detail(img: np.ndarray) -> float:
            return float(np.abs(cv2.Laplacian(img, cv2.CV_32F))[region].mean())
        bg_detail = detail(background)
        if bg_detail > 0.5 and detail(work.grey) > SMOKE_VEIL * bg_detail:
            softness = 1.0
    return area, softness, region


def judge_smoke(st: FireState, t: float, work: WorkImage, diff: np.ndarray, fg: np.ndarray, fire: np.ndarray,
                background: np.ndarray | None) -> tuple[str | None, float, bool, np.ndarray | None]:
    """(observation, strength, is_smoke, region) — region so blobs inside the haze are not objects."""
    flames = np.zeros(fire.shape, bool)
    for ts, mask, _ in st.history:
        if t - ts <= VEIL_FLAME_MEMORY_S and mask.shape == flames.shape:
            flames |= mask.astype(bool)
    veil_share, veiling = judge_veil(st.veil, t, work.grey, work.hsv, flames)
    if st.last_fire_t is None or t - st.last_fire_t > SMOKE_AFTER_FIRE_S:
        st.smoke_history.clear()
        return None, 0.0, False, None
    if veiling:
        # Grey light drifting over the scene next to the flames, veiling new ground frame after frame.
        return f"smoke drifting over the view near the fire ({veil_share:.1%} newly veiled)", 0.7, True, None
    area, softness, region = soft_grey_region(work, diff, fg, fire, background)
    if area < SMOKE_MIN_AREA or softness > SMOKE_SOFTNESS:
        st.smoke_history.clear()
        return None, 0.0, False, None
    st.smoke_history.append((t, area))
    if len(st.smoke_history) < 3:
        # Smoke must persist and spread over three analysed frames.
        return "grey haze", 0.55, False, region
    first_area = st.smoke_history[0][1]
    areas = [a for _, a in st.smoke_history]
    steady_or_growing = all(b >= 0.9 * a for a, b in zip(areas[-3:], areas[-2:]))
    if steady_or_growing and (area >= 1.15 * first_area or area >= 0.03):
        return ("smoke rising" if area < 0.03 else "smoke spreading"), (0.7 if area >= 0.02 else 0.6), True, region
    return "grey haze", 0.55, False, region
