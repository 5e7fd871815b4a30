"""`metrics:` Prometheus /metrics and /healthz."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class MetricsConfig(Section):
    enabled: bool = Field(False, description="Serve Prometheus /metrics and JSON /healthz.")
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for all interfaces).")
    port: int = Field(9464, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
