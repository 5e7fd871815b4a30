"""`motion:` the dense motion observer between samples."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class MotionConfig(Section):
    enabled: bool = Field(True, description="Watch decoded frames between samples with a cheap dense motion observer (background subtraction and tracking on small grey frames) whose findings (a fall's speed) travel with the frames the student sees.")
    fps: float = Field(12.5, gt=0, le=60, description="The observer looks at most this many frames per second of source time.")
    width: int = Field(192, ge=64, le=640, description="Width of the grey copy the observer works on (height keeps the aspect).")
