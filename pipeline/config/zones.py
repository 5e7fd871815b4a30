"""`zones:` polygons where a person is an intrusion."""

from __future__ import annotations

from pydantic import Field, field_validator

from pipeline.config.base import Section


class Zone(Section):
    name: str = Field(..., min_length=1, description="Zone name, used in observations and events.")
    points: list[tuple[float, float]] = Field(..., min_length=3, description="Polygon vertices as fractions (0..1) of frame width and height.")

    @field_validator("points")
    @classmethod
    def _in_unit_square(cls, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for x, y in points:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"zone point ({x}, {y}) must lie in 0..1 (fractions of width and height)")
        return points
