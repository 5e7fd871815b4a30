"""The change gate: decide, cheaply and at the source's own frame rate, whether a frame shows change worth a look.

The gate is built to see *every decoded frame* (well under 1 ms each on one core), so it
never misses a short event between samples; which of the frames it passes actually reach
the student is the keyframe budget's job (`pipeline.frames.budget`).

How a frame is judged (all on a small grey thumbnail, ``cfg.width`` wide, split into a grid
of ``cfg.grid_cols`` square blocks across):

1. **Motion against a short-lag reference.**  The thumbnail is compared with the thumbnail
   of about ``cfg.lag_s`` seconds earlier (kept in a small ring).  A lagged frame instead of a
   running-average background means nothing that *stood* somewhere earlier can linger as a
   "ghost": a person who stopped stops producing change, and one who leaves produces change
   exactly while leaving.
2. **Exposure normalisation.**  Before differencing, the reference is scaled by the ratio of
   the two frames' median block brightness (auto-exposure and dimming are multiplicative),
   then the median block offset is subtracted; a uniform gain or offset is therefore not change.
3. **Per-block energy against a learned per-block baseline.**  Each block's change energy is
   the mean absolute normalised difference inside it.  Every block keeps a running mean and
   variance of its own energy (time constant ``cfg.baseline_s`` seconds of source time), so a
   block stands out only when its energy exceeds ``mean + max(block_sigma * std, block_min_change)``.
   Foliage, rain, water, a flickering sign or busy traffic lanes teach their blocks a high
   baseline and stop passing; a quiet region keeps a low one, so a small mover there stands
   out.  Blocks that stand out learn ten times slower, so a passing object is not learned as
   "normal" while it passes.
4. **Compact beats diffuse.**  A standing-out block counts only when a 4-neighbour stands out
   too or it stands out strongly (twice the margin): a compact mover lights a few adjacent
   blocks well above their baselines, diffuse noise lights scattered blocks a little.  The
   ``salience`` of a frame is the summed excess of the counted blocks; ``region`` their bounding box.
5. **Global change**: when at least ``global_change_fraction`` of the blocks stand out, or the
   exposure ratio jumps beyond ``global_gain`` (lights switched, lens blinded), the frame passes
   as GLOBAL_CHANGE with a ``global_kind``: ``tamper`` when the view is blank (covered) or no
   longer correlates with the reference (moved, replaced, cut), ``lighting_change`` otherwise.
   The references are re-based on the new frame at once (never blind for more than one frame);
   after a tamper the block baselines also restart learning, since the regions are different.
6. **Heartbeat**: when nothing passed for ``max_skip_s`` of source time, the frame passes anyway.

The first frame passes as FIRST (with ``global_kind='tamper'`` when it is blank).  One gate
per camera; not thread-safe.
"""

from __future__ import annotations

import math
import os
from collections import deque

os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.config.gate import GateConfig  # noqa: E402
from pipeline.records import Frame, GateDecision, GateReason  # noqa: E402

#: A thumbnail whose grey levels vary less than this (standard deviation) shows nothing: covered or blinded.
BLANK_STD = 6.0
#: Below this zero-mean correlation of the block means with the reference, a global change
#: is a different view (tamper).  Measured: hard cuts 0.3 or less; hand-held shake and pans 0.35-0.8.
SAME_VIEW_CORRELATION = 0.4
#: A uniform offset (after gain normalisation) larger than this many grey levels is a global lighting change.
GLOBAL_OFFSET_LEVELS = 40.0
#: Slow movers are also measured against the frame this many ``lag_s`` earlier.
LONG_LAG_FACTOR = 4.0
#: Timestamps that jump back further than this (seconds) mean the source restarted.
RESTART_JUMP_S = 1.0

LIGHTING_CHANGE = "lighting_change"
TAMPER = "tamper"
#: The reasons this gate decides (other `GateReason`s are set downstream, e.g. by the runner's safety watch).
GATE_REASONS: tuple[GateReason, ...] = (
    GateReason.FIRST, GateReason.CHANGE, GateReason.GLOBAL_CHANGE, GateReason.HEARTBEAT, GateReason.STATIC,
)


