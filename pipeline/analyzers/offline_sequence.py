"""Sequence-level measurements for the offline teacher: dense optical flow between keyframes,
silhouettes against the sequence's own references, and full-resolution person detection.

None of this is what the student measures frame by frame (a running background, blob tracks,
HOG on blob regions, colour masks against the previous analysed frame): the teacher's
evidence comes from how whole keyframes move into one another, so a student rule that is
fooled does not fool the teacher the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.analyzers.offline_vision import (
    Blob,
    HogPeople,
    WorkImage,
    find_blobs,
    fire_mask,
    foreground,
    intensity_similarity,
    prepare,
    structure_similarity,
    uniform_share,
)

FG_THRESHOLD = 22.0
COVERED_STD = 7.0
COVERED_SHARPNESS = 2.0
HOG_PERSON_WEIGHT = 0.5
FLOW_WIDTH = 160
"""Width of the grey images dense flow runs on: motion of people and flames survives it, noise does not."""
CUT_SIMILARITY = 0.4
"""Structure and intensity correlation below which two keyframes may show different views."""
CUT_UNEXPLAINED = 0.5
"""Share of pixels still changed after warping one keyframe onto the other by the flow: a cut leaves most."""


def is_covered(work: WorkImage) -> bool:
    """A near-uniform view: covered lens, blank feed, blinded sensor (a caption on it does not count)."""
    return (work.std < COVERED_STD and work.sharpness < COVERED_SHARPNESS) or uniform_share(work) >= 0.95


def fit_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, int(round(h * width / w)))), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Keyframe:
    t: float
    work: WorkImage
    image: np.ndarray
    covered: bool
    people: tuple[Blob, ...]
    """Upright people found by HOG on the whole frame at >= 640 px wide (normalised boxes)."""
    blobs: tuple[Blob, ...]
    """Regions that differ from the sequence's per-pixel median (what moves through the sequence)."""
    fire: np.ndarray
    """Flame-coloured pixels (0/1) of this keyframe, whatever they do."""
    vs_first: tuple[Blob, ...] = ()
    """Regions that differ from the first keyframe (what arrived or changed since)."""
    vs_last: tuple[Blob, ...] = ()
    """Regions that differ from the last keyframe (what was there before and left or changed)."""


@dataclass(frozen=True)
class PairMotion:
    """Dense optical flow from one keyframe to the next."""

    a: int
    b: int
    flow: np.ndarray
    """(h, w, 2) flow at FLOW_WIDTH, in pixels of that size."""
    unexplained: float
    """Share of pixels that still differ after warping ``b`` back onto ``a`` by the flow."""
    similarity: float
    """The larger of the structure and intensity correlations of the two keyframes."""

    @property
    def is_cut(self) -> bool:
        """A different view: nothing moved into it, the picture was replaced."""
        return self.similarity < CUT_SIMILARITY and self.unexplained >= CUT_UNEXPLAINED


def _grey_small(work: WorkImage) -> np.ndarray:
    g = np.clip(work.grey, 0, 255).astype(np.uint8)
    h, w = g.shape
    return cv2.resize(g, (FLOW_WIDTH, max(8, int(round(h * FLOW_WIDTH / w)))), interpolation=cv2.INTER_AREA)


def pair_motion(frames: list[Keyframe], i: int, j: int) -> PairMotion:
    a, b = _grey_small(frames[i].work), _grey_small(frames[j].work)
    flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    h, w = a.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = cv2.remap(b, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Gain-compensated, so auto-exposure is not "unexplained".
    af, wf = a.astype(np.float32), warped.astype(np.float32)
    gain = float(np.median(af[af > 15] / np.maximum(wf[af > 15], 1.0))) if (af > 15).sum() > 16 else 1.0
    unexplained = float((np.abs(af - wf * gain) > 25).mean())
    sim = max(structure_similarity(frames[i].work.grey, frames[j].work.grey),
              intensity_similarity(frames[i].work.grey, frames[j].work.grey))
    return PairMotion(i, j, flow, unexplained, sim)


def region_flow(motion: PairMotion, mask: np.ndarray) -> tuple[float, float, float]:
    """(mean dx, mean dy, coherence) of the flow inside a work-size 0/1 mask, in flow pixels.

    Coherence is |mean vector| / mean |vector|: near 1 when the region moves as one body
    (a balloon, a coat), low when its parts move every which way (flames, haze).
    """
    fh, fw = motion.flow.shape[:2]
    m = cv2.resize(mask.astype(np.uint8), (fw, fh), interpolation=cv2.INTER_NEAREST).astype(bool)
    if int(m.sum()) < 4:
        return 0.0, 0.0, 0.0
    v = motion.flow[m]
    mean = v.mean(axis=0)
    mag = float(np.linalg.norm(v, axis=1).mean())
    coherence = float(np.linalg.norm(mean)) / mag if mag > 1e-3 else 0.0
    return float(mean[0]), float(mean[1]), coherence


class SequenceReader:
    """Turns an escalation's keyframes into `Keyframe`s (one HOG detector, reused under its lock)."""

    def __init__(self, min_blob_area: float) -> None:
        self._min_blob_area = min_blob_area
        self._hog = HogPeople()

    def read(self, items: list[tuple[float, np.ndarray]]) -> list[Keyframe]:
        works = []
        for t, img in sorted(items, key=lambda it: it[0]):
            if img is None or img.ndim < 2 or img.shape[0] < 8 or img.shape[1] < 8:
                continue
            works.append((t, prepare(img), img))
        if not works:
            return []
        shape = works[0][1].grey.shape
        same = [w for w in works if w[1].grey.shape == shape]
        # The per-pixel median of the sequence is the scene without whatever moves through it.
        median = np.median(np.stack([w[1].grey for w in same if not is_covered(w[1])] or [same[0][1].grey]), axis=0)
        first, last = same[0][1].grey, same[-1][1].grey

        def regions(grey: np.ndarray, reference: np.ndarray) -> tuple[Blob, ...]:
            fg, _ = foreground(grey, reference, FG_THRESHOLD)
            return tuple(find_blobs(fg, self._min_blob_area))

        out = []
        for t, work, img in same:
            covered = is_covered(work)
            blobs = regions(work.grey, median) if not covered else ()
            vs_first = regions(work.grey, first) if not covered and work.grey is not first else ()
            vs_last = regions(work.grey, last) if not covered and work.grey is not last else ()
            people = self._people(img) if not covered else ()
            fire = cv2.morphologyEx(fire_mask(work), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
            out.append(Keyframe(t, work, img, covered, people, blobs, fire, vs_first, vs_last))
        return out

    def _people(self, img: np.ndarray) -> tuple[Blob, ...]:
        # HOG needs a person at least one 128 px window tall: look at >= 640 px wide.
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        small = fit_width(img, 640) if img.shape[1] >= 640 else cv2.resize(
            img, (640, max(1, int(round(img.shape[0] * 640 / img.shape[1])))), interpolation=cv2.INTER_LINEAR)
        H, W = small.shape[:2]
        people = []
        for x, y, w, h, _ in self._hog.detect(small, threshold=HOG_PERSON_WEIGHT, scale=1.05):
            # HOG boxes carry a margin around the body: keep the body's own extent.
            bx, by, bw, bh = x + 0.3 * w, y + 0.1 * h, 0.4 * w, 0.8 * h
            people.append(Blob(bx / W, by / H, bw / W, bh / H, bw * bh / (W * H), bh / max(1.0, bw)))
        return tuple(people)
