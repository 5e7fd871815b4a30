"""`output:` the run's folder, snapshots and their retention."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.config.base import Section


class OutputConfig(Section):
    out_dir: Path = Field(Path("./edgewatch-out"), description="Folder for events.jsonl, decisions.jsonl, snapshots and summary.json.")
    snapshots: bool = Field(True, description="Save a JPEG snapshot for each alert.")
    min_free_mb: float = Field(100.0, ge=0, le=1_000_000, description="Free-space watermark of the output folder (MiB): below it snapshots and the agreement store stop writing (counted, warned once); events keep flowing.")
    retain_days: float = Field(30.0, gt=0, le=36500, description="Snapshots older than this many days are deleted (at start and as new ones are saved).")
    retain_mb: float = Field(2000.0, gt=0, le=10_000_000, description="Snapshots beyond this total size (MiB) are deleted, oldest first.")
