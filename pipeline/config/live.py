"""`live:` restarting live sources that stall."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class LiveConfig(Section):
    stale_after_s: float = Field(10.0, gt=0, le=3600, description="Restart a live source that delivered no frame for this long.")
    backoff_initial_s: float = Field(0.5, gt=0, le=60, description="First reconnect wait; it doubles (with jitter) up to backoff_max_s.")
    backoff_max_s: float = Field(30.0, gt=0, le=3600, description="Longest reconnect wait.")
