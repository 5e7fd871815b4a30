"""`gate:` the change gate in front of the student."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section


class GateConfig(Section):
    enabled: bool = Field(True, description="Skip frames where nothing changed; false analyses every sampled frame.")
    width: int = Field(160, ge=32, le=640, description="Width of the grey thumbnail the gate compares (height keeps the aspect).")
    pixel_threshold: int = Field(18, ge=1, le=255, description="A thumbnail pixel counts as changed when it differs by more than this (0..255).")
    global_change_fraction: float = Field(0.6, gt=0.0, le=1.0, description="A change covering at least this share of the frame is a global change (lights, camera moved or covered).")
    max_skip_s: float = Field(10.0, gt=0, le=3600, description="Heartbeat: analyse at least one frame this often (source seconds) even when static.")
    grid_cols: int = Field(16, ge=2, le=64, description="Blocks across the thumbnail; each block learns its own baseline of normal change (rows follow the aspect).")
    lag_s: float = Field(0.5, gt=0, le=10, description="Motion is measured against the frame this many source seconds earlier.")
    baseline_s: float = Field(20.0, gt=0, le=3600, description="Time constant (source seconds) over which each block learns how much it normally changes.")
    block_sigma: float = Field(4.0, gt=0, le=100, description="A block stands out when its change exceeds its learned mean by this many standard deviations...")
    block_min_change: float = Field(4.0, gt=0, le=255, description="...and by at least this many grey levels (mean absolute difference in the block).")
    global_gain: float = Field(1.5, gt=1.0, le=100, description="A frame-wide brightness ratio jump of at least this much (either way) is a global lighting change.")
