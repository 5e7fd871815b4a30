"""`offline:` the embedded OpenCV analyzer."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class OfflineConfig(Section):
    hog_people: bool = Field(True, description="Use OpenCV's HOG people detector for person evidence (slower, better); blob shape otherwise.")
    min_blob_area: float = Field(0.002, ge=0.0, le=0.5, description="Moving blobs smaller than this share of the frame are noise.")
