"""`capture:` how frames are read and sampled."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class CaptureConfig(Section):
    sample_fps: float = Field(2.0, gt=0, le=60, description="Analyse at most this many frames per second of source time (before the gate).")
    realtime: bool = Field(False, description="Pace files to their own fps instead of reading as fast as possible.")
    open_timeout_ms: int = Field(3000, ge=100, le=60000, description="How long opening a stream or camera may take.")
    read_timeout_ms: int = Field(3000, ge=100, le=60000, description="How long one frame read from a stream may block.")
    max_bad_frames: int = Field(50, ge=1, le=100000, description="Consecutive unreadable frames after which a file is treated as ended.")
