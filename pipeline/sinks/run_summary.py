"""The run's summary: what was read, analysed, escalated and decided, per camera (summary.json, the printed text).
"""

from __future__ import annotations
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunSummary:
    source: str
    camera: str
    student: str
    teacher: str
    frames_read: int = 0
    bad_frames: int = 0
    frames_sampled: int = 0
    gate: dict[str, int] = field(default_factory=dict)
    budget: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    lag_s: dict[str, float] = field(default_factory=dict)
    """How far analysis ran behind the newest frame (source seconds): p50, p95, max."""
    frames_analysed: int = 0
    student_failures: int = 0
    student_stale_dropped: int = 0
    backend_switches: int = 0
    student_latency_ms_mean: float = 0.0
    events_by_type: dict[str, int] = field(default_factory=dict)
    alerts_by_review: dict[str, int] = field(default_factory=dict)
    escalations_by_reason: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    queue: dict[str, Any] = field(default_factory=dict)
    ollama_timings_ms: dict[str, float] = field(default_factory=dict)
    source_seconds: float = 0.0
    wall_seconds: float = 0.0
    stopped_early: str | None = None
    source_truncated: str | None = None
    """Why the source ended before its end (truncated or damaged file, lost stream), else None."""
    reports_by_backend: dict[str, int] = field(default_factory=dict)
    """Student reports by the backend that produced them (``FrameReport.backend``)."""
    disk: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    out_dir: str = ""

    @property
    def fps(self) -> float:
        return self.frames_read / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["frames_per_second"] = round(self.fps, 2)
        data["wall_seconds"] = round(self.wall_seconds, 3)
        return data

    def render(self) -> str:
        gate = ", ".join(f"{k} {v}" for k, v in sorted(self.gate.items())) or "-"
        events = ", ".join(f"{k} {v}" for k, v in sorted(self.events_by_type.items())) or "none"
        esc = ", ".join(f"{k} {v}" for k, v in sorted(self.escalations_by_reason.items())) or "none"
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items())) or "none"
        lines = [
            f"summary for {self.source} (camera {self.camera}), run {self.run_id}",
            f"  student: {self.student}{_render_backend_counts(self.reports_by_backend)}",
            f"  teacher: {self.teacher}",
            f"  frames read {self.frames_read} (bad {self.bad_frames}), sampled {self.frames_sampled}, "
            f"analysed {self.frames_analysed} (failed {self.student_failures}, stale dropped {self.student_stale_dropped})",
            f"  gate: {gate}",
            *([_render_budget(self.budget)] if self.budget else []),
            f"  events: {events}",
            f"  escalations: {esc}; verdicts: {verdicts}",
            f"  teacher queue: max depth {self.queue.get('depth_max', 0)}, sheds {self.queue.get('sheds', 0)}, merges {self.queue.get('merges', 0)}",
            f"  {self.source_seconds:.1f} s of video in {self.wall_seconds:.2f} s wall time, {self.fps:.1f} frames/s read",
        ]
        in_force = self.thresholds.get("in_force") if self.thresholds else None
        if isinstance(in_force, dict) and isinstance(in_force.get("thresholds"), dict):
            shown = ("min_confidence", "persistence", "audit_every", "bar")
            figures = ", ".join(f"{k} {v}" for k, v in in_force["thresholds"].items() if k in shown)
            per_flag = in_force.get("persistence_k_by_flag") or {}
            if per_flag:
                figures += ", per flag " + ", ".join(f"{f} {k}" for f, k in sorted(per_flag.items()))
            lines.append(f"  thresholds in force (period {in_force.get('period', 'default')}): {figures}")
        if self.lag_s:
            lines.append(f"  analysis lag behind newest frame: p50 {self.lag_s['p50']:.2f} s, max {self.lag_s['max']:.2f} s")
        if self.stopped_early:
            lines.append(f"  stopped early: {self.stopped_early}")
        if self.source_truncated:
            lines.append(f"  source ended early: {self.source_truncated}")
        skipped = self.disk.get("skipped") if self.disk else None
        if skipped or (self.disk and (self.disk.get("lines_buffered_max") or self.disk.get("lines_lost"))):
            lines.append(f"  disk low: skipped {', '.join(f'{k} {v}' for k, v in sorted((skipped or {}).items())) or 'nothing'}; "
                         f"log lines held in memory at most {self.disk.get('lines_buffered_max', 0)}, "
                         f"dropped {self.disk.get('lines_lost', 0)}, not on disk at the end {self.disk.get('lines_unwritten', 0)}")
        lines.append(f"  output: {self.out_dir}")
        return "\n".join(lines)


def _render_backend_counts(counts: dict[str, int]) -> str:
    """`` — reports: ollama 6, offline 59 after the breaker opened``: who really answered, from the reports."""
    if not counts:
        return ""
    if len(counts) == 1:
        return f" — {next(iter(counts.values()))} reports"
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] == "offline", kv[0]))
    parts = [f"{backend} {n}" + (" after the breaker opened" if backend == "offline" else "") for backend, n in ordered]
    return " — reports: " + ", ".join(parts)


def _render_budget(counters: dict[str, Any]) -> str:
    def pairs(key: str) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counters.get(key, {}).items())) or "none"

    return f"  keyframe budget: sent {counters.get('frames_sent', 0)} ({pairs('sent')}); held back: {pairs('budget_dropped')}"
