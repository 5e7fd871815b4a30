"""The per-camera state machine: turns window aggregates and teacher verdicts into states and events.

This is the only module that imports ``transitions``.  Time is *source* time only: every
call carries the timestamp of the frame it is about (``update`` the newest report's,
``tick`` a gate-skipped frame's), so a replay behaves exactly like the live camera and no
wall-clock timer exists.

States::

    idle ──activity──▶ observing ──safety flag──▶ suspicious ──k of n──▶ alert ──quiet──▶ cooldown ──▶ idle
      ▲                   │  ▲                        │                    ▲                 │   (or observing
      └────── quiet ──────┘  └──────── quiet ─────────┘                    │                 │    if activity
                                                                           │                 └──flag──▶ suspicious
    any state ──runner escalates──▶ escalated ──verdict──▶ alert / observing

Guards (each names its reason in the `Transition` it produces, with the figures it used):

* ``notice_activity`` idle → observing: the newest report shows activity — an observation
  clause naming something present or moving (`ACTIVITY_WORDS`, not negated by a
  `QUIET_WORDS` word earlier in the clause) at confidence ≥ ``activity_min_confidence``,
  or a safety flag no dismissal covers.  Starts an *activity event* (person / vehicle / motion).
* ``raise_suspicion`` observing/cooldown → suspicious: the newest report's flags name a
  safety trigger (``safety_triggers`` ∪ ``tamper``) that no dismissal covers.  Flags are
  matched exactly as the escalation policy matches them (`pipeline.incidents.evidence.match_safety`:
  ``person_fall`` → fall, ``no_fire`` → nothing), so monitor and policy agree on what a
  safety flag is; events are typed by the canonical trigger name.  ``model_error`` is
  not a trigger: a failed analysis never alerts; it only *holds* the current state (it is
  no evidence that things went quiet).
* ``persist_alert`` suspicious → alert: a trigger flag is in ≥ k of the last n reports
  (``escalation.persistence_k``/``_n`` in force, the same rule the policy escalates on), or
  ``tamper`` on a frame the change gate read as a tamper change (`evidence.gate_corroborated`:
  an instant has one frame).  One alert event per persisting flag type.  Used when the runner
  has not escalated (teacher disabled, or before its decision).
* ``calm_down`` suspicious → observing: no trigger flag for ``quiet_after_s``.
* ``go_quiet`` observing → idle: no activity for ``quiet_after_s``; the activity event ends.
* ``end_alert`` alert → cooldown: no trigger flag for ``quiet_after_s``; alert events end.
* ``finish_cooldown`` cooldown → idle after ``cooldown_s`` without flags (→ observing
  instead when activity was seen within ``quiet_after_s``: the activity event goes on).
* ``send_to_teacher`` any → escalated: the runner sent a sequence to the teacher.  With
  ``safety=True`` the alert event is raised at once with review ``pending_review``
  (alert first, explanation later); the verdict updates the same event id.
* ``teacher_confirmed`` → alert (or → observing when neither the escalation nor the
  teacher names a safety flag: nothing to alert about);
  ``teacher_dismissed`` → observing (the dismissal *covers* the frames the teacher saw, up to
  its last keyframe: they stop counting as evidence; later or stronger frames count again and
  alert on their own — `pipeline.incidents.verdicts`);
  ``teacher_unverified`` → alert marked unverified (or → observing without a safety flag).
* ``verdict_timeout`` escalated → alert (review ``unverified``) when no verdict came within
  ``verdict_timeout_s`` (60 s of source time) and an alert is pending or a trigger still
  persists k of n; → observing when nothing persists (e.g. the escalation was shed).
  A verdict arriving later still updates the events it concerns.

A verdict resolves its own escalation and every other escalation of the same incident still
waiting (the teacher queue folds same-incident escalations into one request, and the
monitor is not told which were folded); a later verdict on one of them still updates the
alert events it concerns — the teacher's latest word wins.

Gate-skipped frames (``tick``) show the same scene as the last analysed frame, so the last
report's activity and flags are carried forward over them: a hazard that is still in view
never "goes quiet" just because nothing moved, and each skipped frame counts as one more
report with the last report's flags in the k-of-n persistence (a person who fell and lies
still is alerted on at the next sampled frame, not at the next heartbeat).  The trade-off: a
flag on a frame followed only by static frames persists too; the teacher reviews it when the
runner escalates.  Quiet periods are counted from the last analysed report (or skipped frame)
that showed activity/flags.

Event ``start`` is the source time at which the monitor opened the event (an alert: when it
was raised — by k-of-n persistence, an escalation or a verdict), ``end`` the source time at
which the monitor ended it.  Ids are counters
(``{camera}-{n:05d}-{type}``), so a replay gives identical ids.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from transitions import Machine

from pipeline.config import EscalationConfig, StatesConfig
from pipeline.incidents.escalation import FixedThresholds, Onsets, Thresholds, ThresholdSource, track_onsets
from pipeline.incidents.evidence import gate_corroborated, match_safety, persisting
from pipeline.incidents.verdicts import Coverage, prune, review_after_dismissal, review_on_escalation, uncover, uncovered
from pipeline.records import (
    ALWAYS_TRIGGERS,
    Event,
    ReviewStatus,
    Transition,
    Verdict,
    VerdictKind,
    WindowStats,
    normalise_flag,
)

log = logging.getLogger("edgewatch.states")
# pytransitions logs every callback at INFO; our own transition lines say what matters.
if logging.getLogger("transitions").level == logging.NOTSET:
    logging.getLogger("transitions").setLevel(logging.WARNING)

STATES: tuple[str, ...] = ("idle", "observing", "suspicious", "alert", "cooldown", "escalated")

#: Without a verdict for this long (source seconds) the escalated state resolves on its own.
VERDICT_TIMEOUT_S = 60.0

#: Flags that always count as safety triggers, whatever the configuration says.

#: Distinct flag sets whose trigger matching is remembered (flag sets repeat frame after frame).
_TRIGGER_CACHE_SIZE = 1024

#: Escalations remembered for matching late verdicts; the oldest are forgotten beyond this.
MAX_PENDING = 256



Review = ReviewStatus


@dataclass(frozen=True, slots=True)
class MonitorOutput:
    """What one call produced: the transitions taken and the event lines to write."""

    transitions: tuple[Transition, ...] = ()
    events: tuple[Event, ...] = ()




@dataclass(slots=True)
class _OpenEvent:
    """An event still open; written out as immutable `Event` lines."""

    id: str
    type: str
    severity: Literal["activity", "alert"]
    start: float
    flags: set[str] = field(default_factory=set)
    peak_confidence: float = 0.0
    reasons: list[str] = field(default_factory=list)
    review: ReviewStatus = ReviewStatus.NOT_REVIEWED
    explanation: str = ""
    escalation_ids: set[str] = field(default_factory=set)
    last_seen: float = 0.0

    def add_reason(self, reason: str) -> None:
        if reason and (not self.reasons or self.reasons[-1] != reason):
            self.reasons.append(reason)

    def line(self, phase: Literal["new", "update", "end"], state: str, camera: str, end: float | None = None) -> Event:
        return Event(
            id=self.id,
            camera=camera,
            type=self.type,
            severity=self.severity,
            phase=phase,
            state=state,
            start=self.start,
            end=end,
            flags=tuple(sorted(self.flags)),
            peak_confidence=self.peak_confidence,
            reasons=tuple(self.reasons),
            review=self.review,
            explanation=self.explanation,
            snapshot=None,
        )


@dataclass(slots=True)
class _Pending:
    """An escalation sent to the teacher whose verdict has not come back."""

    escalation_id: str
    incident_id: str
    reason: str
    flags: frozenset[str]
    safety: bool
    at: float


def _escalation_reason(p: _Pending) -> str:
    kind = "safety" if p.safety else "review"
    return f"escalated {p.escalation_id} to the teacher for {kind}: {p.reason}"


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class CameraMonitor:
    """One camera's state machine.  Not thread-safe: the runner drives it from one thread.

    ``state`` (a str, one of `STATES`) is maintained by ``transitions`` on this object.
    """

    state: str

    def __init__(
        self,
        camera: str,
        cfg: StatesConfig,
        safety_triggers: Iterable[str],
        *,
        verdict_timeout_s: float = VERDICT_TIMEOUT_S,
        rearm_after_s: float = 2.0,
        thresholds: ThresholdSource | None = None,
    ) -> None:
        self.camera = camera
        self.cfg = cfg
        self.triggers: frozenset[str] = frozenset(normalise_flag(f) for f in safety_triggers if f and f.strip()) | ALWAYS_TRIGGERS
        # The persistence rule (k of n, per flag) is read from the thresholds in force, the same
        # ones the escalation policy reads: one rule, one owner.
        self.thresholds: ThresholdSource = thresholds or FixedThresholds(Thresholds.from_config(
            EscalationConfig(safety_triggers=sorted(self.triggers))))
        self.verdict_timeout_s = float(verdict_timeout_s)
        self.rearm_after_s = max(0.0, float(rearm_after_s))
        self._onsets = Onsets()

        self._now = -math.inf
        self._stats: WindowStats | None = None
        self._last_activity_ts = -math.inf
        self._last_flag_ts = -math.inf
        self._cooldown_since = -math.inf
        self._escalated_since = -math.inf
        self._activity: _OpenEvent | None = None
        self._alerts: dict[str, _OpenEvent] = {}
        self._pending: dict[str, _Pending] = {}
        self._coverages: tuple[Coverage, ...] = ()
        """What the teacher's dismissals covered (`pipeline.incidents.verdicts`)."""
        self._alert_ended_at: dict[str, float] = {}
        self._event_counter = 0
        self._carried = 0
        """Gate-skipped frames since the last analysed one that carried its safety flags forward."""
        self._trigger_cache: dict[frozenset[str], frozenset[str]] = {}
        self._incident_counter = 0
        self.open_incident_id: str | None = None
        """Incident id from leaving idle/observing for suspicious (or escalated) until back in idle/observing."""

        # Per-call buffers, and the reason/figures of the guard that passed last.
        self._out_transitions: list[Transition] = []
        self._out_events: list[Event] = []
        self._guard: tuple[str, dict[str, Any]] = ("", {})

        self._machine = Machine(
            model=self,
            states=list(STATES),
            initial="idle",
            transitions=_TRANSITIONS,
            send_event=True,
            auto_transitions=False,
            before_state_change="_record_transition",
            model_attribute="state",
        )

    # ==================================================================================
    # Public API (the runner's calls)
    # ==================================================================================

    def update(self, stats: WindowStats) -> MonitorOutput:
        """Advance on the window aggregates after an analysed frame."""
        if stats.n_reports == 0 or not _finite(stats.timestamp):
            return MonitorOutput()
        t = self._advance(stats.timestamp)
        self._stats = stats
        self._carried = 0
        self._onsets, new_onsets = track_onsets(self._onsets, self._evidence_triggers(stats), t, self.rearm_after_s)
        if new_onsets and self._coverages:
            # The same rule as the escalation policy: a flag back after a real absence is a new
            # incident, and an earlier dismissal does not speak for it.
            self._coverages = tuple(c for c in self._coverages if not (c.flags & new_onsets))
        self._coverages = prune(self._coverages, t - stats.window_s)
        flags = self._live_now(stats)
        activity = self._activity_kind(stats)
        if activity is not None or flags:
            self._last_activity_ts = t
        if flags:
            self._last_flag_ts = t
        self._hold_if_failed(stats, flags, t)

        self._step(t, stats, ("update",))
        self._refresh_events(t, stats, flags, activity)
        self._end_quiet_activity(t)
        return self._flush()

    def tick(self, timestamp: float) -> MonitorOutput:
        """Source time passed without an analysed frame (gate skipped it): end quiet periods."""
        if not _finite(timestamp):
            log.warning("%s: tick with non-finite timestamp %r ignored", self.camera, timestamp)
            return MonitorOutput()
        advanced = timestamp > self._now
        t = self._advance(timestamp)
        if self._stats is not None:
            # Same scene as the last analysed frame: carry its activity and flags forward.
            if self._live_now(self._stats):
                if advanced:
                    self._carried += 1
                self._last_flag_ts = t
                self._last_activity_ts = t
            elif self._activity_kind(self._stats) is not None:
                self._last_activity_ts = t
            else:
                self._hold_if_failed(self._stats, frozenset(), t)
        self._step(t, self._stats, ("tick",))
        self._end_quiet_activity(t)
        return self._flush()

    def escalate(
        self,
        escalation_id: str,
        incident_id: str,
        reason: str,
        flags: frozenset[str],
        timestamp: float,
        safety: bool,
    ) -> MonitorOutput:
        """The runner sent a sequence to the teacher; await the verdict in ``escalated``.

        With ``safety`` the alert event is raised now, review ``pending_review``.
        """
        if not _finite(timestamp):
            log.warning("%s: escalation %s with non-finite timestamp ignored", self.camera, escalation_id)
            return MonitorOutput()
        t = self._advance(timestamp)
        norm = frozenset(f for f in (normalise_flag(x) for x in flags) if f)
        pending = _Pending(escalation_id, incident_id, reason, norm, bool(safety), t)
        self._pending[escalation_id] = pending
        while len(self._pending) > MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        if self.state != "escalated":
            self.trigger("send_to_teacher", timestamp=t, stats=self._stats, pending=pending)
        else:
            log.info("%s: further escalation %s while awaiting a verdict (%s)", self.camera, escalation_id, reason)
        if self.open_incident_id is None:
            self.open_incident_id = incident_id

        why = _escalation_reason(pending)
        canonical = self._triggers_in(norm)
        types = sorted(canonical)
        if safety and not types:
            types = sorted(norm) or ["safety"]
        for ev in self._alerts.values():
            # A lower-priority review (low confidence, audit, flips) of a window that still
            # shows a confirmed alert must not put that alert back in doubt: only a new
            # safety escalation re-opens review of an alert.
            if safety or (ev.type in canonical and ev.review != Review.CONFIRMED):
                self._mark_review(ev, escalation_id, review_on_escalation(ev.review), why)
        if safety:
            for kind in types:
                if kind not in self._alerts:
                    ev = self._start_alert(kind, t, why, review=Review.PENDING_REVIEW)
                    ev.escalation_ids.add(escalation_id)
        return self._flush()

    def apply_verdict(self, verdict: Verdict, timestamp: float, coverage: Coverage | None = None) -> MonitorOutput:
        """Apply the teacher's verdict on an escalation (confirmed / dismissed / unverified).

        A dismissal covers ``coverage`` (the frames the teacher saw, `verdicts.coverage_of`);
        without it, every frame up to the verdict's arrival at any confidence."""
        t = self._time(timestamp)
        resolved = [p for p in self._pending.values()
                    if p.escalation_id == verdict.escalation_id
                    or (verdict.incident_id and p.incident_id == verdict.incident_id)]
        for p in resolved:
            self._pending.pop(p.escalation_id, None)
        ids = {p.escalation_id for p in resolved} | {verdict.escalation_id}
        linked = [ev for ev in self._alerts.values() if ev.escalation_ids & ids]
        if not resolved and not linked:
            log.info("%s: verdict %s for unknown escalation %s ignored",
                     self.camera, verdict.kind.value, verdict.escalation_id)
            return self._flush()
        teacher_flags = frozenset(f for f in (normalise_flag(x) for x in verdict.safety_flags) if f)
        escalated_flags = frozenset().union(*(p.flags for p in resolved)) if resolved else frozenset()
        escalated_types = self._triggers_in(escalated_flags)
        # A type only the teacher names, whose alert this camera ended less than cooldown_s ago,
        # is that same incident seen again in the sequence's older frames: already reported.
        repeated = {k for k in self._triggers_in(teacher_flags) - escalated_types
                    if t - self._alert_ended_at.get(k, -math.inf) < self.cfg.cooldown_s}
        context = {
            "verdict": verdict,
            "resolved": resolved,
            "linked": linked,
            "teacher_flags": teacher_flags,
            "alert_types": sorted((escalated_types | self._triggers_in(teacher_flags)) - repeated),
        }
        named = ", ".join(context["alert_types"]) or "no safety flag"
        context["why"] = f"teacher {verdict.kind.value} {verdict.escalation_id} ({named}; {verdict.backend} {verdict.model})"
        if verdict.kind == VerdictKind.CONFIRMED:
            self._verdict_confirmed(t, context)
        elif verdict.kind == VerdictKind.DISMISSED:
            self._verdict_dismissed(t, context, escalated_flags, coverage)
        else:
            self._verdict_unverified(t, context)
        return self._flush()

    def close(self, timestamp: float) -> MonitorOutput:
        """End of input: end every open event."""
        t = self._time(timestamp)
        for kind in list(self._alerts):
            self._end_alert_event(kind, t, "input ended")
        if self._activity is not None:
            self._activity.add_reason("input ended")
            self._out_events.append(self._activity.line("end", self.state, self.camera, end=t))
            self._activity = None
        return self._flush()

    def is_covered(self, flags: Iterable[str], timestamp: float, confidence: float) -> bool:
        """True when a teacher's dismissal speaks for every safety trigger ``flags`` name on a
        frame at ``timestamp`` with ``confidence`` (no trigger named: False)."""
        canonical = self._triggers_in(frozenset(f for f in (normalise_flag(x) for x in flags) if f))
        return bool(canonical) and not uncovered(canonical, timestamp, confidence, self._coverages)

    # ==================================================================================
    # Driving the machine
    # ==================================================================================

    #: Triggers tried in each state after an update or tick, in order of precedence.
    _CANDIDATES: dict[str, tuple[str, ...]] = {
        "idle": ("notice_activity",),
        "observing": ("raise_suspicion", "go_quiet"),
        "suspicious": ("persist_alert", "calm_down"),
        "alert": ("end_alert",),
        "cooldown": ("raise_suspicion", "finish_cooldown"),
        "escalated": ("verdict_timeout",),
    }

    def _step(self, t: float, stats: WindowStats | None, via: tuple[str, ...]) -> None:
        # A few steps at most (idle → observing → suspicious → alert in one frame when k = 1).
        for _ in range(len(STATES)):
            for name in self._CANDIDATES[self.state]:
                if name == "notice_activity" and via == ("tick",):
                    continue  # a skipped frame shows nothing new
                if self.trigger(name, timestamp=t, stats=stats):
                    break
            else:
                return

    def _hold_if_failed(self, stats: WindowStats, live_flags: frozenset[str], t: float) -> None:
        """A failed analysis (flag model_error, nothing observed) is no evidence that things went
        quiet: it holds the current state instead of letting quiet timers run.  It never starts
        anything either (from idle it stays idle)."""
        failed = stats.evidence is not None and stats.evidence.failed and not live_flags
        if not failed or self.state == "idle":
            return
        self._last_activity_ts = t
        if self.state in ("suspicious", "alert", "escalated"):
            self._last_flag_ts = t

    def _time(self, timestamp: float) -> float:
        """A caller's timestamp, or the latest source time when it is not a finite number."""
        if _finite(timestamp):
            return self._advance(timestamp)
        return self._now if math.isfinite(self._now) else 0.0

    def _advance(self, timestamp: float) -> float:
        """Source time never runs backwards inside the monitor (late calls use the latest time)."""
        if timestamp > self._now:
            self._now = float(timestamp)
        return self._now

    def _flush(self) -> MonitorOutput:
        out = MonitorOutput(tuple(self._out_transitions), tuple(self._out_events))
        self._out_transitions.clear()
        self._out_events.clear()
        return out

    def _pass(self, reason: str, **figures: Any) -> bool:
        self._guard = (reason, figures)
        return True

    def _record_transition(self, event: Any) -> None:
        reason, figures = self._guard
        transition = Transition(
            camera=self.camera,
            timestamp=event.kwargs["timestamp"],
            source=event.transition.source,
            dest=event.transition.dest,
            trigger=event.event.name,
            reason=reason,
            figures=figures,
        )
        log.info("%s t=%.2f %s -> %s [%s] %s %s", self.camera, transition.timestamp, transition.source,
                 transition.dest, transition.trigger, reason, figures)
        self._out_transitions.append(transition)
        for ev in self._alerts.values():
            ev.add_reason(reason)

    # ==================================================================================
    # Evidence
    # ==================================================================================

    def _triggers_in(self, flags: frozenset[str]) -> frozenset[str]:
        """The canonical trigger names ``flags`` speak of, matched exactly as the escalation
        policy matches them (synonyms, negation: ``person_fall`` → fall, ``no_fire`` → nothing)."""
        if not flags:
            return frozenset()
        hit = self._trigger_cache.get(flags)
        if hit is None:
            if len(self._trigger_cache) >= _TRIGGER_CACHE_SIZE:
                self._trigger_cache.clear()
            hit = match_safety(flags, (), self.triggers)
            self._trigger_cache[flags] = hit
        return hit

    def _live_now(self, stats: WindowStats) -> frozenset[str]:
        """Safety triggers of the newest report that no dismissal covers (a gate-skipped frame
        shows that same report)."""
        hits = self._evidence_triggers(stats)
        if hits and self._coverages and stats.evidence is not None:
            hits = uncovered(hits, stats.evidence.timestamp, stats.evidence.confidence, self._coverages)
        return hits

    def _activity_kind(self, stats: WindowStats) -> str | None:
        evidence = stats.evidence
        if evidence is not None and evidence.activity is not None and stats.confidence_last >= self.cfg.activity_min_confidence:
            return evidence.activity
        if self._live_now(stats):
            return "motion"
        return None

    def _evidence_triggers(self, stats: WindowStats) -> frozenset[str]:
        """The newest frame's safety triggers, as the window read them (flags and observations)."""
        return stats.evidence.triggers & self.triggers if stats.evidence is not None else frozenset()

    def _persisting(self, stats: WindowStats | None, t: float) -> dict[str, int]:
        """Triggers in ≥ k of the last n reports (the shared rule, `evidence.persisting`) → their count."""
        if stats is None:
            return {}
        rule = self.thresholds.current()
        recent = stats.recent_evidence[-rule.persistence_n:]
        if self._carried and recent:
            # Each gate-skipped frame since shows the same scene: one more report with that evidence.
            recent = (recent + (recent[-1],) * min(self._carried, rule.persistence_n))[-rule.persistence_n:]
        # Frames a dismissal covered are answered; later (or stronger) frames count again.
        recent = uncover(recent, self._coverages)
        found = {f: int(round(c)) for f, c in persisting(recent, rule).items() if f in self.triggers}
        # An instant the gate backs (a cut, a covered lens) alerts on its one frame.
        for f in gate_corroborated(recent[-1]) - found.keys() if recent else ():
            found[f] = rule.k_for(f)
        return dict(sorted(found.items()))

    # ==================================================================================
    # Guards (conditions): each passing guard names its reason and figures
    # ==================================================================================

    def _g_activity(self, event: Any) -> bool:
        stats: WindowStats | None = event.kwargs.get("stats")
        if stats is None:
            return False
        kind = self._activity_kind(stats)
        if kind is None:
            return False
        flags = sorted(self._live_now(stats))
        if flags:
            reason = f"safety flag {', '.join(flags)} in view"
        else:
            reason = (f"activity ({kind}) observed at confidence {stats.confidence_last:.2f} "
                      f">= {self.cfg.activity_min_confidence:.2f}")
        return self._pass(reason, activity=kind, observations=list(stats.observations),
                          confidence=round(stats.confidence_last, 4), flags=flags)

    def _g_safety_flag(self, event: Any) -> bool:
        stats: WindowStats | None = event.kwargs.get("stats")
        if stats is None:
            return False
        t = event.kwargs["timestamp"]
        flags = sorted(self._live_now(stats))
        if not flags:
            return False
        return self._pass(
            f"safety flag {', '.join(flags)} in the newest report",
            flags=flags, streak={f: stats.flag_streak.get(f, 0) for f in flags},
            confidence=round(stats.confidence_last, 4),
        )

    def _g_persistence(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        stats: WindowStats | None = event.kwargs.get("stats")
        persisting = self._persisting(stats, t)
        if not persisting:
            return False
        rule = self.thresholds.current()
        k, n = rule.persistence_k, rule.persistence_n
        detail = ", ".join(f"{f} in {c} of last {n}" for f, c in persisting.items())
        return self._pass(f"safety flag persisted ({detail}; need {k} of {n})",
                          persisting=persisting, k=k, n=n,
                          recent_triggers=[sorted(e.triggers) for e in (stats.recent_evidence[-n:] if stats else ())])

    def _g_flags_quiet(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        quiet = t - self._last_flag_ts
        if quiet < self.cfg.quiet_after_s:
            return False
        return self._pass(f"no safety flag for {quiet:.1f}s >= quiet_after_s {self.cfg.quiet_after_s:g}s",
                          quiet_s=round(quiet, 3) if math.isfinite(quiet) else None,
                          quiet_after_s=self.cfg.quiet_after_s)

    def _g_activity_quiet(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        quiet = t - self._last_activity_ts
        if quiet < self.cfg.quiet_after_s or t - self._last_flag_ts < self.cfg.quiet_after_s:
            return False
        return self._pass(f"no activity for {quiet:.1f}s >= quiet_after_s {self.cfg.quiet_after_s:g}s",
                          quiet_s=round(quiet, 3) if math.isfinite(quiet) else None,
                          quiet_after_s=self.cfg.quiet_after_s)

    def _cooldown_over(self, t: float) -> float | None:
        waited = t - self._cooldown_since
        if waited < self.cfg.cooldown_s:
            return None
        return waited

    def _g_cooldown_idle(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        waited = self._cooldown_over(t)
        if waited is None or t - self._last_activity_ts < self.cfg.quiet_after_s:
            return False
        return self._pass(f"cooldown of {self.cfg.cooldown_s:g}s over without flags and no activity",
                          cooldown_s=self.cfg.cooldown_s, waited_s=round(waited, 3))

    def _g_cooldown_active(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        waited = self._cooldown_over(t)
        if waited is None:
            return False
        since = t - self._last_activity_ts
        return self._pass(f"cooldown of {self.cfg.cooldown_s:g}s over without flags; activity continues",
                          cooldown_s=self.cfg.cooldown_s, waited_s=round(waited, 3),
                          activity_seen_s_ago=round(since, 3))

    def _g_escalated(self, event: Any) -> bool:
        p: _Pending = event.kwargs["pending"]
        return self._pass(_escalation_reason(p),
                          escalation_id=p.escalation_id, incident_id=p.incident_id,
                          flags=sorted(p.flags), safety=p.safety)

    def _timeout_waited(self, t: float) -> float | None:
        waited = t - self._escalated_since
        return waited if waited >= self.verdict_timeout_s else None

    def _g_timeout_alert(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        waited = self._timeout_waited(t)
        if waited is None:
            return False
        persisting = self._persisting(event.kwargs.get("stats"), t)
        if not persisting and not self._alerts:
            return False
        what = (f"safety flag persists ({', '.join(persisting)})" if persisting
                else f"alert pending review ({', '.join(sorted(self._alerts))})")
        return self._pass(f"no verdict after {waited:.1f}s >= {self.verdict_timeout_s:g}s and {what}: alert unverified",
                          waited_s=round(waited, 3), persisting=persisting, open_alerts=sorted(self._alerts))

    def _g_timeout_calm(self, event: Any) -> bool:
        t = event.kwargs["timestamp"]
        waited = self._timeout_waited(t)
        if waited is None:
            return False
        return self._pass(f"no verdict after {waited:.1f}s >= {self.verdict_timeout_s:g}s and no safety flag persists",
                          waited_s=round(waited, 3), pending=sorted(self._pending))

    def _g_verdict_alert(self, event: Any) -> bool:
        ctx = event.kwargs["context"]
        verdict: Verdict = ctx["verdict"]
        types = ctx["alert_types"]
        if not types and not self._alerts:
            return False
        kind = verdict.kind.value
        return self._pass(ctx["why"],
                          escalation_id=verdict.escalation_id, verdict=kind,
                          teacher_flags=sorted(ctx["teacher_flags"]), confidence=round(verdict.confidence, 4),
                          backend=verdict.backend, model=verdict.model)

    def _g_verdict_calm(self, event: Any) -> bool:
        ctx = event.kwargs["context"]
        verdict: Verdict = ctx["verdict"]
        if ctx["alert_types"] or self._alerts:
            return False
        return self._pass(f"teacher {verdict.kind.value} but no safety flag is involved",
                          escalation_id=verdict.escalation_id, verdict=verdict.kind.value,
                          teacher_flags=sorted(ctx["teacher_flags"]))

    def _g_dismissed(self, event: Any) -> bool:
        ctx = event.kwargs["context"]
        verdict: Verdict = ctx["verdict"]
        if self._pending and self.state == "escalated":
            return False  # other escalations of this camera still await their verdict
        if self._alerts:
            return False  # an alert the teacher did not review goes on
        return self._pass(ctx["why"],
                          escalation_id=verdict.escalation_id, confidence=round(verdict.confidence, 4),
                          backend=verdict.backend, model=verdict.model)

    def _g_dismissed_other_alert(self, event: Any) -> bool:
        ctx = event.kwargs["context"]
        verdict: Verdict = ctx["verdict"]
        if self.state != "escalated" or self._pending or not self._alerts:
            return False
        return self._pass(f"teacher dismissed the escalation; alert {', '.join(sorted(self._alerts))} goes on",
                          escalation_id=verdict.escalation_id, open_alerts=sorted(self._alerts))

    # ==================================================================================
    # After-callbacks (state entered)
    # ==================================================================================

    def _after_activity(self, event: Any) -> None:
        stats: WindowStats | None = event.kwargs.get("stats")
        if stats is not None and self._activity is None:
            self._start_activity(stats, event.kwargs["timestamp"], self._guard[0])

    def _after_suspicion(self, event: Any) -> None:
        if self.open_incident_id is None:
            self._incident_counter += 1
            self.open_incident_id = f"{self.camera}-incident-{self._incident_counter:05d}"

    def _after_persist(self, event: Any) -> None:
        t = event.kwargs["timestamp"]
        stats: WindowStats | None = event.kwargs.get("stats")
        for kind in self._persisting(stats, t):
            if kind not in self._alerts:
                self._start_alert(kind, t, self._guard[0])

    def _after_calm(self, event: Any) -> None:
        self.open_incident_id = None

    def _after_idle(self, event: Any) -> None:
        self.open_incident_id = None
        if self._activity is not None:
            self._activity.add_reason(self._guard[0])
            self._out_events.append(self._activity.line("end", self.state, self.camera, end=event.kwargs["timestamp"]))
            self._activity = None

    def _after_end_alert(self, event: Any) -> None:
        t = event.kwargs["timestamp"]
        self._cooldown_since = t
        for kind in list(self._alerts):
            self._end_alert_event(kind, t, self._guard[0])

    def _after_escalated(self, event: Any) -> None:
        self._escalated_since = event.kwargs["timestamp"]

    def _after_timeout_alert(self, event: Any) -> None:
        t = event.kwargs["timestamp"]
        why = self._guard[0]
        for ev in self._alerts.values():
            if ev.review == Review.PENDING_REVIEW:
                ev.review = Review.UNVERIFIED
                ev.explanation = "no verdict from the teacher in time"
                self._out_events.append(ev.line("update", self.state, self.camera))
        for kind in self._persisting(event.kwargs.get("stats"), t):
            if kind not in self._alerts:
                ev = self._start_alert(kind, t, why, review=Review.UNVERIFIED,
                                       explanation="no verdict from the teacher in time")
                # A late verdict on the waiting escalations still reaches this event.
                ev.escalation_ids.update(self._pending)
        self._last_flag_ts = max(self._last_flag_ts, t)

    def _after_timeout_calm(self, event: Any) -> None:
        self.open_incident_id = None

    # ==================================================================================
    # Verdicts
    # ==================================================================================

    def _verdict_confirmed(self, t: float, ctx: dict[str, Any]) -> None:
        verdict: Verdict = ctx["verdict"]
        if self.state != "alert":
            self.trigger("teacher_confirmed", timestamp=t, stats=self._stats, context=ctx)
        why = ctx["why"]
        for ev in ctx["linked"]:
            ev.flags |= ctx["teacher_flags"]
            ev.explanation = verdict.explanation
            self._mark_review(ev, verdict.escalation_id, Review.CONFIRMED, why, force=True)
        if self.state == "alert":
            for kind in ctx["alert_types"]:
                if kind not in self._alerts:
                    ev = self._start_alert(kind, t, why, review=Review.CONFIRMED, explanation=verdict.explanation,
                                           confidence=verdict.confidence)
                    ev.flags |= ctx["teacher_flags"]
                    ev.escalation_ids.add(verdict.escalation_id)
            # A confirmed alert lasts at least quiet_after_s from the verdict.
            self._last_flag_ts = max(self._last_flag_ts, t)

    def _verdict_dismissed(self, t: float, ctx: dict[str, Any], escalated_flags: frozenset[str],
                           coverage: Coverage | None) -> None:
        verdict: Verdict = ctx["verdict"]
        # Canonical trigger names, so a dismissed "person_fall" covers fall.
        if coverage is None:
            coverage = Coverage(flags=self._triggers_in(frozenset(escalated_flags)), until=t, strength=1.0,
                                escalation_id=verdict.escalation_id)
        if coverage.flags:
            self._coverages += (coverage,)
            log.info("%s: dismissal covers %s up to t=%.2f (confidence <= %.2f)", self.camera, sorted(coverage.flags),
                     coverage.until, coverage.strength)
        why = ctx["why"]
        for ev in ctx["linked"]:
            ev.explanation = verdict.explanation
            self._mark_review(ev, verdict.escalation_id, review_after_dismissal(ev.review), why, force=True)
            self._end_alert_event(ev.type, t, why)
            # A dismissed alert was never reported as real: the teacher naming its type later is new, not a repeat.
            self._alert_ended_at.pop(ev.type, None)
        if self.state in ("escalated", "alert"):
            self.trigger("teacher_dismissed", timestamp=t, stats=self._stats, context=ctx)

    def _verdict_unverified(self, t: float, ctx: dict[str, Any]) -> None:
        verdict: Verdict = ctx["verdict"]
        if self.state == "escalated":
            self.trigger("teacher_unverified", timestamp=t, stats=self._stats, context=ctx)
        why = ctx["why"]
        for ev in ctx["linked"]:
            if ev.review == Review.PENDING_REVIEW:
                ev.explanation = verdict.explanation
                self._mark_review(ev, verdict.escalation_id, Review.UNVERIFIED, why, force=True)
        if self.state == "alert":
            for kind in ctx["alert_types"]:
                if kind not in self._alerts:
                    ev = self._start_alert(kind, t, why, review=Review.UNVERIFIED, explanation=verdict.explanation)
                    ev.escalation_ids.add(verdict.escalation_id)
            self._last_flag_ts = max(self._last_flag_ts, t)

    def _after_verdict_calm(self, event: Any) -> None:
        self.open_incident_id = None

    # ==================================================================================
    # Events
    # ==================================================================================

    def _next_id(self, kind: str) -> str:
        self._event_counter += 1
        return f"{self.camera}-{self._event_counter:05d}-{kind}"

    def _start_activity(self, stats: WindowStats, t: float, reason: str) -> None:
        kind = self._activity_kind(stats) or "motion"
        ev = _OpenEvent(id=self._next_id(kind), type=kind, severity="activity", start=float(stats.timestamp),
                        flags=set(stats.active_flags), peak_confidence=stats.confidence_last, last_seen=t)
        ev.add_reason(reason)
        self._activity = ev
        self._out_events.append(ev.line("new", self.state, self.camera))

    def _start_alert(self, kind: str, t: float, reason: str, *, review: ReviewStatus = Review.NOT_REVIEWED,
                     explanation: str = "", confidence: float | None = None) -> _OpenEvent:
        stats = self._stats
        in_view = stats is not None and kind in self._evidence_triggers(stats)
        flags = {kind} | (set(stats.active_flags) if stats is not None and in_view else set())
        peak = confidence if confidence is not None else (stats.confidence_last if stats is not None and in_view else 0.0)
        ev = _OpenEvent(id=self._next_id(kind), type=kind, severity="alert", start=t, flags=flags,
                        peak_confidence=peak, review=review, explanation=explanation, last_seen=t)
        if self.open_incident_id is None:
            self._incident_counter += 1
            self.open_incident_id = f"{self.camera}-incident-{self._incident_counter:05d}"
        ev.add_reason(reason)
        self._alerts[kind] = ev
        self._out_events.append(ev.line("new", self.state, self.camera))
        return ev

    def _end_alert_event(self, kind: str, t: float, reason: str) -> None:
        ev = self._alerts.pop(kind, None)
        if ev is None:
            return
        self._alert_ended_at[kind] = t
        ev.add_reason(reason)
        self._out_events.append(ev.line("end", self.state, self.camera, end=t))

    def _end_quiet_activity(self, t: float) -> None:
        """End the activity event after quiet_after_s without activity, whatever the alert cycle
        is doing (in observing the go_quiet transition does this, with the camera going idle)."""
        ev = self._activity
        if ev is None or self.state in ("idle", "observing"):
            return
        quiet = t - self._last_activity_ts
        if quiet >= self.cfg.quiet_after_s:
            ev.add_reason(f"no activity for {quiet:.1f}s >= quiet_after_s {self.cfg.quiet_after_s:g}s")
            self._out_events.append(ev.line("end", self.state, self.camera, end=t))
            self._activity = None

    def _mark_review(self, ev: _OpenEvent, escalation_id: str, review: ReviewStatus, reason: str,
                     *, force: bool = False) -> None:
        ev.escalation_ids.add(escalation_id)
        if ev.review == review and not force:
            return
        ev.review = review
        ev.add_reason(reason)
        self._out_events.append(ev.line("update", self.state, self.camera))

    def _refresh_events(self, t: float, stats: WindowStats, flags: frozenset[str], activity: str | None) -> None:
        """Fold the newest report into the open events (peak confidence, flags, type upgrade)."""
        conf = stats.confidence_last
        if activity is not None:
            if self._activity is None and self.state != "idle":
                self._start_activity(stats, t, f"activity ({activity}) while {self.state}")
            elif self._activity is not None:
                ev = self._activity
                ev.peak_confidence = max(ev.peak_confidence, conf)
                ev.last_seen = t
                grown = not (stats.active_flags <= ev.flags)
                ev.flags |= stats.active_flags
                if ev.type == "motion" and activity != "motion":
                    ev.type = activity
                    ev.add_reason(f"activity is a {activity}")
                    self._out_events.append(ev.line("update", self.state, self.camera))
                elif grown:
                    self._out_events.append(ev.line("update", self.state, self.camera))
        for kind, ev in list(self._alerts.items()):
            if kind in flags:
                ev.peak_confidence = max(ev.peak_confidence, conf)
                ev.last_seen = t
                if not (stats.active_flags <= ev.flags):
                    ev.flags |= stats.active_flags
                    self._out_events.append(ev.line("update", self.state, self.camera))
            elif self.state == "alert" and len(self._alerts) > 1 and t - ev.last_seen >= self.cfg.quiet_after_s:
                self._end_alert_event(kind, t, f"{kind} not seen for {t - ev.last_seen:.1f}s")
        if self.state == "alert":
            # Another flag type persisting during an alert gets its own event.  (While
            # escalated, the verdict decides which alerts there are.)
            for kind in self._persisting(stats, t):
                if kind not in self._alerts:
                    self._start_alert(kind, t, f"{kind} persisted during the alert")


def _t(trigger: str, source: str | list[str], dest: str, conditions: str, after: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"trigger": trigger, "source": source, "dest": dest, "conditions": conditions}
    if after:
        spec["after"] = after
    return spec


_TRANSITIONS: list[dict[str, Any]] = [
    _t("notice_activity", "idle", "observing", "_g_activity", "_after_activity"),
    _t("raise_suspicion", ["observing", "cooldown"], "suspicious", "_g_safety_flag", "_after_suspicion"),
    _t("persist_alert", "suspicious", "alert", "_g_persistence", "_after_persist"),
    _t("calm_down", "suspicious", "observing", "_g_flags_quiet", "_after_calm"),
    _t("go_quiet", "observing", "idle", "_g_activity_quiet", "_after_idle"),
    _t("end_alert", "alert", "cooldown", "_g_flags_quiet", "_after_end_alert"),
    _t("finish_cooldown", "cooldown", "idle", "_g_cooldown_idle", "_after_idle"),
    _t("finish_cooldown", "cooldown", "observing", "_g_cooldown_active", "_after_calm"),
    _t("send_to_teacher", ["idle", "observing", "suspicious", "alert", "cooldown"], "escalated", "_g_escalated",
       "_after_escalated"),
    _t("verdict_timeout", "escalated", "alert", "_g_timeout_alert", "_after_timeout_alert"),
    _t("verdict_timeout", "escalated", "observing", "_g_timeout_calm", "_after_timeout_calm"),
    _t("teacher_confirmed", ["escalated", "idle", "observing", "suspicious", "cooldown"], "alert", "_g_verdict_alert"),
    _t("teacher_confirmed", "escalated", "observing", "_g_verdict_calm", "_after_verdict_calm"),
    _t("teacher_dismissed", ["escalated", "alert"], "observing", "_g_dismissed", "_after_verdict_calm"),
    _t("teacher_dismissed", "escalated", "alert", "_g_dismissed_other_alert"),
    _t("teacher_unverified", "escalated", "alert", "_g_verdict_alert"),
    _t("teacher_unverified", "escalated", "observing", "_g_verdict_calm", "_after_verdict_calm"),
]

__all__ = ["CameraMonitor", "MonitorOutput", "STATES", "VERDICT_TIMEOUT_S"]
