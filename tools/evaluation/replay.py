"""Decode a clip once, replay it to every policy run: the evaluation's fast path.

What the pipeline makes of a clip's pixels does not depend on the routing policy: the dense
motion observer sees every decoded frame at its own rate, and the change gate reduces each frame
it checks to a grey thumbnail before any decision.  `record_clip` decodes the clip once and keeps,
per decoded frame, its index, timestamp and mean luma, the gate's thumbnail (uint8: the gate's
float thumbnail is a uint8 image cast, so nothing is lost) and the motion observer's record.

A replayed run then drives the *real* `Runner` and `CameraPipeline` — sampler, the gate's
decision logic, encode, student, window, monitor, policy, teacher queue, verdicts, sinks — over
`ReplaySource` frames (a small uniform image of the frame's luma in place of the decode), with
`ReplayGate` (the real `ChangeGate`, its thumbnail step read from the recording, so any sampling
rate or gate setting decides exactly as on the decoded frame) and `ReplayMotion` (the recorded
observer records, in frame order).  The simulated models read labels, not pixels, so their answers
are the same; a pair that reads pixels (offline, ollama) is never replayed (`replayable`).

tests/test_evaluation_replay.py checks that a replayed run scores exactly as a decoded one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from pipeline.clock import SystemClock
from pipeline.config import Settings
from pipeline.frames.gate import ChangeGate
from pipeline.frames.motion import MotionObserver
from pipeline.incidents.periods import mean_luma
from pipeline.records import Frame, GateDecision, MotionRecord
from pipeline.sources.capture import CaptureStats, FrameSource, Sampler, open_source

log = logging.getLogger("edgewatch.evaluation")

#: Side of the stand-in image a replayed frame carries (big enough for every reader of a frame:
#: the JPEG encoder, the agreement store's 8x8 difference hash).
STAND_IN_SIDE = 16


class ReplayMismatch(RuntimeError):
    """The pipeline asked the replay for something the recording does not hold."""


@dataclass(frozen=True)
class RecordingKey:
    """The settings a recording depends on: a run with other values must decode again."""

    gate_width: int
    gate_grid_cols: int
    motion_enabled: bool
    motion_width: int
    motion_fps: float
    max_bad_frames: int

    @classmethod
    def of(cls, settings: Settings) -> "RecordingKey":
        return cls(settings.gate.width, settings.gate.grid_cols, settings.motion.enabled, settings.motion.width,
                   settings.motion.fps, settings.capture.max_bad_frames)


@dataclass(frozen=True)
class ClipRecording:
    """One decode of a clip (see the module doc)."""

    key: RecordingKey
    description: str
    fps: float
    frame_count: int | None
    indices: tuple[int, ...]
    timestamps: tuple[float, ...]
    lumas: tuple[float, ...]
    thumbnails: tuple[np.ndarray, ...]
    motion_wanted: tuple[bool, ...]
    motion_latest: tuple[MotionRecord | None, ...]
    """The observer's newest record after each frame."""
    motion_final: MotionRecord | None
    """The observer's record after ``finish`` at the last frame."""
    stats: CaptureStats

    @property
    def position(self) -> dict[int, int]:
        return {index: i for i, index in enumerate(self.indices)}


def record_clip(video: Path, settings: Settings) -> ClipRecording:
    """Decode ``video`` once with ``settings`` (capture, gate and motion sections) and keep what
    the pixel stages make of each frame."""
    key = RecordingKey.of(settings)
    gate = ChangeGate(settings.gate)
    motion = MotionObserver(width=settings.motion.width, fps=settings.motion.fps)
    source = open_source(str(video), camera_id=settings.camera_id, cfg=settings.capture, clock=SystemClock())
    indices: list[int] = []
    timestamps: list[float] = []
    lumas: list[float] = []
    thumbs: list[np.ndarray] = []
    wanted: list[bool] = []
    latest: list[MotionRecord | None] = []
    try:
        for frame in source.frames(sampler=None):
            indices.append(frame.index)
            timestamps.append(frame.timestamp)
            lumas.append(mean_luma(frame.image))
            thumb = gate.thumbnail(frame.image)
            small = thumb.astype(np.uint8)
            if not np.array_equal(small.astype(np.float32), thumb):
                raise ReplayMismatch("the gate's thumbnail is no longer a uint8 image: the recording would lose detail")
            thumbs.append(small)
            due = motion.wants(frame.timestamp)
            wanted.append(due)
            if due:
                motion.observe(frame.image, frame.timestamp)
            latest.append(motion.latest)
        final = motion.finish(timestamps[-1]) if timestamps else None
    finally:
        source.close()
    return ClipRecording(key=key, description=source.description, fps=source.fps, frame_count=source.frame_count,
                         indices=tuple(indices), timestamps=tuple(timestamps), lumas=tuple(lumas), thumbnails=tuple(thumbs),
                         motion_wanted=tuple(wanted), motion_latest=tuple(latest), motion_final=final,
                         stats=replace(source.stats))


