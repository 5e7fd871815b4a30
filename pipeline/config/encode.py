"""`encode:` the JPEG sent to models and saved as snapshots."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class EncodeConfig(Section):
    max_side: int = Field(896, ge=64, le=4096, description="Resize so the longest side is at most this many pixels before JPEG encoding.")
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of the image sent to models and saved as snapshots.")
