"""`states:` the monitor's activity and timing settings."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class StatesConfig(Section):
    activity_min_confidence: float = Field(0.3, ge=0.0, le=1.0, description="Observations count as activity only at or above this confidence.")
    quiet_after_s: float = Field(4.0, ge=0, le=3600, description="Source seconds without activity or flags before observing/alert ends.")
    cooldown_s: float = Field(10.0, ge=0, le=86400, description="After an alert ends, wait this long before the camera returns to idle.")
