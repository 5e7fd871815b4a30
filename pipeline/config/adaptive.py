"""`adaptive:` thresholds adapted to the period of day, load and verdicts, with named periods."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from pipeline.config.base import Section


class ThresholdProfile(Section):
    """One named period of the day (see AdaptiveConfig.profiles); every override is optional."""

    start: str = Field("00:00", description="Local clock time (HH:MM, 24 h) the period begins, inclusive.")
    end: str = Field("00:00", description="Local clock time (HH:MM) the period ends, exclusive; an end before the start crosses midnight; end == start means all day.")
    brightness_min: float | None = Field(None, ge=0, le=255, description="With brightness_max: a scene whose smoothed mean luma (0..255) lies in this range selects this period whatever the clock says (a dark scene at noon counts as night).")
    brightness_max: float | None = Field(None, ge=0, le=255, description="See brightness_min.")
    min_confidence: float | None = Field(None, ge=0.0, le=1.0, description="Overrides escalation.min_confidence in this period.")
    persistence_k: int | None = Field(None, ge=1, le=100, description="Overrides escalation.persistence_k in this period.")
    persistence_n: int | None = Field(None, ge=1, le=100, description="Overrides escalation.persistence_n in this period.")
    audit_every: int | None = Field(None, ge=1, le=100000, description="Overrides escalation.audit_every in this period.")
    flip_limit: int | None = Field(None, ge=1, le=1000, description="Overrides escalation.flip_limit in this period.")
    gate_block_min_change: float | None = Field(None, gt=0, le=255, description="Overrides gate.block_min_change (the gate's noise floor, grey levels: higher = less sensitive, e.g. for a grainy night image) in this period.")
    sample_fps: float | None = Field(None, gt=0, le=60, description="Overrides capture.sample_fps in this period.")

    @field_validator("start", "end")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value.strip()):
            raise ValueError(f"{value!r} is not a clock time HH:MM (00:00..23:59)")
        return value.strip()

    @model_validator(mode="after")
    def _ranges(self) -> "ThresholdProfile":
        if (self.brightness_min is None) != (self.brightness_max is None):
            raise ValueError("brightness_min and brightness_max go together")
        if self.brightness_min is not None and self.brightness_max is not None and self.brightness_min >= self.brightness_max:
            raise ValueError(f"brightness_min ({self.brightness_min}) must be < brightness_max ({self.brightness_max})")
        if self.persistence_k is not None and self.persistence_n is not None and self.persistence_k > self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) must be <= persistence_n ({self.persistence_n})")
        return self


class AdaptiveConfig(Section):
    enabled: bool = Field(True, description="Adapt thresholds to the period of day, load and the teacher's verdicts; false keeps the configured thresholds fixed.")
    timezone: str = Field("local", description="IANA time zone of the periods' clock times (e.g. Europe/Berlin); 'local' is the machine's zone.")
    source_start: str | None = Field(None, description="For file sources: the wall-clock time (ISO 8601, e.g. 2024-05-01T22:00:00; no offset = in `timezone`) that the file's t=0 maps to; unset = when the run starts. Live sources use the clock.")
    profiles: dict[str, ThresholdProfile] = Field(default_factory=dict, description="Named periods, e.g. {night: {start: '20:00', end: '06:00', brightness_min: 0, brightness_max: 40, persistence_k: 3, persistence_n: 4, min_confidence: 0.6}}; the first that matches wins (brightness before clock); none matching = 'default' (the configured thresholds).")
    period_dwell_s: float = Field(30.0, ge=0, le=3600, description="A new period takes over only after it has been the match for this many source seconds (a passing shadow does not switch to night).")
    brightness_smoothing_s: float = Field(20.0, ge=0, le=3600, description="Time constant (source seconds) of the moving average of scene brightness; 0 uses each frame's own.")
    load_max_bar: int = Field(3, ge=0, le=3, description="Highest escalation bar load may raise (1 defers audits, 2 also flips and scene changes, 3 also low confidence; safety is never deferred); 0 disables load adaptation.")
    load_queue_raise: float = Field(0.5, gt=0, le=1.0, description="Teacher queue pressure (depth/capacity) at or above which the bar rises one step...")
    load_queue_lower: float = Field(0.2, ge=0, le=1.0, description="...and at or below which (with the other load figures calm) it may fall again; must be < load_queue_raise.")
    load_lag_raise_s: float = Field(5.0, gt=0, le=3600, description="Student lag (source seconds the newest analysed frame is behind the newest read frame) at or above which the bar rises.")
    load_lag_lower_s: float = Field(1.0, ge=0, le=3600, description="Student lag at or below which the bar may fall; must be < load_lag_raise_s.")
    load_cpu_raise: float = Field(0.95, gt=0, le=1.0, description="CPU busy share (0..1) at or above which the bar rises.")
    load_cpu_lower: float = Field(0.7, ge=0, le=1.0, description="CPU busy share at or below which the bar may fall; must be < load_cpu_raise.")
    load_step_s: float = Field(10.0, ge=0, le=3600, description="At least this many source seconds between two raises of the bar (step by step).")
    load_calm_s: float = Field(60.0, ge=0, le=86400, description="Load must stay at or below every lower mark this long before the bar falls one step (hysteresis: no oscillation).")
    fp_alpha: float = Field(0.2, gt=0, le=1.0, description="Weight of the newest verdict in the smoothed (EWMA) dismissal and audit-miss rates.")
    fp_min_samples: int = Field(3, ge=1, le=1000, description="Verdicts of a flag (per period) needed before, and between, two feedback adjustments of it.")
    fp_raise_above: float = Field(0.6, gt=0, le=1.0, description="A smoothed dismissal rate at or above this raises the flag's persistence k (or, for low confidence, lowers min_confidence; for flips, raises flip_limit) one step.")
    fp_lower_below: float = Field(0.25, ge=0, le=1.0, description="A dismissal rate at or below this undoes one step; must be < fp_raise_above.")
    fp_miss_above: float = Field(0.3, gt=0, le=1.0, description="A smoothed audit-miss rate (audits where the teacher saw the flag and the student did not) at or above this lowers the flag's persistence k one step.")
    fp_max_k_raise: int = Field(2, ge=0, le=10, description="Most steps dismissals may add to a flag's persistence k (k never exceeds persistence_n).")
    fp_max_k_lower: int = Field(1, ge=0, le=10, description="Most steps audit misses may take off a flag's persistence k (k never drops below 1).")
    fp_confidence_step: float = Field(0.05, ge=0, le=0.5, description="How much one step lowers min_confidence when low-confidence escalations keep being dismissed.")
    fp_max_confidence_steps: int = Field(3, ge=0, le=20, description="Most steps min_confidence may be lowered by feedback.")
    fp_max_flip_raise: int = Field(4, ge=0, le=100, description="Most steps (of 1) dismissals may add to flip_limit.")
    state_file: Path | None = Field(None, description="JSON file keeping the feedback rates across restarts (written atomically); unset = thresholds_state.json in output.out_dir.")
    save_every_s: float = Field(300.0, gt=0, le=86400, description="Save the feedback state at least this often (source seconds) while running, and always at shutdown.")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        if value != "local":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin, or 'local')") from None
        return value

    @field_validator("source_start")
    @classmethod
    def _iso_time(cls, value: str | None) -> str | None:
        from datetime import datetime

        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 date-time such as 2024-05-01T22:00:00") from None
        return value

    @field_validator("profiles")
    @classmethod
    def _reserved_name(cls, value: dict[str, ThresholdProfile]) -> dict[str, ThresholdProfile]:
        for name in value:
            if not name.strip() or name == "default":
                raise ValueError(f"profile name {name!r} is empty or reserved ('default' is the period when no profile matches)")
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> "AdaptiveConfig":
        for low, high in (("load_queue_lower", "load_queue_raise"), ("load_lag_lower_s", "load_lag_raise_s"),
                          ("load_cpu_lower", "load_cpu_raise"), ("fp_lower_below", "fp_raise_above")):
            if getattr(self, low) >= getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must be < {high} ({getattr(self, high)})")
        return self
