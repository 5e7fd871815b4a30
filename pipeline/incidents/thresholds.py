"""Thresholds that adapt to the period of day, to load and to the teacher's verdicts.

`ThresholdController` is the per-camera holder the runner asks, once per analysed frame,
which thresholds are in force, and the one owner of them (reload included).  Three layers,
applied in this order:

1. **profile** — the named period (``adaptive.profiles``) that matches the frame's local
   wall-clock time (source time mapped to wall clock: ``source_start + t`` for files, the
   injected clock for live sources) or, before the clock, the smoothed scene brightness (a
   dark scene at noon counts as night).  A period takes over only after it has matched for
   ``period_dwell_s``.  The profile overrides the configured thresholds.
2. **fp_feedback** — per camera, per period and per flag, the smoothed (EWMA) rate at which
   the teacher dismissed escalations and the rate at which audits showed a flag the student
   missed.  Dismissals raise that flag's persistence k (low confidence: lower
   ``min_confidence``; flips: raise ``flip_limit``) one bounded step at a time; audit
   misses lower the flag's k (`pipeline.incidents.threshold_feedback`).  The rates live in a JSON
   state file written atomically (`pipeline.incidents.threshold_state`).
3. **load** — teacher-queue pressure, student lag and CPU raise the escalation ``bar``
   one step at a time (``escalation.backpressure_level``: 1 defers audits, 2 also flips and
   scene changes, 3 also low confidence; safety is never deferred) and lower it one step
   after the load has stayed below every lower mark for ``load_calm_s`` (hysteresis;
   `pipeline.incidents.load_bar`).

Every change of a value in force is returned as a `ThresholdChange` (old, new, cause and
the figures behind it) for the decision log.  Time comes only from frame timestamps and the
injected `Clock`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from queue import Empty, SimpleQueue
from types import MappingProxyType
from typing import Any, Iterable

from pipeline.clock import Clock
from pipeline.config.adaptive import AdaptiveConfig, ThresholdProfile
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError, UsageError
from pipeline.incidents.escalation import QueueState, Thresholds
from pipeline.incidents.load_bar import LoadBar
from pipeline.incidents.periods import DEFAULT_PERIOD, epoch_of, local_datetime, select_period, zone_named
from pipeline.incidents.threshold_feedback import FeedbackRules
from pipeline.incidents.threshold_records import InForce, ThresholdChange
from pipeline.incidents.threshold_state import FeedbackTable, load_feedback, resolve_state_path, save_feedback

log = logging.getLogger("edgewatch.thresholds")


# --------------------------------------------------------------------------------------
# The controller
# --------------------------------------------------------------------------------------


class ThresholdController:
    """Per-camera adaptive thresholds.  Not thread-safe: drive it from the runner's thread."""

    def __init__(
        self,
        settings: Settings,
        camera: str,
        clock: Clock,
        state_path: Path | str | None = None,
        *,
        live: bool = False,
    ) -> None:
        self.camera = camera
        self.clock = clock
        self.live = live
        self.state_path = Path(state_path) if state_path is not None else resolve_state_path(settings)
        self._configure(settings)
        # Files: t=0 is source_start (or the moment the run starts); live: the clock's now.
        self._origin = epoch_of(self.cfg.source_start, self._zone) if self.cfg.source_start else clock.wall()
        # period state
        self._period = DEFAULT_PERIOD
        self._period_reason = "adaptation disabled" if not self.cfg.enabled else "no profile matches"
        self._candidate: str | None = None
        self._candidate_since = 0.0
        self._started = False
        self._brightness: float | None = None
        self._brightness_t: float | None = None
        self._local_time: str | None = None
        self._load = LoadBar()
        # Verdicts a person gives on the review page (another thread), counted by `update`.
        self._submitted: SimpleQueue[tuple[tuple[str, ...], str, str]] = SimpleQueue()
        self._last_save_t: float | None = None
        self._provenance: dict[str, dict[str, Any]] = {}
        # state_warning: set when the state file could not be used (corrupt, unreadable).
        loaded, self.state_warning = load_feedback(self.state_path, camera)
        self._feedback = FeedbackRules(camera, loaded)
        self._inforce = self._build(0.0, initial=True)
        for name in self._inforce.values():
            self._provenance[name] = {"since": None, "cause": "config"}

    def _configure(self, settings: Settings) -> None:
        """Take the configured values (at start and on reload): periods, base thresholds, triggers."""
        self.settings = settings
        self.cfg: AdaptiveConfig = settings.adaptive
        self._zone = zone_named(self.cfg.timezone)
        self._base = self._period_values(None)
        self._periods: dict[str, dict[str, Any]] = {DEFAULT_PERIOD: self._base}
        for name, profile in self.cfg.profiles.items():
            values = self._period_values(profile)
            if values["persistence_k"] > values["persistence_n"]:
                raise ConfigError(
                    f"adaptive.profiles.{name}: persistence_k ({values['persistence_k']}) must be <= "
                    f"persistence_n ({values['persistence_n']}) once merged with the escalation section"
                )
            self._periods[name] = values
        self._triggers = Thresholds.from_config(settings.escalation).safety_triggers

        # -- public ------------------------------------------------------------------------

    @property
    def in_force(self) -> InForce:
        return self._inforce

    @property
    def feedback(self) -> FeedbackTable:
        """Period -> feedback key -> its smoothed teacher feedback."""
        return self._feedback.table

    def current(self) -> Thresholds:
        """The thresholds in force now: what the escalation policy reads at every decision."""
        return self._inforce.thresholds

    def reload(self, settings: Settings, timestamp: float) -> list[ThresholdChange]:
        """SIGHUP: the new configuration is the base from now on; feedback and load state carry over.

        Returns what changed (cause ``reload``), like `update` does for adaptation."""
        self._configure(settings)
        if self._period not in self._periods:
            self._period, self._period_reason = DEFAULT_PERIOD, "period removed by reload"
        new = self._build(timestamp)
        changes = [replace(ch, cause="reload") for ch in self._diff(self._inforce, new, timestamp, False)]
        for ch in changes:
            self._provenance[ch.name] = {"since": timestamp, "cause": "reload"}
        self._inforce = replace(new, since=timestamp if changes else self._inforce.since)
        return changes

    def local_time(self, timestamp: float) -> datetime:
        """The frame's wall-clock time in the configured zone."""
        epoch = self.clock.wall() if self.live else self._origin + timestamp
        return local_datetime(epoch, self._zone)

    def update(
        self,
        timestamp: float,
        brightness: float | None = None,
        queue: QueueState | None = None,
        student_lag_s: float | None = None,
        cpu_busy: float | None = None,
    ) -> tuple[InForce, list[ThresholdChange]]:
        """Thresholds in force for the frame at source time ``timestamp`` and what changed."""
        if not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
            log.warning("%s: thresholds update with non-finite timestamp %r ignored", self.camera, timestamp)
            return self._inforce, []
        if not self.cfg.enabled:
            return self._inforce, []
        local = self.local_time(timestamp)
        self._local_time = local.isoformat(timespec="seconds")
        self._smooth_brightness(timestamp, brightness)
        period_changed = self._update_period(timestamp, local)
        submitted = self._count_submitted(timestamp)
        self._load.update(self.cfg, timestamp, queue, student_lag_s, cpu_busy)
        new = self._build(timestamp)
        changes = self._diff(self._inforce, new, timestamp, period_changed)
        if changes:
            new = replace(new, since=timestamp)
            for ch in changes:
                self._provenance[ch.name] = {"since": timestamp, "cause": ch.cause}
        else:
            new = replace(new, since=self._inforce.since)
        self._inforce = new
        if self._last_save_t is None and not submitted:
            self._last_save_t = timestamp
        elif submitted or timestamp - self._last_save_t >= self.cfg.save_every_s:
            self._last_save_t = timestamp
            self.save()
        return new, changes

    def record_verdict(
        self,
        flags: Iterable[str],
        reason: str,
        verdict_kind: Any,
        timestamp: float,
        teacher_flags: Iterable[str] = (),
    ) -> None:
        """Count one teacher verdict on an escalation (its flags and reason) in the current period.

        Dismissed/confirmed escalations feed the flag's dismissal rate; an audit where the
        teacher confirmed a safety flag the student did not raise feeds that flag's miss
        rate.  Unverified verdicts say nothing and are ignored.  The adjustment shows in the
        next `update` as a ``fp_feedback`` change.
        """
        if not self.cfg.enabled:
            return
        kind = str(getattr(verdict_kind, "value", verdict_kind)).lower()
        if kind not in ("confirmed", "dismissed"):
            return
        ts = float(timestamp) if isinstance(timestamp, (int, float)) and math.isfinite(timestamp) else None
        self._feedback.record(self.cfg, self._period, flags, reason, kind, ts, teacher_flags, self._triggers)

    def submit_verdict(self, flags: Iterable[str], reason: str, verdict_kind: Any) -> None:
        """Thread-safe: a person's verdict from the review page, counted like a teacher's by the next
        `update` (on the runner's thread) in the period then in force, and saved at once."""
        self._submitted.put((tuple(flags), reason, str(getattr(verdict_kind, "value", verdict_kind))))

    def _count_submitted(self, timestamp: float) -> bool:
        counted = False
        while True:
            try:
                flags, reason, kind = self._submitted.get_nowait()
            except Empty:
                return counted
            self.record_verdict(flags, reason, kind, timestamp)
            counted = True

    def thresholds_for(self, period: str) -> InForce:
        """What would be in force in ``period`` now (feedback included, load bar as now)."""
        if period not in self._periods:
            raise UsageError(f"unknown period {period!r} (known: {', '.join(self._periods)})")
        return self._compose(period, "as configured", self._inforce.since)

    def summary(self) -> dict[str, Any]:
        periods: dict[str, Any] = {}
        for name in self._periods:
            profile = self.cfg.profiles.get(name)
            inforce = self._compose(name, "", 0.0)
            periods[name] = {
                "clock": f"{profile.start}-{profile.end}" if profile else None,
                "brightness": [profile.brightness_min, profile.brightness_max] if profile and profile.brightness_min is not None else None,
                "thresholds": {k: v for k, v in inforce.values().items() if k not in ("period", "bar")},
            }
        return {
            "camera": self.camera,
            "enabled": self.cfg.enabled,
            "timezone": self.cfg.timezone,
            "in_force": self._inforce.to_json(),
            "provenance": {k: dict(v) for k, v in sorted(self._provenance.items())},
            "load": {"bar": self._load.level, "since": self._load.changed_at, "figures": dict(self._load.figures)},
            "periods": periods,
            "feedback": {p: {k: fb.to_json() for k, fb in sorted(t.items())} for p, t in sorted(self.feedback.items())},
            "state_file": str(self.state_path),
            "state_warning": self.state_warning,
        }

    # -- layers --------------------------------------------------------------------------

    def _period_values(self, profile: ThresholdProfile | None) -> dict[str, Any]:
        esc, s = self.settings.escalation, self.settings
        values: dict[str, Any] = {
            "min_confidence": esc.min_confidence,
            "persistence_k": esc.persistence_k,
            "persistence_n": esc.persistence_n,
            "audit_every": esc.audit_every,
            "flip_limit": esc.flip_limit,
            "gate_block_min_change": s.gate.block_min_change,
            "sample_fps": s.capture.sample_fps,
        }
        if profile is not None:
            for name in values:
                override = getattr(profile, name)
                if override is not None:
                    values[name] = override
        return values

    def _smooth_brightness(self, timestamp: float, brightness: float | None) -> None:
        if brightness is None or not isinstance(brightness, (int, float)) or not math.isfinite(brightness):
            return
        value = min(255.0, max(0.0, float(brightness)))
        tau = self.cfg.brightness_smoothing_s
        if self._brightness is None or self._brightness_t is None or tau <= 0:
            self._brightness = value
        else:
            dt = max(0.0, timestamp - self._brightness_t)
            weight = 1.0 - math.exp(-dt / tau)
            self._brightness += weight * (value - self._brightness)
        self._brightness_t = timestamp

    def _update_period(self, timestamp: float, local: datetime) -> bool:
        candidate, why = select_period(local, self._brightness, self.cfg.profiles)
        first, self._started = not self._started, True
        if candidate == self._period:
            self._candidate = None
            self._period_reason = why
            return False
        if self._candidate != candidate:
            self._candidate, self._candidate_since = candidate, timestamp
        dwell = timestamp - self._candidate_since
        if dwell < self.cfg.period_dwell_s and not first:  # the first frame takes its period at once
            return False
        self._period, self._period_reason, self._candidate = candidate, why, None
        return True

    def _compose(self, period: str, reason: str, since: float) -> InForce:
        values = dict(self._periods[period])
        by_flag = self._feedback.apply(self.cfg, period, values)
        k, n = values["persistence_k"], values["persistence_n"]
        base = Thresholds.from_config(self.settings.escalation)
        thresholds = replace(
            base,
            min_confidence=values["min_confidence"],
            persistence_k=k,
            persistence_n=n,
            audit_every=values["audit_every"],
            flip_limit=values["flip_limit"],
            bar=self._load.level,
            persistence_k_by_flag=MappingProxyType(dict(by_flag)),
        )
        return InForce(
            camera=self.camera,
            period=period,
            period_reason=reason,
            thresholds=thresholds,
            persistence_k_by_flag=MappingProxyType(by_flag),
            gate_block_min_change=values["gate_block_min_change"],
            sample_fps=values["sample_fps"],
            since=since,
            local_time=self._local_time,
            brightness=self._brightness,
        )

    def _build(self, timestamp: float, *, initial: bool = False) -> InForce:
        if initial:
            return self._compose(DEFAULT_PERIOD, self._period_reason, 0.0)
        return self._compose(self._period, self._period_reason, timestamp)

    def _diff(self, old: InForce, new: InForce, timestamp: float, period_changed: bool) -> list[ThresholdChange]:
        before, after = old.values(), new.values()
        changes = []
        for name in list(after) + [n for n in before if n not in after]:
            was = before.get(name, old.thresholds.persistence_k if name.startswith("persistence_k[") else None)
            now = after.get(name, new.thresholds.persistence_k if name.startswith("persistence_k[") else None)
            if was == now:
                continue
            if name == "bar":
                cause, figures = "load", dict(self._load.figures)
            elif period_changed:
                cause = "profile"
                figures = {"from_period": old.period, "to_period": new.period, "why": new.period_reason,
                           "local_time": self._local_time,
                           "brightness": None if self._brightness is None else round(self._brightness, 1)}
            else:
                cause, figures = "fp_feedback", dict(self._feedback.pending_figures.get(name, {}))
            changes.append(ThresholdChange(self.camera, timestamp, name, was, now, cause, new.period, figures))
        self._feedback.pending_figures.clear()
        return changes

    def save(self) -> bool:
        """Write this camera's feedback into the state file atomically (other cameras' entries kept)."""
        return save_feedback(self.state_path, self.camera, self._feedback.table)
