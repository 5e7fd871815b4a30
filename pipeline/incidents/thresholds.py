"""Thresholds that adapt to the period of day, to load and to the teacher's verdicts.

`ThresholdController` is the per-camera holder the runner asks, once per analysed frame,
which thresholds are in force.  Three layers, applied in this order:

1. **profile** — the named period (``adaptive.profiles``) that matches the frame's local
   wall-clock time (source time mapped to wall clock: ``source_start + t`` for files, the
   injected clock for live sources) or, before the clock, the smoothed scene brightness (a
   dark scene at noon counts as night).  A period takes over only after it has matched for
   ``period_dwell_s``.  The profile overrides the configured thresholds.
2. **fp_feedback** — per camera, per period and per flag, the smoothed (EWMA) rate at which
   the teacher dismissed escalations and the rate at which audits showed a flag the student
   missed.  Dismissals raise that flag's persistence k (low confidence: lower
   ``min_confidence``; flips: raise ``flip_limit``) one bounded step at a time; audit
   misses lower the flag's k.  The rates live in a JSON state file written atomically.
3. **load** — teacher-queue pressure, student lag and CPU raise the escalation ``bar``
   one step at a time (``escalation.backpressure_level``: 1 defers audits, 2 also flips and
   scene changes, 3 also low confidence; safety is never deferred) and lower it one step
   after the load has stayed below every lower mark for ``load_calm_s`` (hysteresis).

Every change of a value in force is returned as a `ThresholdChange` (old, new, cause and
the figures behind it) for the decision log.  Time comes only from frame timestamps and the
injected `Clock`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
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
from pipeline.incidents.escalation import MAX_BAR, QueueState, Thresholds
from pipeline.records import normalise_flag
from pipeline.incidents.periods import DEFAULT_PERIOD, epoch_of, local_datetime, select_period, zone_named
from pipeline.incidents.threshold_records import FlagFeedback, InForce, ThresholdChange

log = logging.getLogger("edgewatch.thresholds")

#: Feedback keys that are not flags: the escalation reasons whose threshold is not a persistence k.
LOW_CONFIDENCE_KEY = "@low_confidence"
FLAG_FLIP_KEY = "@flag_flip"
STATE_VERSION = 1
STATE_FILE_NAME = "thresholds_state.json"





# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------









# --------------------------------------------------------------------------------------
# Periods
# --------------------------------------------------------------------------------------














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
        # load state
        self._bar = 0
        self._bar_changed_at: float | None = None
        self._calm_since: float | None = None
        self._load_figures: dict[str, Any] = {}
        # feedback state: period -> key -> FlagFeedback
        self.feedback: dict[str, dict[str, FlagFeedback]] = {}
        self._pending_figures: dict[str, dict[str, Any]] = {}
        # Verdicts a person gives on the review page (another thread), counted by `update`.
        self._submitted: SimpleQueue[tuple[tuple[str, ...], str, str]] = SimpleQueue()
        self._last_save_t: float | None = None
        self._provenance: dict[str, dict[str, Any]] = {}
        self.state_warning: str | None = None
        """Set when the state file could not be used (corrupt, unreadable)."""
        self._load_state()
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
        self._update_load(timestamp, queue, student_lag_s, cpu_busy)
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
        escalated = {normalise_flag(f) for f in flags if str(f).strip()}
        period = self._period
        table = self.feedback.setdefault(period, {})
        alpha = self.cfg.fp_alpha
        if reason == "audit":
            seen = {normalise_flag(f) for f in teacher_flags if str(f).strip()} & self._triggers
            missed = (seen - escalated) if kind == "confirmed" else set()
            keys = {k for k in table if not k.startswith("@")} | missed
            for key in sorted(keys):
                fb = table.setdefault(key, FlagFeedback())
                sample = 1.0 if key in missed else 0.0
                fb.miss_rate = sample if fb.audits == 0 else fb.miss_rate + alpha * (sample - fb.miss_rate)
                fb.audits += 1
                fb.since_change += 1
                fb.updated_at = ts
                self._adjust(period, key, fb)
            return
        if reason.startswith("safety"):
            keys = sorted(escalated & self._triggers)
            if not keys and ":" in reason:
                keys = [normalise_flag(reason.split(":", 1)[1])]
        elif reason == "low_confidence":
            keys = [LOW_CONFIDENCE_KEY]
        elif reason == "flag_flip":
            keys = [FLAG_FLIP_KEY]
        else:
            return  # a scene change is sent once per change: nothing to make stricter
        sample = 1.0 if kind == "dismissed" else 0.0
        for key in keys:
            fb = table.setdefault(key, FlagFeedback())
            fb.dismissal_rate = sample if fb.verdicts == 0 else fb.dismissal_rate + alpha * (sample - fb.dismissal_rate)
            fb.verdicts += 1
            fb.since_change += 1
            fb.updated_at = ts
            self._adjust(period, key, fb)

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
            "load": {"bar": self._bar, "since": self._bar_changed_at, "figures": dict(self._load_figures)},
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

    def _update_load(self, timestamp: float, queue: QueueState | None, lag: float | None, cpu: float | None) -> None:
        c = self.cfg
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
            self._calm_since = None
            spaced = self._bar_changed_at is None or timestamp - self._bar_changed_at >= c.load_step_s
            if self._bar < max_bar and spaced:
                self._bar += 1
                self._bar_changed_at = timestamp
        elif calm:
            if self._calm_since is None:
                self._calm_since = timestamp
            if self._bar > 0 and timestamp - self._calm_since >= c.load_calm_s:
                self._bar -= 1
                self._bar_changed_at = timestamp
                self._calm_since = timestamp  # each further step down needs its own calm spell
        else:
            self._calm_since = None  # in the hysteresis band: hold
        if self._bar > max_bar:
            self._bar = max_bar
        figures["calm_for_s"] = None if self._calm_since is None else round(timestamp - self._calm_since, 3)
        self._load_figures = figures

    def _adjust(self, period: str, key: str, fb: FlagFeedback) -> None:
        c = self.cfg
        if fb.since_change < c.fp_min_samples:
            return
        before = fb.offset
        if key == LOW_CONFIDENCE_KEY:
            top, bottom = c.fp_max_confidence_steps, 0
        elif key == FLAG_FLIP_KEY:
            top, bottom = c.fp_max_flip_raise, 0
        else:
            top, bottom = c.fp_max_k_raise, -c.fp_max_k_lower
        # Misses first: a flag the student fails to raise costs more than a teacher call.
        if not key.startswith("@") and fb.audits >= c.fp_min_samples and fb.miss_rate >= c.fp_miss_above:
            if fb.offset > bottom:
                fb.offset -= 1
        elif fb.verdicts >= c.fp_min_samples and fb.dismissal_rate >= c.fp_raise_above and fb.offset < top:
            fb.offset += 1
        elif fb.offset > 0 and fb.verdicts >= c.fp_min_samples and fb.dismissal_rate <= c.fp_lower_below:
            fb.offset -= 1
        elif fb.offset < 0 and fb.audits >= c.fp_min_samples and fb.miss_rate < c.fp_miss_above / 2:
            fb.offset += 1
        if fb.offset != before:
            fb.since_change = 0
            name = {LOW_CONFIDENCE_KEY: "min_confidence", FLAG_FLIP_KEY: "flip_limit"}.get(key, f"persistence_k[{key}]")
            self._pending_figures[name] = {
                "period": period, "key": key, "offset": fb.offset, "previous_offset": before,
                "dismissal_rate": round(fb.dismissal_rate, 4), "verdicts": fb.verdicts,
                "miss_rate": round(fb.miss_rate, 4), "audits": fb.audits,
            }
            log.info("%s: feedback moved %s in period %s: offset %d -> %d", self.camera, key, period, before, fb.offset)

    def _compose(self, period: str, reason: str, since: float) -> InForce:
        values = dict(self._periods[period])
        table = self.feedback.get(period, {})
        c = self.cfg
        if LOW_CONFIDENCE_KEY in table:
            steps = max(0, min(table[LOW_CONFIDENCE_KEY].offset, c.fp_max_confidence_steps))
            values["min_confidence"] = round(max(0.0, values["min_confidence"] - steps * c.fp_confidence_step), 4)
        if FLAG_FLIP_KEY in table:
            values["flip_limit"] = values["flip_limit"] + max(0, min(table[FLAG_FLIP_KEY].offset, c.fp_max_flip_raise))
        k, n = values["persistence_k"], values["persistence_n"]
        by_flag: dict[str, int] = {}
        for key, fb in table.items():
            if key.startswith("@") or fb.offset == 0:
                continue
            offset = max(-c.fp_max_k_lower, min(fb.offset, c.fp_max_k_raise))
            flag_k = max(1, min(n, k + offset))
            if flag_k != k:
                by_flag[key] = flag_k
        base = Thresholds.from_config(self.settings.escalation)
        thresholds = replace(
            base,
            min_confidence=values["min_confidence"],
            persistence_k=k,
            persistence_n=n,
            audit_every=values["audit_every"],
            flip_limit=values["flip_limit"],
            bar=self._bar,
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
                cause, figures = "load", dict(self._load_figures)
            elif period_changed:
                cause = "profile"
                figures = {"from_period": old.period, "to_period": new.period, "why": new.period_reason,
                           "local_time": self._local_time,
                           "brightness": None if self._brightness is None else round(self._brightness, 1)}
            else:
                cause, figures = "fp_feedback", dict(self._pending_figures.get(name, {}))
            changes.append(ThresholdChange(self.camera, timestamp, name, was, now, cause, new.period, figures))
        self._pending_figures.clear()
        return changes

    # -- state file ----------------------------------------------------------------------

    def _load_state(self) -> None:
        path = self.state_path
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION or not isinstance(data.get("cameras"), dict):
                raise ValueError("not an edgewatch thresholds state (version %r)" % (data.get("version") if isinstance(data, dict) else None))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self.state_warning = f"thresholds state file {path} is unusable ({exc}); starting from default feedback"
            log.warning("%s", self.state_warning)
            return
        mine = data["cameras"].get(self.camera, {})
        periods = mine.get("periods", {}) if isinstance(mine, dict) else {}
        skipped = 0
        for period, table in (periods.items() if isinstance(periods, dict) else ()):
            if not isinstance(table, dict):
                skipped += 1
                continue
            for key, raw in table.items():
                fb = _feedback_from_json(raw)
                if fb is None or not isinstance(key, str):
                    skipped += 1
                    continue
                self.feedback.setdefault(str(period), {})[key] = fb
        if skipped:
            self.state_warning = f"thresholds state file {path}: {skipped} malformed entries skipped"
            log.warning("%s", self.state_warning)

    def save(self) -> bool:
        """Write this camera's feedback into the state file atomically (other cameras' entries kept)."""
        path = self.state_path
        cameras: dict[str, Any] = {}
        try:
            existing = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
            if isinstance(existing, dict) and existing.get("version") == STATE_VERSION and isinstance(existing.get("cameras"), dict):
                cameras = dict(existing["cameras"])
        except (OSError, UnicodeDecodeError, ValueError):
            pass  # a corrupt file is replaced (its warning was logged at load)
        cameras[self.camera] = {
            "periods": {p: {k: fb.to_json() for k, fb in sorted(t.items())} for p, t in sorted(self.feedback.items())},
        }
        payload = {"version": STATE_VERSION, "cameras": cameras}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(payload, fh, indent=1, sort_keys=True)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("%s: could not save thresholds state to %s: %s", self.camera, path, exc)
            return False
        return True


def _feedback_from_json(raw: Any) -> FlagFeedback | None:
    if not isinstance(raw, dict):
        return None
    try:
        fb = FlagFeedback(
            dismissal_rate=float(raw.get("dismissal_rate", 0.0)),
            verdicts=int(raw.get("verdicts", 0)),
            miss_rate=float(raw.get("miss_rate", 0.0)),
            audits=int(raw.get("audits", 0)),
            offset=int(raw.get("offset", 0)),
            since_change=int(raw.get("since_change", 0)),
            updated_at=None if raw.get("updated_at") is None else float(raw["updated_at"]),
        )
    except (TypeError, ValueError):
        return None
    rates_ok = all(math.isfinite(r) and 0.0 <= r <= 1.0 for r in (fb.dismissal_rate, fb.miss_rate))
    if not rates_ok or min(fb.verdicts, fb.audits, fb.since_change) < 0 or abs(fb.offset) > 100:
        return None
    return fb


def resolve_state_path(settings: Settings) -> Path:
    return Path(settings.adaptive.state_file) if settings.adaptive.state_file else Path(settings.output.out_dir) / STATE_FILE_NAME


# --------------------------------------------------------------------------------------
# `run_camera.py thresholds`
# --------------------------------------------------------------------------------------








