"""OpenCV evidence extractors shared by the offline student and teacher.

Pure functions and small stateless helpers: colour masks, frame statistics, blobs, the HOG
people detector, zone tests.  All work on a downscaled "work" image so a frame costs a few
milliseconds whatever the camera resolution.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.records import Mover

log = logging.getLogger(__name__)

WORK_WIDTH = 320
"""Width of the image most measurements run on (height keeps the aspect)."""


@dataclass(frozen=True, slots=True)
class WorkImage:
    """A frame prepared once: small BGR, HSV, blurred float grey and whole-frame statistics."""

    bgr: np.ndarray
    hsv: np.ndarray
    grey: np.ndarray
    """float32, lightly blurred to suppress sensor noise."""
    mean: float
    std: float
    """Standard deviation of the heavily blurred grey: near 0 for a uniform (covered, blank) view."""
    sharpness: float
    """Laplacian variance of the blurred grey: collapses when the view is defocused or covered."""
    scale: float
    """Full-resolution pixels per work pixel."""


def prepare(image: np.ndarray) -> WorkImage:
    """Downscale and measure a BGR (or grey) uint8 image."""
    img = image
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    scale = max(1.0, w / WORK_WIDTH)
    if scale > 1.0:
        small = cv2.resize(img, (WORK_WIDTH, max(1, int(round(h / scale)))), interpolation=cv2.INTER_AREA)
    else:
        small = np.ascontiguousarray(img)
    grey_u8 = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
    grey = cv2.GaussianBlur(grey_u8.astype(np.float32), (5, 5), 0)
    coarse = cv2.GaussianBlur(grey, (0, 0), sigmaX=2.0)
    # On the blurred grey, so sensor noise does not count as detail.
    sharp = float(cv2.Laplacian(grey, cv2.CV_32F).var()) if min(grey.shape) >= 3 else 0.0
    return WorkImage(
        bgr=small,
        hsv=cv2.cvtColor(small, cv2.COLOR_BGR2HSV),
        grey=grey,
        mean=float(grey.mean()),
        std=float(coarse.std()),
        sharpness=sharp,
        scale=scale,
    )


def uniform_share(work: WorkImage) -> float:
    """Share of pixels within 12 grey levels of the median: near 1 for a blank or covered view, even with a caption."""
    med = float(np.median(work.grey))
    return float((np.abs(work.grey - med) <= 12.0).mean())


def fire_mask(work: WorkImage) -> np.ndarray:
    """Pixels with the colour of flames: saturated, bright, red→yellow hue, R > G > B."""
    h, s, v = cv2.split(work.hsv)
    b, g, r = cv2.split(work.bgr)
    hue_ok = h <= 35  # OpenCV hue is 0..180: 0..70 degrees, red through yellow
    mask = hue_ok & (s >= 110) & (v >= 170) & (r >= 180) & (r >= g) & (g > b)
    return mask.astype(np.uint8)


def smoke_mask(work: WorkImage) -> np.ndarray:
    """Pixels that look like smoke: low saturation, mid brightness (grey haze)."""
    _, s, v = cv2.split(work.hsv)
    return ((s <= 45) & (v >= 70) & (v <= 215)).astype(np.uint8)


def structure_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of gradient magnitudes of two grey images of the same shape (-1..1).

    Brightness and contrast changes (lights, auto-exposure) keep it high; a moved, cut or
    covered view drops it toward 0.
    """
    def grad(x: np.ndarray) -> np.ndarray:
        x = cv2.resize(x, (80, max(1, int(80 * x.shape[0] / max(1, x.shape[1])))), interpolation=cv2.INTER_AREA)
        gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)
        m = cv2.magnitude(gx, gy).ravel()
        return m - m.mean()

    ga, gb = grad(a.astype(np.float32)), grad(b.astype(np.float32))
    denom = float(np.linalg.norm(ga) * np.linalg.norm(gb))
    if denom < 1e-6:
        return 0.0
    return float(np.dot(ga, gb) / denom)


def intensity_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two grey images after histogram equalisation (-1..1).

    Equalisation keeps only the brightness *order* of pixels, so lights, gain and
    auto-exposure (even non-linear ones) change it little, while a new view scrambles it.
    """
    def norm(x: np.ndarray) -> np.ndarray:
        small = cv2.resize(x.astype(np.float32), (80, max(1, int(80 * x.shape[0] / max(1, x.shape[1])))),
                           interpolation=cv2.INTER_AREA)
        eq = cv2.equalizeHist(np.clip(small, 0, 255).astype(np.uint8)).astype(np.float32).ravel()
        return eq - eq.mean()

    na, nb = norm(a), norm(b)
    denom = float(np.linalg.norm(na) * np.linalg.norm(nb))
    return float(np.dot(na, nb) / denom) if denom > 1e-6 else 0.0


@dataclass(frozen=True, slots=True)
class Blob:
    """A connected foreground region in normalised coordinates (0..1 of width/height)."""

    x: float
    y: float
    w: float
    h: float
    area: float
    """Share of the frame covered by foreground pixels of this blob."""
    aspect: float
    """Height over width in real pixels: > 1 upright, < 1 lying/wide."""

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def cy(self) -> float:
        return self.y + self.h / 2

    @property
    def foot(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h)

    @property
    def bottom(self) -> float:
        return self.y + self.h


def overlap_share(a: Blob, b: Mover) -> float:
    """How much two boxes (frame fractions) overlap, as a share of the smaller one (0 = apart)."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(1e-9, min(a.w * a.h, b.w * b.h))


