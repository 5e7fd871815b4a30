"""`shutdown:` draining work on SIGTERM/SIGINT."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class ShutdownConfig(Section):
    grace_s: float = Field(10.0, gt=0, le=600, description="On SIGTERM/SIGINT, drain work in flight for at most this long, then cancel model calls (their reviews become 'unverified'), write the summary and exit. Keep it below the service manager's stop timeout (TimeoutStopSec=30 in docs/edgewatch.service).")
