"""`fleet:` edge boxes sharing teacher workers through Redis."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class FleetConfig(Section):
    """Edge boxes sharing teacher workers through Redis Streams (docs/FLEET.md)."""

    redis_url: str = Field("", description="Redis URL of the escalation bus (redis://[:password@]host:6379/0); empty: this box uses its own teacher queue only.")
    box_id: str = Field("", description="This edge box's name on the bus (its reply stream); empty: the host name.")
    stream_prefix: str = Field("edgewatch", min_length=1, description="Prefix of every stream and group name, so several sites can share one Redis.")
    max_depth: int = Field(200, ge=1, le=1000000, description="Site-wide bound on non-safety requests waiting or in review; beyond it the local queue's shedding rules apply across the site (safety is never shed or trimmed).")
    visibility_timeout_s: float = Field(30.0, ge=1.0, le=3600, description="A request a worker has not touched for this long (it died) is reclaimed by another worker; live workers renew their claim every third of it.")
    reply_timeout_s: float = Field(120.0, ge=1.0, le=86400, description="While Redis is unreachable, a request sent before the loss and unanswered this long is reviewed by the box's own teacher instead.")
    reconnect_s: float = Field(2.0, gt=0, le=600, description="While Redis is unreachable, try it again this often.")
    socket_timeout_s: float = Field(2.0, gt=0, le=60, description="Timeout of one Redis command or connection attempt.")
    reply_max_len: int = Field(10000, ge=100, le=10000000, description="Each box's reply stream keeps about this many entries at most (replies are deleted once applied; the bound only matters for a box that is gone).")
