"""The change gate: decide, cheaply, whether a sampled frame is worth a model call.

How a frame is judged (all on a small grey thumbnail, ``cfg.width`` wide):

1. **Two references.** The thumbnail is compared with the *last analysed* (passed)
   thumbnail — what the model saw last — and with a slow *background* (running average,
   ``background_alpha`` per checked frame).
2. **Brightness normalisation.** Before thresholding, the median of each signed difference
   is subtracted, so a uniform brightness/gain shift (auto-exposure, a slow lighting ramp)
   is not "change".
3. **Foreground-confirmed change.** A thumbnail pixel counts as changed when it differs from
   the last analysed frame *and* that difference involves foreground: the pixel now differs
   from the background (something arrived or moved there) *or* it was foreground in the last
   analysed frame (something left).  Why not plain "vs last analysed": slow non-uniform drift
   (sun moving, shadows, exposure settling) accumulates against a fixed old frame and would
   pass again and again; the background follows such drift, so it is filtered out.  Why not
   "vs both" pixel-wise: a person who walks out leaves a frame that matches the background
   but not what the model last saw; the stored foreground mask of the last analysed frame
   lets that departure pass, so the model learns the scene is empty again.
   A frame passes (CHANGE) when the changed share >= ``min_changed_fraction``.
4. **Global change** (lights switched, camera covered, moved or cut to another scene): the
   normalised changed share is >= ``global_change_fraction`` against *both* references, or
   the median brightness jumped away from the background by more than
   ``GLOBAL_BRIGHTNESS_FACTOR * pixel_threshold`` levels.  It is measured *after*
   normalisation so a slow uniform ramp never counts (a 1 level/frame ramp keeps the
   background only ~19 levels behind), while a sudden large uniform jump (lights off,
   lens covered) still does through the median test.  A global change re-baselines the
   background at once, so the next frames compare against the new scene.
5. **Heartbeat**: when nothing passed for ``max_skip_s`` of source time, the frame passes
   anyway (HEARTBEAT) so a static camera is still looked at now and then.

The first frame passes as FIRST; everything else is STATIC (skipped).  One gate per camera;
not thread-safe.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.config import GateConfig  # noqa: E402
from pipeline.records import Frame, GateDecision, GateReason  # noqa: E402

#: A sudden median brightness shift against the background larger than this many
#: ``pixel_threshold``s is a global change (lights switched off/on, lens covered).
GLOBAL_BRIGHTNESS_FACTOR = 3.0


class ChangeGate:
    """Per-camera change gate; ``check(frame)`` returns a `GateDecision`."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self._last_passed: np.ndarray | None = None  # float32 thumbnail of the last analysed frame
        self._last_passed_fg: np.ndarray | None = None  # bool mask: foreground in the last analysed frame
        self._last_passed_ts: float = -math.inf
        self._background: np.ndarray | None = None  # float32 running average
        self._counters: dict[str, int] = {reason.value: 0 for reason in GateReason}
        self._grey_buffer: np.ndarray | None = None

    # -- public ------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        """How many frames were passed (first, change, global_change, heartbeat) or skipped (static)."""
        return dict(self._counters)

    @property
    def passed(self) -> int:
        return sum(n for reason, n in self._counters.items() if reason != GateReason.STATIC.value)

    @property
    def skipped(self) -> int:
        return self._counters[GateReason.STATIC.value]

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        """Grey, ``cfg.width`` wide, lightly blurred float32 thumbnail of a BGR (or grey) image."""
        h, w = image.shape[:2]
        width = min(self.cfg.width, w)
        height = max(1, round(h * width / w))
        # Grey first: INTER_AREA on one channel costs a third of doing it on BGR.  The full-size
        # grey buffer is reused: a fresh 2 MB allocation per 1080p frame costs page faults that
        # can exceed the whole gate budget when the allocator hands memory back to the OS.
        if image.ndim == 3 and image.shape[2] == 3:
            if self._grey_buffer is None or self._grey_buffer.shape != (h, w):
                self._grey_buffer = np.empty((h, w), dtype=np.uint8)
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=self._grey_buffer)
        else:
            grey = image if image.ndim == 2 else image[:, :, 0]
        small = cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (3, 3), 0)
        return small.astype(np.float32)

    def check(self, frame: Frame) -> GateDecision:
        thumb = self.thumbnail(frame.image)
        ts = float(frame.timestamp)
        threshold = float(self.cfg.pixel_threshold)

        if self._last_passed is None or self._background is None or self._last_passed.shape != thumb.shape:
            # First frame, or the source changed resolution mid-run (a different scene either way).
            first = self._last_passed is None
            self._rebaseline(thumb, ts)
            reason = GateReason.FIRST if first else GateReason.GLOBAL_CHANGE
            return self._decide(True, reason, score=0.0 if first else 255.0, fraction=0.0 if first else 1.0)

        diff_last = thumb - self._last_passed
        diff_bg = thumb - self._background
        score = float(np.mean(np.abs(diff_last)))
        median_last = float(np.median(diff_last))
        median_bg = float(np.median(diff_bg))
        changed_last = np.abs(diff_last - median_last) > threshold
        foreground = np.abs(diff_bg - median_bg) > threshold

        fraction_last = float(np.count_nonzero(changed_last)) / changed_last.size
        fraction_bg = float(np.count_nonzero(foreground)) / foreground.size
        confirmed = changed_last & (foreground | self._last_passed_fg)  # type: ignore[operator]
        changed_fraction = float(np.count_nonzero(confirmed)) / confirmed.size

        global_share = min(fraction_last, fraction_bg) >= self.cfg.global_change_fraction
        brightness_jump = abs(median_bg) > GLOBAL_BRIGHTNESS_FACTOR * threshold
        if global_share or brightness_jump:
            self._rebaseline(thumb, ts)
            return self._decide(True, GateReason.GLOBAL_CHANGE, score, max(changed_fraction, min(fraction_last, fraction_bg)))

        # The background follows every checked frame (after comparing, so the frame cannot hide itself).
        cv2.accumulateWeighted(thumb, self._background, self.cfg.background_alpha)

        if changed_fraction >= self.cfg.min_changed_fraction and changed_fraction > 0.0:
            reason = GateReason.CHANGE
        elif abs(ts - self._last_passed_ts) >= self.cfg.max_skip_s - 1e-9:
            # (abs: a source whose time jumped far back — a restarted stream — also gets a look.)
            reason = GateReason.HEARTBEAT
        else:
            reason = GateReason.STATIC

        if reason is GateReason.STATIC:
            if not self.cfg.enabled:
                # Gate disabled: every sampled frame is analysed; it is recorded as a change.
                self._remember(thumb, foreground, ts)
                return self._decide(True, GateReason.CHANGE, score, changed_fraction)
            return self._decide(False, reason, score, changed_fraction)
        self._remember(thumb, foreground, ts)
        return self._decide(True, reason, score, changed_fraction)

    # -- internals ---------------------------------------------------------------------

    def _rebaseline(self, thumb: np.ndarray, ts: float) -> None:
        self._background = thumb.copy()
        self._remember(thumb, np.zeros(thumb.shape, dtype=bool), ts)

    def _remember(self, thumb: np.ndarray, foreground: np.ndarray, ts: float) -> None:
        self._last_passed = thumb
        self._last_passed_fg = foreground
        self._last_passed_ts = ts

    def _decide(self, passed: bool, reason: GateReason, score: float, fraction: float) -> GateDecision:
        self._counters[reason.value] += 1
        return GateDecision(passed=passed, reason=reason, score=round(score, 4), changed_fraction=round(fraction, 6))