def replayable(pair: str, settings: Settings, recording: ClipRecording) -> bool:
    """Can a run of ``pair`` with ``settings`` replay ``recording``?  Only the simulated pair (it
    reads labels, not pixels), with the recording's settings, the motion observer on (it makes
    capture hand over every decoded frame), no keyframe budget, no brightness profiles (they read
    the frames' luma, which the stand-in images only approximate) and a file read as fast as possible."""
    return (pair == "simulated" and RecordingKey.of(settings) == recording.key and settings.motion.enabled
            and not settings.budget.enabled and not (settings.adaptive.enabled and settings.adaptive.profiles)
            and not settings.capture.realtime)


class ReplaySource(FrameSource):
    """The recorded frames, each with a stand-in image of its luma, in decode order."""

    is_live = False

    def __init__(self, recording: ClipRecording, camera_id: str) -> None:
        self.recording = recording
        self.camera_id = camera_id
        self.fps = recording.fps
        self.frame_count = recording.frame_count
        self.description = recording.description
        self.stats = CaptureStats()
        self._stand_ins: dict[int, np.ndarray] = {}

    def _stand_in(self, luma: float) -> np.ndarray:
        level = int(round(min(255.0, max(0.0, luma))))
        image = self._stand_ins.get(level)
        if image is None:
            image = np.full((STAND_IN_SIDE, STAND_IN_SIDE, 3), level, dtype=np.uint8)
            image.flags.writeable = False
            self._stand_ins[level] = image
        return image

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:
        if sampler is not None:
            raise ReplayMismatch("a replay hands over every decoded frame; capture-side sampling is not replayed")
        rec = self.recording
        for index, ts, luma in zip(rec.indices, rec.timestamps, rec.lumas):
            yield Frame(source_id=self.camera_id, index=index, timestamp=ts, image=self._stand_in(luma))
        self.stats = replace(rec.stats)

    def close(self) -> None:
        return None


class ReplayGate(ChangeGate):
    """The real change gate, its thumbnail step read from the recording."""

    def __init__(self, cfg: Any, recording: ClipRecording) -> None:
        super().__init__(cfg)
        self._thumbnails = recording.thumbnails
        self._position = recording.position
        self._current: np.ndarray | None = None

    def check(self, frame: Frame) -> GateDecision:
        at = self._position.get(frame.index)
        if at is None:
            raise ReplayMismatch(f"frame {frame.index} is not in the recording")
        self._current = self._thumbnails[at]
        try:
            return self.observe(frame.image, float(frame.timestamp))
        finally:
            self._current = None

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        if self._current is None:
            raise ReplayMismatch("the gate was asked for a thumbnail outside check()")
        return self._current.astype(np.float32)


class ReplayMotion:
    """The motion observer's recorded records, handed out in frame order."""

    def __init__(self, recording: ClipRecording) -> None:
        self._rec = recording
        self._next = 0
        self._at: int | None = None

    @property
    def latest(self) -> MotionRecord | None:
        return None if self._at is None else self._rec.motion_latest[self._at]

    def wants(self, timestamp: float) -> bool:
        i = self._next
        if i >= len(self._rec.timestamps) or self._rec.timestamps[i] != timestamp:
            raise ReplayMismatch(f"the observer was offered t={timestamp} out of the recorded order")
        self._next, self._at = i + 1, i
        return self._rec.motion_wanted[i]

    def observe(self, image: np.ndarray, timestamp: float) -> MotionRecord | None:
        return self.latest

    def finish(self, timestamp: float) -> MotionRecord | None:
        if not self._rec.timestamps or timestamp != self._rec.timestamps[-1]:
            raise ReplayMismatch(f"the observer finished at t={timestamp}, the recording at its last frame")
        return self._rec.motion_final


def stages_for(recording: ClipRecording) -> Callable[[Any], None]:
    """What `Runner.run` calls on the camera's pipeline before the first frame: swap in the
    replayed pixel stages."""

    def prepare(pipe: Any) -> None:
        pipe.gate = ReplayGate(pipe.gate.cfg, recording)
        if pipe.motion is not None:
            pipe.motion = ReplayMotion(recording)

    return prepare


__all__ = ["ClipRecording", "RecordingKey", "ReplayGate", "ReplayMismatch", "ReplayMotion", "ReplaySource", "record_clip",
           "replayable", "stages_for"]
