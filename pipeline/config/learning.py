"""`learning:` the agreement store, calibration and fine-tune readiness."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.config.base import Section


class LearningConfig(Section):
    """The agreement store (teacher verdicts as labelled examples), calibration and fine-tune readiness (docs/LEARNING.md)."""

    enabled: bool = Field(True, description="Keep each reviewed escalation and audit (student reports, verdict, keyframes) in the agreement store.")
    store_path: Path | None = Field(None, description="SQLite file of the agreement store (keyframe JPEGs go in a folder beside it); unset = agreement.sqlite in output.out_dir.")
    max_records: int = Field(20000, ge=10, le=10_000_000, description="Records kept at most; beyond it the oldest are deleted with their keyframes.")
    retention_days: float = Field(90.0, gt=0, le=36500, description="Records older than this (wall-clock days since stored) are deleted with their keyframes.")
    dedupe_distance: int = Field(6, ge=0, le=64, description="A record whose newest keyframe's 64-bit perceptual hash is within this many bits of a recent record of the same camera and the same labels is a near-duplicate and not stored (a static scene does not flood the store).")
    dedupe_recent: int = Field(200, ge=1, le=100000, description="How many of the camera's newest records a new one is compared with for near-duplicates.")
    calibrate: bool = Field(False, description="Map the student's confidence through the calibration map fitted on the store once it has calibration_min_examples examples (off by default: fitted on escalations only, it raised teacher calls in docs/LEARNING.md).")
    calibration_min_examples: int = Field(50, ge=10, le=1_000_000, description="Labelled student reports needed before a calibration map (overall, or per flag) is fitted and applied.")
    readiness_min_examples: int = Field(100, ge=1, le=10_000_000, description="Good reviewed examples needed before `finetune-readiness` says ready.")
    plateau_k: int = Field(3, ge=2, le=100, description="Prompt scores have plateaued when the held-out scores of the last k scored skill versions...")
    plateau_margin: float = Field(0.02, ge=0.0, le=1.0, description="...lie within this margin of each other (0..1 scale).")
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Share of each camera's examples (its latest in time) that `export-dataset` puts in the validation split.")