def find_blobs(mask: np.ndarray, min_area: float) -> list[Blob]:
    """Connected components of a 0/1 mask, largest first, ignoring those under ``min_area`` of the frame."""
    h, w = mask.shape[:2]
    total = float(h * w)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    blobs = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area / total < min_area:
            continue
        blobs.append(Blob(x / w, y / h, bw / w, bh / h, area / total, bh / max(1, bw)))
    blobs.sort(key=lambda b: b.area, reverse=True)
    return blobs


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Remove speckle and join the parts of one object (limbs, torso) into one region."""
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    k7 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    tall = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 9))
    m = mask.astype(np.uint8)
    # Thin limbs survive the opening only if they are first thickened a little.
    m = cv2.morphologyEx(cv2.dilate(m, k3), cv2.MORPH_OPEN, k3)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, k7)
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, tall)


def foreground(work_grey: np.ndarray, background: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Gain-compensated difference against a background: (0/1 mask, gain).

    The background is scaled by the global brightness ratio first, so a lighting change or
    auto-exposure does not turn the whole frame into foreground.
    """
    gain = brightness_gain(work_grey, background)
    diff = np.abs(work_grey - background * gain)
    return clean_mask(diff > threshold), gain


def brightness_gain(work_grey: np.ndarray, background: np.ndarray) -> float:
    """Global brightness ratio of a frame to a background: the median of per-pixel ratios.

    Robust to objects (a minority of pixels) and exact for a uniform lighting change.
    """
    cur = work_grey[::3, ::3].ravel()
    ref = background[::3, ::3].ravel()
    ok = ref > 15.0
    if int(ok.sum()) < 16:
        return 1.0
    return float(np.clip(np.median(cur[ok] / ref[ok]), 0.2, 5.0))


def point_in_polygon(point: tuple[float, float], polygon: list[tuple[float, float]]) -> bool:
    contour = np.array(polygon, np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


def region_name(cx: float) -> str:
    return "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else "centre"


class HogPeople:
    """OpenCV's default HOG people detector, run on blob regions (cheap) or a whole frame (teacher).

    One detector per instance, used under a lock: cv2.HOGDescriptor is not documented as
    thread-safe.
    """

    WIN_H = 128

    def __init__(self) -> None:
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._lock = threading.Lock()

    def detect(self, image: np.ndarray, *, threshold: float = 0.3, scale: float = 1.1) -> list[tuple[int, int, int, int, float]]:
        """Boxes (x, y, w, h, weight) in ``image`` pixels; empty for images too small to hold a window."""
        if image.shape[0] < self.WIN_H or image.shape[1] < 64:
            return []
        with self._lock:
            rects, weights = self._hog.detectMultiScale(image, winStride=(8, 8), padding=(8, 8), scale=scale)
        out = []
        for (x, y, w, h), wt in zip(rects, np.ravel(weights) if len(rects) else []):
            if float(wt) >= threshold:
                out.append((int(x), int(y), int(w), int(h), float(wt)))
        return out

    def detect_in_roi(self, image: np.ndarray, blob: Blob) -> float:
        """Best HOG weight for a person inside a (padded) blob region of a full-resolution image; 0 if none."""
        H, W = image.shape[:2]
        pad_x, pad_y = blob.w * 0.35 + 0.02, blob.h * 0.2 + 0.02
        x0 = int(max(0.0, blob.x - pad_x) * W)
        x1 = int(min(1.0, blob.x + blob.w + pad_x) * W)
        y0 = int(max(0.0, blob.y - pad_y) * H)
        y1 = int(min(1.0, blob.y + blob.h + pad_y) * H)
        roi = image[y0:y1, x0:x1]
        if roi.size == 0:
            return 0.0
        # Scale the region so the blob is about one detection window tall (a person fills ~3/4 of it).
        target_h = (self.WIN_H / 0.75) * (y1 - y0) / max(1.0, blob.h * H)
        f = target_h / max(1, roi.shape[0])
        f = float(np.clip(f, 0.2, 4.0))
        roi = cv2.resize(roi, (max(1, int(roi.shape[1] * f)), max(1, int(roi.shape[0] * f))))
        if roi.shape[1] < 64:
            roi = cv2.copyMakeBorder(roi, 0, 0, (64 - roi.shape[1]) // 2 + 1, (64 - roi.shape[1]) // 2 + 1, cv2.BORDER_REPLICATE)
        if roi.shape[0] < self.WIN_H:
            extra = self.WIN_H - roi.shape[0] + 2
            roi = cv2.copyMakeBorder(roi, extra // 2, extra - extra // 2, 0, 0, cv2.BORDER_REPLICATE)
        hits = self.detect(roi, threshold=0.0, scale=1.15)
        return max((wt for *_, wt in hits), default=0.0)