class ChangeGate:
    """Per-camera change gate; ``check(frame)`` (or ``observe(image, timestamp)``) returns a `GateDecision`."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self._ring: deque[tuple[float, np.ndarray, np.ndarray]] = deque()  # (ts, thumbnail, block means)
        self._last_passed: np.ndarray | None = None
        self._last_passed_ts: float = -math.inf
        self._last_ts: float = -math.inf
        self._mean: np.ndarray | None = None  # per-block running mean of change energy
        self._var: np.ndarray | None = None  # per-block running variance of change energy
        self._learned: int = 0  # baseline updates since the last (re)start of learning
        self._counters: dict[str, int] = {reason.value: 0 for reason in GATE_REASONS}

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
        """Grey, lightly blurred float32 thumbnail of a BGR (or grey) image, a whole number of blocks in size."""
        h, w = image.shape[:2]
        cols = self.cfg.grid_cols
        block = max(1, self.cfg.width // cols)
        rows = max(1, round(h / w * cols))
        size = (cols * block, rows * block)
        if w >= 2 * size[0] and h >= 2 * size[1]:
            # Big frames: nearest-neighbour sampling to twice the thumbnail size first, so colour
            # conversion and area averaging touch a few hundred pixels per block instead of the whole
            # frame (a 1080p frame costs ~0.15 ms instead of ~1.5 ms; INTER_AREA at a non-integer
            # factor is the slow path).  The 2x2 area average that follows, the blur and the block
            # means average the sampling noise away again.
            image = cv2.resize(image, (2 * size[0], 2 * size[1]), interpolation=cv2.INTER_NEAREST)
        if image.ndim == 3 and image.shape[2] == 3:
            grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        else:
            grey = np.ascontiguousarray(image if image.ndim == 2 else image[:, :, 0])
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (3, 3), 0)
        return small.astype(np.float32)

    def check(self, frame: Frame) -> GateDecision:
        return self.observe(frame.image, float(frame.timestamp))

    def observe(self, image: np.ndarray, timestamp: float) -> GateDecision:
        """Judge one frame (BGR or grey) at source time ``timestamp``; call it for every decoded frame."""
        thumb = self.thumbnail(image)
        blocks = self._block_means(thumb)
        ts = float(timestamp)

        if not self._ring or self._ring[-1][1].shape != thumb.shape:
            # First frame, or the source changed resolution mid-run (a different view either way).
            first = not self._ring
            self._restart(thumb, blocks, ts, relearn=True)
            blank = float(thumb.std()) < BLANK_STD
            if first:
                return self._decide(True, GateReason.FIRST, 0.0, 0.0, global_kind=TAMPER if blank else None)
            return self._decide(True, GateReason.GLOBAL_CHANGE, 255.0, 1.0, global_kind=TAMPER)
        if ts < self._last_ts - RESTART_JUMP_S:
            # A restarted stream or looped file: the lagged references are from "the future".
            self._ring.clear()
            self._ring.append((ts, thumb, blocks))
            self._last_passed_ts = ts - self.cfg.max_skip_s  # look at the restarted source at once
        self._last_ts = ts

        ref_thumb, ref_blocks = self._reference(ts, self.cfg.lag_s)
        score = float(np.mean(np.abs(thumb - self._last_passed))) if self._last_passed is not None else 0.0
        med_now, med_ref = float(np.median(blocks)), float(np.median(ref_blocks))
        gain = (med_now + 1.0) / (med_ref + 1.0)
        offset = float(np.median(blocks - gain * ref_blocks))
        energy = self._block_means(np.abs(thumb - gain * ref_thumb - offset))
        assert self._mean is not None and self._var is not None
        margin = np.maximum(self.cfg.block_sigma * np.sqrt(self._var), self.cfg.block_min_change)
        threshold = self._mean + margin

        # Global: the exposure jumped, or most blocks changed a lot in absolute terms (judged apart from the
        # learned baselines, which in a busy view would absorb even a cut) or stand out from their baselines.
        # A frame-wide change that still correlates with the reference without an exposure jump is camera
        # shake or a large object close by: an ordinary (big) change, not a global one.
        sudden_fraction = float(np.count_nonzero(energy > threshold)) / energy.size
        strongly_changed = float(np.count_nonzero(energy > self.cfg.pixel_threshold)) / energy.size
        exposure_jump = max(gain, 1.0 / gain) >= self.cfg.global_gain or abs(offset) > GLOBAL_OFFSET_LEVELS
        if exposure_jump or max(sudden_fraction, strongly_changed) >= self.cfg.global_change_fraction:
            kind = self._global_kind(thumb, ref_thumb, exposure_jump)
            if kind is not None:
                self._restart(thumb, blocks, ts, relearn=kind == TAMPER)
                return self._decide(True, GateReason.GLOBAL_CHANGE, score, max(sudden_fraction, strongly_changed),
                                    global_kind=kind, salience=float(np.sum(np.maximum(energy - threshold, 0.0))))

        # A slow mover shifts little within lag_s; against a reference LONG_LAG_FACTOR times older it
        # has moved a whole body width.  (Not for the global test: that asks what changed *suddenly*.)
        slow_thumb, slow_blocks = self._reference(ts, LONG_LAG_FACTOR * self.cfg.lag_s)
        if slow_thumb is not ref_thumb:
            slow_gain = (med_now + 1.0) / (float(np.median(slow_blocks)) + 1.0)
            slow_offset = float(np.median(blocks - slow_gain * slow_blocks))
            energy = np.maximum(energy, self._block_means(np.abs(thumb - slow_gain * slow_thumb - slow_offset)))

        excess = energy - threshold
        standing_out = excess > 0.0
        changed_fraction = float(np.count_nonzero(standing_out)) / standing_out.size
        counted = standing_out & (self._has_neighbour(standing_out) | (excess > margin))
        salience = float(np.sum(excess[counted])) if counted.any() else 0.0
        region = self._region(counted) if salience > 0.0 else None

        self._learn(energy, margin, ts)
        self._ring.append((ts, thumb, blocks))
        self._prune(ts)

        if salience > 0.0 or not self.cfg.enabled:
            # (Gate disabled: every frame is passed, recorded as a change.)
            reason = GateReason.CHANGE
        elif abs(ts - self._last_passed_ts) >= self.cfg.max_skip_s - 1e-9:
            # (abs: a source whose time jumped far back — a restarted stream — also gets a look.)
            reason = GateReason.HEARTBEAT
        else:
            return self._decide(False, GateReason.STATIC, score, changed_fraction)
        self._last_passed, self._last_passed_ts = thumb, ts
        return self._decide(True, reason, score, changed_fraction, salience=salience, region=region)

    # -- internals ---------------------------------------------------------------------

    def _block_means(self, thumb: np.ndarray) -> np.ndarray:
        block = max(1, self.cfg.width // self.cfg.grid_cols)
        h, w = thumb.shape
        # Integer-factor area resize is exactly the block mean, and much cheaper than numpy's reshape+mean.
        return cv2.resize(thumb, (w // block, h // block), interpolation=cv2.INTER_AREA)

    def _reference(self, ts: float, lag_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The newest kept thumbnail at least ``lag_s`` older than ``ts`` (the oldest while the ring fills)."""
        due = ts - lag_s + 1e-9
        for entry_ts, thumb, blocks in reversed(self._ring):
            if entry_ts <= due:
                return thumb, blocks
        _, thumb, blocks = self._ring[0]
        return thumb, blocks

    def _prune(self, ts: float) -> None:
        """Drop ring entries older than the one that will be the slow reference for the next frames."""
        due = ts - LONG_LAG_FACTOR * self.cfg.lag_s + 1e-9
        while len(self._ring) >= 2 and self._ring[1][0] <= due:
            self._ring.popleft()

    def _learn(self, energy: np.ndarray, margin: np.ndarray, ts: float) -> None:
        assert self._mean is not None and self._var is not None
        previous_ts = self._ring[-1][0] if self._ring else ts
        dt = min(max(ts - previous_ts, 0.0), self.cfg.lag_s)
        rate = dt / self.cfg.baseline_s
        # While learning starts, a cumulative mean: the baseline is usable after a few frames.
        # (Known limit: a mover present during these first frames is partly learned as normal there.)
        rate = max(rate, 1.0 / (self._learned + 1))
        self._learned += 1
        # A block standing out learns as if its change were just at its threshold: a passer-by (or a
        # mover in the very first frames) nudges the baseline instead of teaching it "this much is normal",
        # while change that persists above the threshold (foliage, a busy lane) keeps raising it step by step.
        # The variance takes the deviation clipped tighter (one standard deviation, at least block_min_change):
        # clipped at the margin (block_sigma standard deviations) it would grow by itself on every frame
        # that stands out.
        deviation = energy - self._mean
        self._mean += rate * np.minimum(deviation, margin)
        spread = np.minimum(deviation, np.maximum(np.sqrt(self._var), self.cfg.block_min_change))
        self._var = (1.0 - rate) * (self._var + rate * spread * spread)

    @staticmethod
    def _has_neighbour(mask: np.ndarray) -> np.ndarray:
        neighbour = np.zeros_like(mask)
        neighbour[1:, :] |= mask[:-1, :]
        neighbour[:-1, :] |= mask[1:, :]
        neighbour[:, 1:] |= mask[:, :-1]
        neighbour[:, :-1] |= mask[:, 1:]
        return neighbour

    @staticmethod
    def _region(mask: np.ndarray) -> tuple[float, float, float, float]:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        n_rows, n_cols = mask.shape
        return (
            round(float(cols[0]) / n_cols, 4), round(float(rows[0]) / n_rows, 4),
            round(float(cols[-1] + 1) / n_cols, 4), round(float(rows[-1] + 1) / n_rows, 4),
        )

    def _global_kind(self, thumb: np.ndarray, reference: np.ndarray, exposure_jump: bool) -> str | None:
        """'tamper' when the view is blank or another view, 'lighting_change' for an exposure jump on the same view."""
        if float(thumb.std()) < BLANK_STD:
            return TAMPER  # covered, blinded, or a blank feed
        # Correlate the block means, not the pixels: coarse structure survives camera shake and small
        # pans (which decorrelate a 160 px thumbnail a lot) but not a cut or a moved camera.
        a = self._block_means(thumb)
        b = self._block_means(reference)
        a = a - float(a.mean())
        b = b - float(b.mean())
        denominator = math.sqrt(float(np.sum(a * a)) * float(np.sum(b * b)))
        correlation = float(np.sum(a * b)) / denominator if denominator > 0 else 0.0
        if correlation < SAME_VIEW_CORRELATION:
            return TAMPER  # moved, replaced, or cut to another scene
        return LIGHTING_CHANGE if exposure_jump else None

    def _restart(self, thumb: np.ndarray, blocks: np.ndarray, ts: float, *, relearn: bool) -> None:
        self._ring.clear()
        self._ring.append((ts, thumb, blocks))
        self._last_passed, self._last_passed_ts, self._last_ts = thumb, ts, ts
        if relearn or self._mean is None or self._mean.shape != blocks.shape:
            self._mean = np.zeros(blocks.shape, dtype=np.float32)
            self._var = np.zeros(blocks.shape, dtype=np.float32)
            self._learned = 0

    def _decide(
        self,
        passed: bool,
        reason: GateReason,
        score: float,
        fraction: float,
        *,
        salience: float = 0.0,
        region: tuple[float, float, float, float] | None = None,
        global_kind: str | None = None,
    ) -> GateDecision:
        self._counters[reason.value] += 1
        return GateDecision(
            passed=passed, reason=reason, score=round(score, 4), changed_fraction=round(fraction, 6),
            salience=round(salience, 3), region=region, global_kind=global_kind,
        )
