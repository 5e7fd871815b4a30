"""The load layer of the thresholds: teacher-queue pressure, student lag and CPU raise the escalation
``bar`` one step at a time (``escalation.backpressure_level``: 1 defers audits, 2 also flips and scene
changes, 3 also low confidence; safety is never deferred) and lower it one step after the load has
stayed below every lower mark for ``load_calm_s`` (hysteresis: no oscillation)."""

from __future__ import annotations

import math
from typing import Any

from pipeline.config.adaptive import AdaptiveConfig
from pipeline.incidents.escalation import MAX_BAR, QueueState


class LoadBar:
    """One camera's escalation bar and the load figures behind its last update."""

    def __init__(self) -> None:
        self.level = 0
        self.changed_at: float | None = None
        self.calm_since: float | None = None
        self.figures: dict[str, Any] = {}

    def update(self, c: AdaptiveConfig, timestamp: float, queue: QueueState | None, lag: float | None, cpu: float | None) -> None:
        figures: dict[str, Any] = {}
        high: list[str] = []
        calm = True
        if queue is not None:
            figures["queue_pressure"] = round(queue.pressure, 3)
            figures["recent_sheds"] = queue.recent_sheds
            if queue.pressure >= c.load_queue_raise:
                high.append("queue_pressure")
            if queue.recent_sheds > 0:
                high.append("recent_sheds")
            calm = calm and queue.pressure <= c.load_queue_lower and queue.recent_sheds == 0
        if lag is not None and math.isfinite(lag):
            figures["student_lag_s"] = round(lag, 3)
            if lag >= c.load_lag_raise_s:
                high.append("student_lag_s")
            calm = calm and lag <= c.load_lag_lower_s
        if cpu is not None and math.isfinite(cpu):
            figures["cpu_busy"] = round(cpu, 3)
            if cpu >= c.load_cpu_raise:
                high.append("cpu_busy")
            calm = calm and cpu <= c.load_cpu_lower
        figures["high"] = high
        max_bar = min(c.load_max_bar, MAX_BAR)
        if high:
            self.calm_since = None
            spaced = self.changed_at is None or timestamp - self.changed_at >= c.load_step_s
            if self.level < max_bar and spaced:
                self.level += 1
                self.changed_at = timestamp
        elif calm:
            if self.calm_since is None:
                self.calm_since = timestamp
            if self.level > 0 and timestamp - self.calm_since >= c.load_calm_s:
                self.level -= 1
                self.changed_at = timestamp
                self.calm_since = timestamp  # each further step down needs its own calm spell
        else:
            self.calm_since = None  # in the hysteresis band: hold
        if self.level > max_bar:
            self.level = max_bar
        figures["calm_for_s"] = None if self.calm_since is None else round(timestamp - self.calm_since, 3)
        self.figures = figures
