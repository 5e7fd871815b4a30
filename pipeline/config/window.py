"""`window:` the sliding window of student reports."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class WindowConfig(Section):
    window_s: float = Field(10.0, gt=0, le=3600, description="The sliding window covers this many seconds of source time.")
