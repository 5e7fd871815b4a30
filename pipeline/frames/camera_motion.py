"""Camera motion: how far the view has moved since the background was learnt, and the frame put back.

A background model is a per-pixel memory of the view; when the camera pans, tilts, zooms or is
nudged, every edge of the static scene lands on other pixels and turns into foreground, and a
person's silhouette merges with it (a fall during a pan becomes one big blob that never looks
like a body).  `ViewAligner` measures the camera's motion against the view the background was
learnt on — corners found once on that reference view, followed into each new frame with
pyramidal Lucas-Kanade, and a similarity transform (shift, rotation, zoom) fitted with RANSAC,
so the people moving in front of the scene are outliers — and warps each frame back onto the
reference, so the background model keeps seeing a still scene and only what moves in it.

A static camera's jitter and compression noise (below ``MIN_SHIFT_PX``) are left alone: the
frame is used exactly as it came.  The parts of a warped frame that came from outside the
camera's current view are marked invalid (no foreground there).  A view that moved further
than ``MAX_SHIFT_SHARE`` of the frame has left too little of what was learnt: the caller starts
again on the new view.  A frame whose motion cannot be measured (too few corners followed, no
consistent motion: a cut, a covered lens, a crowd filling the view) is used as it came.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_CORNERS = 200
MIN_CORNERS = 12
"""Fewer corners than this on the reference view (a blank wall, darkness): motion is not measured."""
MIN_INLIER_SHARE = 0.3
"""The fitted motion must explain at least this share of the followed corners."""
MIN_SPREAD = 0.5
"""The corners the motion explains must span at least this share of the frame's width and of its
height: a camera's motion moves the whole view, a mover (a car, a person close by) only a part of it."""
MIN_GAIN = 0.8
"""A moved frame, put back, must differ from the reference view at most this much as it did as it came
(mean absolute difference): the fit followed the scene, not a mover's corners or a change of exposure."""
RANSAC_TOLERANCE_PX = 1.0
MIN_SHIFT_PX = 0.75
"""Largest displacement of a frame corner (work pixels) below which the camera is taken as still."""
JITTER_TOLERANCE = 10
"""Grey levels beyond the background's local range from which a put-back pixel is foreground."""
MAX_SHIFT_SHARE = 0.15
"""Displacement, as a share of the frame's width, beyond which the learnt view is too far gone."""

_K3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class ViewShift:
    """How the current frame sits on the reference view."""

    to_reference: np.ndarray
    """2x3 similarity transform from current-frame pixels to reference pixels."""
    shift_px: float
    """Largest displacement of a frame corner under it (work pixels)."""
    inliers: int

    @property
    def moved(self) -> bool:
        return self.shift_px >= MIN_SHIFT_PX


class ViewAligner:
    """Measures each frame's camera motion against one reference view and warps the frame back onto it."""

    def __init__(self, reference: np.ndarray) -> None:
        self._reference = reference
        self.shape = reference.shape
        corners = cv2.goodFeaturesToTrack(reference, MAX_CORNERS, 0.01, 5)
        self._corners = corners if corners is not None and len(corners) >= MIN_CORNERS else None

    def measure(self, grey: np.ndarray) -> ViewShift | None:
        """The camera's motion since the reference view, or None when it cannot be measured."""
        if self._corners is None or grey.shape != self.shape:
            return None
        followed, status, _ = cv2.calcOpticalFlowPyrLK(self._reference, grey, self._corners, None,
                                                       winSize=(21, 21), maxLevel=3)
        ok = status.ravel() == 1
        if int(ok.sum()) < MIN_CORNERS:
            return None
        matrix, inliers = cv2.estimateAffinePartial2D(followed[ok], self._corners[ok], method=cv2.RANSAC,
                                                      ransacReprojThreshold=RANSAC_TOLERANCE_PX)
        if matrix is None or inliers is None:
            return None
        n = int(inliers.sum())
        if n < MIN_CORNERS or n < MIN_INLIER_SHARE * int(ok.sum()):
            return None
        h, w = self.shape
        explained = self._corners[ok][inliers.ravel() == 1].reshape(-1, 2)
        span = explained.max(axis=0) - explained.min(axis=0)
        if span[0] < MIN_SPREAD * w or span[1] < MIN_SPREAD * h:
            return None
        frame_corners = np.float32([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]).reshape(-1, 1, 2)
        shift = float(np.abs(cv2.transform(frame_corners, matrix) - frame_corners).max())
        return ViewShift(to_reference=matrix, shift_px=shift, inliers=n)

    def confirms(self, grey: np.ndarray, shift: ViewShift) -> tuple[np.ndarray, np.ndarray] | None:
        """The frame put back onto the reference view (`align`), if that makes it look like the
        reference clearly more than it did as it came; else None (the motion was not the camera's)."""
        aligned, inside = self.align(grey, shift)
        if not inside.any():
            return None
        valid = inside.astype(bool)
        before = float(cv2.absdiff(grey, self._reference)[valid].mean())
        after = float(cv2.absdiff(aligned, self._reference)[valid].mean())
        return (aligned, inside) if after <= MIN_GAIN * before else None

    @staticmethod
    def beyond_jitter(aligned: np.ndarray, background: np.ndarray) -> np.ndarray:
        """Pixels of a put-back frame that differ from the learnt background by more than a
        misplacement of a pixel could explain (outside its 3x3 neighbourhood's range by
        ``JITTER_TOLERANCE``): a fitted motion is never exact, and the scene's strong edges
        (a skirting board, a dark trouser leg absorbed into the background) would light up."""
        low = cv2.erode(background, _K3).astype(np.int16) - JITTER_TOLERANCE
        high = cv2.dilate(background, _K3).astype(np.int16) + JITTER_TOLERANCE
        frame = aligned.astype(np.int16)
        return ((frame < low) | (frame > high)).astype(np.uint8)

    def too_far(self, shift: ViewShift) -> bool:
        """Moved so far that too little of the reference view is left to compare with."""
        return shift.shift_px > MAX_SHIFT_SHARE * self.shape[1]

    def align(self, grey: np.ndarray, shift: ViewShift) -> tuple[np.ndarray, np.ndarray]:
        """The frame warped onto the reference view, and where it holds real pixels (1) or none (0)."""
        h, w = self.shape
        warped = cv2.warpAffine(grey, shift.to_reference, (w, h), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        inside = cv2.warpAffine(np.ones_like(grey, dtype=np.uint8), shift.to_reference, (w, h),
                                flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # The border rows of real pixels are half-interpolated from outside: not trusted either.
        return warped, cv2.erode(inside, _K3)


__all__ = ["MAX_SHIFT_SHARE", "MIN_SHIFT_PX", "ViewAligner", "ViewShift"]
