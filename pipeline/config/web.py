"""`web:` the review page."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class WebConfig(Section):
    enabled: bool = Field(False, description="Serve the review page (docs/REVIEW.md) during a run with several cameras; `edgewatch serve --out DIR` serves it for any run's folder.")
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs a token.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    token: str | None = Field(None, description="Access token the page asks for (better set EDGEWATCH_WEB__TOKEN); required off loopback.")
