"""Camera ids and the `cameras:` list (live cameras watched together)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from pipeline.config.base import Section
from pipeline.config.zones import Zone

_CAMERA_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
CAMERA_ID_MAX_LENGTH = 64


def _camera_id(value: str) -> str:
    """Camera ids name files, MQTT topics and metric labels: a short, plain name, never a path."""
    if not 1 <= len(value) <= CAMERA_ID_MAX_LENGTH:
        raise ValueError(f"a camera id has 1 to {CAMERA_ID_MAX_LENGTH} characters (got {len(value)})")
    bad = sorted({c for c in value if c not in _CAMERA_ID_CHARS})
    if bad:
        raise ValueError(f"a camera id may hold only letters, digits, '_', '.' and '-' (got {''.join(bad)!r})")
    if value.strip(".") == "":
        raise ValueError("a camera id cannot be only dots")
    return value


#: The one camera-id type, for every source of ids (CLI --camera-id, YAML camera_id and cameras[].id, EDGEWATCH_*).
CameraId = Annotated[str, AfterValidator(_camera_id)]


class CameraConfig(Section):
    id: CameraId = Field(..., description="Camera id (1 to 64 letters, digits, _ . -), used in events, topics and metrics.")
    source: str = Field(..., min_length=1, description="rtsp:// or http(s):// URL, webcam index, or a file (looped, paced to its fps).")
    zones: list[Zone] | None = Field(None, description="This camera's intrusion zones (default: the top-level zones).")
    sample_fps: float | None = Field(None, gt=0, le=60, description="Override of capture.sample_fps for this camera.")
