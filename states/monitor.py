"""The per-camera state machine: turns window aggregates and teacher verdicts into states and events.

Time is *source* time only: every call
carries the timestamp of the frame it is about (``update`` the newest report's, ``tick`` a
gate-skipped frame's), so a replay behaves exactly like the live camera and no wall-clock timer
exists.

States::

    idle ──activity──▶ observing ──safety flag──▶ suspicious ──k of n──▶ alert ──quiet──▶ cooldown ──▶ idle
      ▲                   │  ▲                        │                    ▲                 │   (or observing
      └────── quiet ──────┘  └──────── quiet ─────────┘                    │                 │    if activity
                                                                           │                 └──flag──▶ suspicious
    any state ──runner escalates──▶ escalated ──verdict──▶ alert / observing

The machine is declared once, in `states.table`: `STATE_TABLE` (each state and its tags) and
`TRANSITIONS` (each row: its name, the calls that fire it, sources, destination, one named
condition and what happens after); the conditions (``_c_*``) and after-callbacks (``_a_*``) are
the methods below.  Each public call fires its trigger directly — ``update`` fires ``analysed``,
``tick`` fires ``skipped``, ``escalate`` fires ``send_to_teacher``, a verdict fires
``teacher_confirmed`` / ``teacher_dismissed`` / ``teacher_unverified`` — and the machine picks
the first row of that trigger whose source is the current state and whose condition passes.  A
frame may carry the machine several steps (idle → observing → suspicious → alert when k = 1): it
is offered again to each state it leads to.  A condition returns a `Passed` record (its reason
and figures) or None; the record travels with the event data to the `Transition` and to the
after-callbacks.  What each move writes to the event log is `pipeline.incidents.events`; what the
conditions read of the window (triggers in view less the teacher's dismissals, activity, k-of-n
persistence) is `states.evidence_view`.

A verdict resolves its own escalation and every other escalation of the same incident still
waiting (the teacher queue folds same-incident escalations into one request); a later verdict on
one of them still updates the alert events it concerns.

Gate-skipped frames (``tick``) show the same scene as the last analysed frame, so the last
report's activity and flags are carried forward over them: a hazard still in view never "goes
quiet" because nothing moved, and each skipped frame counts as one more report with the last
report's evidence in the k-of-n persistence.  Quiet periods are counted from the last analysed
report (or skipped frame) that showed activity/flags.

Event ``start`` is the source time at which the monitor opened the event, ``end`` when it ended
it; ids are ``{camera}-{start ms}-{random}`` (`pipeline.incidents.events.EventIds`).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable
from dataclasses import replace

from pipeline.config.escalation import EscalationConfig
from pipeline.config.states import StatesConfig
from pipeline.incidents.escalation import FixedThresholds, Onsets, Thresholds, ThresholdSource, track_onsets
from pipeline.incidents.activity_review import ActivityLook, review_activity
from pipeline.incidents.end_of_input import cut_short
from pipeline.incidents.events import ALONGSIDE_KINDS, EventBook, EventIds, OpenEvent
from pipeline.incidents.evidence import activity_kinds
from pipeline.incidents.verdicts import Coverage, prune, uncovered
from pipeline.records import (ALWAYS_TRIGGERS, ReviewStatus, Transition, Verdict, VerdictKind, WindowStats,
                              normalise_flag)
from states.evidence_view import EvidenceView
from states.monitor_records import MonitorOutput, PendingEscalation, VerdictContext
from states.table import STATES, EventData, Passed, build_machine, tags_of

log = logging.getLogger("edgewatch.states")

Review = ReviewStatus

#: Without a verdict for this long (source seconds) the escalated state resolves on its own.
VERDICT_TIMEOUT_S = 60.0

#: Escalations remembered for matching late verdicts; the oldest are forgotten beyond this.
MAX_PENDING = 256


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ======================================================================================
# The monitor
# ======================================================================================


class CameraMonitor(EvidenceView):
    """One camera's state machine.  Not thread-safe: the runner drives it from one thread.

    ``state`` (a str, one of `STATES`) is maintained by ``transitions`` on this object.
    ``rng`` makes the random part of event ids (a seeded `random.Random` for tests).
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
        rng: random.Random | None = None,
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
        self.book = EventBook(camera, lambda: self.state, EventIds(camera, rng))
        """The open events and the lines they write (`pipeline.incidents.events`)."""

        self._onsets = Onsets()
        self._now = -math.inf
        self._stats: WindowStats | None = None
        self._last_activity_ts = -math.inf
        self._last_flag_ts = -math.inf
        self._cooldown_since = -math.inf
        self._escalated_since = -math.inf
        self._pending: dict[str, PendingEscalation] = {}
        self._coverages: tuple[Coverage, ...] = ()
        """What the teacher's dismissals covered (`pipeline.incidents.verdicts`)."""
        self._carried = 0
        """Gate-skipped frames since the last analysed one that carried its safety flags forward."""
        self._trigger_cache: dict[frozenset[str], frozenset[str]] = {}
        self._incident_counter = 0
        self.open_incident_id: str | None = None
        """Incident id from leaving idle/observing for suspicious (or escalated) until back in idle/observing."""
        self._out_transitions: list[Transition] = []

        self._machine = build_machine(self)

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
        if stats.evidence is not None and stats.evidence.failed and not flags:
            self._hold(t)
        self._offer("analysed", t)
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
        stats = self._stats
        if stats is not None:
            # Same scene as the last analysed frame: carry its activity and flags forward.
            if self._live_now(stats):
                if advanced:
                    self._carried += 1
                self._last_flag_ts = t
                self._last_activity_ts = t
            elif self._activity_kind(stats) is not None:
                self._last_activity_ts = t
            elif stats.evidence is not None and stats.evidence.failed:
                self._hold(t)
        self._offer("skipped", t)
        self._end_quiet_activity(t)
        return self._flush()

    def escalate(self, escalation_id: str, incident_id: str, reason: str, flags: frozenset[str], timestamp: float,
                 safety: bool) -> MonitorOutput:
        """The runner sent a sequence to the teacher; await the verdict in ``escalated``.

        With ``safety`` the alert event is raised now, review ``pending_review``.
        """
        if not _finite(timestamp):
            log.warning("%s: escalation %s with non-finite timestamp ignored", self.camera, escalation_id)
            return MonitorOutput()
        t = self._advance(timestamp)
        norm = frozenset(f for f in (normalise_flag(x) for x in flags) if f)
        pending = PendingEscalation(escalation_id, incident_id, reason, norm, bool(safety))
        self._pending[escalation_id] = pending
        while len(self._pending) > MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        if not self.trigger("send_to_teacher", timestamp=t, pending=pending):
            log.info("%s: further escalation %s while awaiting a verdict (%s)", self.camera, escalation_id, reason)
        if self.open_incident_id is None:
            self.open_incident_id = incident_id

        canonical = self._triggers_in(norm)
        for kind in sorted(canonical & self.book.alerts.keys()):
            # An escalation puts up for review the alerts of the types it asks about, no others (a
            # question about fire is no review of a fall); a confirmed alert stays confirmed.
            ev = self.book.alerts[kind]
            if ev.review != Review.CONFIRMED:
                self.book.review(ev, Review.PENDING_REVIEW, pending.why, escalation_id=escalation_id)
        if safety:
            for kind in sorted(canonical) or sorted(norm) or ["safety"]:
                if kind not in self.book.alerts:
                    self._open_alert(kind, t, pending.why, review=Review.PENDING_REVIEW, escalation_ids=(escalation_id,))
        return self._flush()

    def apply_verdict(self, verdict: Verdict, timestamp: float, coverage: Coverage | None = None,
                      seen_until: float | None = None) -> MonitorOutput:
        """Apply the teacher's verdict on an escalation (confirmed / dismissed / unverified).

        A dismissal covers ``coverage`` (the frames the teacher saw, `verdicts.coverage_of`);
        without it, every frame up to the verdict's arrival at any confidence.  ``seen_until`` is
        the last frame the teacher was shown (`verdicts.seen_until`): a type it confirms by name was
        seen then, so its event lasts at least that long even when the student stopped flagging it."""
        t = self._time(timestamp)
        resolved = tuple(p for p in self._pending.values()
                         if p.escalation_id == verdict.escalation_id
                         or (verdict.incident_id and p.incident_id == verdict.incident_id))
        for p in resolved:
            self._pending.pop(p.escalation_id, None)
        ids = frozenset({p.escalation_id for p in resolved} | {verdict.escalation_id})
        if not resolved and not self.book.linked(ids):
            log.info("%s: verdict %s for unknown escalation %s ignored", self.camera, verdict.kind.value, verdict.escalation_id)
            return self._flush()
        teacher_flags = frozenset(f for f in (normalise_flag(x) for x in verdict.safety_flags) if f)
        escalated_flags = frozenset().union(*(p.flags for p in resolved))
        escalated_types = self._triggers_in(escalated_flags)
        # A type only the teacher names, whose alert this camera ended less than cooldown_s ago,
        # is that same incident seen again in the sequence's older frames: already reported.
        repeated = {k for k in self._triggers_in(teacher_flags) - escalated_types
                    if t - self.book.reported_until.get(k, -math.inf) < self.cfg.cooldown_s}
        types = tuple(sorted((escalated_types | self._triggers_in(teacher_flags)) - repeated))
        why = (f"teacher {verdict.kind.value} {verdict.escalation_id} "
               f"({', '.join(types) or 'no safety flag'}; {verdict.backend} {verdict.model})")
        ctx = VerdictContext(verdict, ids, teacher_flags, types, why, seen_until)
        if verdict.kind == VerdictKind.DISMISSED:
            self._dismiss(t, ctx, coverage or Coverage(flags=escalated_types, until=t, strength=1.0,
                                                       escalation_id=verdict.escalation_id))
        elif verdict.kind == VerdictKind.CONFIRMED and coverage is not None:
            ctx = self._dismiss_unnamed(t, ctx, coverage)
        self.trigger(f"teacher_{verdict.kind.value}", timestamp=t, context=ctx)
        return self._flush()

    def review_activity(self, looks: Iterable[ActivityLook], timestamp: float, why: str) -> MonitorOutput:
        """What a teacher's look says about the open person/vehicle events (`pipeline.incidents.activity_review`)."""
        review_activity(self.book, looks, self._time(timestamp), why)
        return self._flush()

    def close(self, timestamp: float) -> MonitorOutput:
        """End of input: a safety flag the input cut short is decided on what was seen; then end every open event."""
        t = self._time(timestamp)
        for kind, onset, seen in cut_short(self._stats, self._live_now(self._stats) if self._stats else frozenset(),
                                           self.book.alerts, self.thresholds.current().persistence_n, t):
            self._open_alert(kind, onset, f"{kind} in the last {seen} report(s) when the input ended, before "
                                          f"persistence could be judged: decided on the evidence seen")
        self.book.end_all(t, "input ended")
        return self._flush()

    def unreviewed_alerts(self) -> frozenset[str]:
        """Types of the open alerts no teacher has seen yet (the policy asks about them)."""
        return frozenset(kind for kind, ev in self.book.alerts.items() if ev.review == Review.NOT_REVIEWED)

    def is_covered(self, flags: Iterable[str], timestamp: float, confidence: float) -> bool:
        """True when a teacher's dismissal speaks for every safety trigger ``flags`` name on a
        frame at ``timestamp`` with ``confidence`` (no trigger named: False)."""
        canonical = self._triggers_in(frozenset(f for f in (normalise_flag(x) for x in flags) if f))
        return bool(canonical) and not uncovered(canonical, timestamp, confidence, self._coverages)

    # ==================================================================================
    # Driving the machine
    # ==================================================================================

    def _offer(self, trigger: str, t: float) -> None:
        """Offer a frame to the machine, and again to each state it leads to (a few steps at most)."""
        for _ in STATES:
            if not self.trigger(trigger, timestamp=t):
                return

    def _is(self, tag: str) -> bool:
        return tag in tags_of(self._machine, self.state)

    def _hold(self, t: float) -> None:
        """A failed analysis (model_error, nothing observed) is no evidence that things went quiet:
        it holds the timers the current state runs on instead of letting them expire."""
        if self._is("watching"):
            self._last_activity_ts = t
        if self._is("flagging"):
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
        out = MonitorOutput(tuple(self._out_transitions), self.book.take())
        self._out_transitions.clear()
        return out

    def _record_transition(self, data: EventData) -> None:
        if data.transition.dest is None:
            return  # a verdict handled in place (alert stays alert): no state change to record
        passed: Passed = data.kwargs["passed"]
        transition = Transition(camera=self.camera, timestamp=data.kwargs["timestamp"], source=data.transition.source,
                                dest=data.transition.dest, trigger=data.kwargs["row"], reason=passed.reason,
                                figures=passed.figures)
        log.info("%s t=%.2f %s -> %s [%s] %s %s", self.camera, transition.timestamp, transition.source,
                 transition.dest, transition.trigger, passed.reason, passed.figures)
        self._out_transitions.append(transition)
        self.book.note(passed.reason)

    # ==================================================================================
    # Conditions: each returns why it holds (`Passed`) or None
    # ==================================================================================

    def _c_activity_seen(self, data: EventData) -> Passed | None:
        stats = self._stats
        kind = self._activity_kind(stats) if stats is not None else None
        if stats is None or kind is None:
            return None
        flags = sorted(self._live_now(stats))
        reason = (f"safety flag {', '.join(flags)} in view" if flags else
                  f"activity ({kind}) observed at confidence {stats.confidence_last:.2f} >= {self.cfg.activity_min_confidence:.2f}")
        return Passed(reason, {"activity": kind, "observations": list(stats.observations),
                               "confidence": round(stats.confidence_last, 4), "flags": flags})

    def _c_safety_flag_seen(self, data: EventData) -> Passed | None:
        stats = self._stats
        flags = sorted(self._live_now(stats)) if stats is not None else []
        if stats is None or not flags:
            return None
        return Passed(f"safety flag {', '.join(flags)} in the newest report",
                      {"flags": flags, "streak": {f: stats.flag_streak.get(f, 0) for f in flags},
                       "confidence": round(stats.confidence_last, 4)})

    def _c_safety_persists(self, data: EventData) -> Passed | None:
        found = self._persisting(self._stats)
        if not found:
            return None
        rule = self.thresholds.current()
        k, n = rule.persistence_k, rule.persistence_n
        detail = ", ".join(f"{f} in {c} of last {n}" for f, c in found.items())
        recent = self._stats.recent_evidence[-n:] if self._stats is not None else ()
        return Passed(f"safety flag persisted ({detail}; need {k} of {n})",
                      {"persisting": found, "k": k, "n": n, "recent_triggers": [sorted(e.triggers) for e in recent]})

    def _c_flags_quiet(self, data: EventData) -> Passed | None:
        quiet = data.kwargs["timestamp"] - self._last_flag_ts
        if quiet < self.cfg.quiet_after_s:
            return None
        return Passed(f"no safety flag for {quiet:.1f}s >= quiet_after_s {self.cfg.quiet_after_s:g}s",
                      {"quiet_s": round(quiet, 3) if math.isfinite(quiet) else None, "quiet_after_s": self.cfg.quiet_after_s})

    def _c_activity_quiet(self, data: EventData) -> Passed | None:
        t = data.kwargs["timestamp"]
        quiet = t - self._last_activity_ts
        if quiet < self.cfg.quiet_after_s or t - self._last_flag_ts < self.cfg.quiet_after_s:
            return None
        return Passed(f"no activity for {quiet:.1f}s >= quiet_after_s {self.cfg.quiet_after_s:g}s",
                      {"quiet_s": round(quiet, 3) if math.isfinite(quiet) else None, "quiet_after_s": self.cfg.quiet_after_s})

    def _c_cooldown_over_idle(self, data: EventData) -> Passed | None:
        t = data.kwargs["timestamp"]
        waited = t - self._cooldown_since
        if waited < self.cfg.cooldown_s or t - self._last_activity_ts < self.cfg.quiet_after_s:
            return None
        return Passed(f"cooldown of {self.cfg.cooldown_s:g}s over without flags and no activity",
                      {"cooldown_s": self.cfg.cooldown_s, "waited_s": round(waited, 3)})

    def _c_cooldown_over_active(self, data: EventData) -> Passed | None:
        t = data.kwargs["timestamp"]
        waited = t - self._cooldown_since
        if waited < self.cfg.cooldown_s:
            return None
        return Passed(f"cooldown of {self.cfg.cooldown_s:g}s over without flags; activity continues",
                      {"cooldown_s": self.cfg.cooldown_s, "waited_s": round(waited, 3),
                       "activity_seen_s_ago": round(t - self._last_activity_ts, 3)})

    def _c_sent(self, data: EventData) -> Passed:
        p: PendingEscalation = data.kwargs["pending"]
        return Passed(p.why, {"escalation_id": p.escalation_id, "incident_id": p.incident_id,
                              "flags": sorted(p.flags), "safety": p.safety})

    def _c_timed_out_alert(self, data: EventData) -> Passed | None:
        waited = data.kwargs["timestamp"] - self._escalated_since
        if waited < self.verdict_timeout_s:
            return None
        found = self._persisting(self._stats)
        if not found and not self.book.alerts:
            return None
        what = (f"safety flag persists ({', '.join(found)})" if found
                else f"alert pending review ({', '.join(sorted(self.book.alerts))})")
        return Passed(f"no verdict after {waited:.1f}s >= {self.verdict_timeout_s:g}s and {what}: alert unverified",
                      {"waited_s": round(waited, 3), "persisting": found, "open_alerts": sorted(self.book.alerts)})

    def _c_timed_out_calm(self, data: EventData) -> Passed | None:
        waited = data.kwargs["timestamp"] - self._escalated_since
        if waited < self.verdict_timeout_s:
            return None
        return Passed(f"no verdict after {waited:.1f}s >= {self.verdict_timeout_s:g}s and no safety flag persists",
                      {"waited_s": round(waited, 3), "pending": sorted(self._pending)})

    def _c_verdict_received(self, data: EventData) -> Passed:
        ctx: VerdictContext = data.kwargs["context"]
        v = ctx.verdict
        return Passed(ctx.why, {"escalation_id": v.escalation_id, "verdict": v.kind.value,
                                "teacher_flags": sorted(ctx.teacher_flags), "confidence": round(v.confidence, 4),
                                "backend": v.backend, "model": v.model})

    def _c_verdict_names_alert(self, data: EventData) -> Passed | None:
        ctx: VerdictContext = data.kwargs["context"]
        return self._c_verdict_received(data) if ctx.alert_types or self.book.alerts else None

    def _c_verdict_calm(self, data: EventData) -> Passed | None:
        ctx: VerdictContext = data.kwargs["context"]
        if ctx.alert_types or self.book.alerts:
            return None
        return Passed(f"teacher {ctx.verdict.kind.value} but no safety flag is involved",
                      {"escalation_id": ctx.verdict.escalation_id, "verdict": ctx.verdict.kind.value,
                       "teacher_flags": sorted(ctx.teacher_flags)})

    def _dismissed(self, data: EventData) -> Passed:
        ctx: VerdictContext = data.kwargs["context"]
        v = ctx.verdict
        return Passed(ctx.why, {"escalation_id": v.escalation_id, "confidence": round(v.confidence, 4),
                                "backend": v.backend, "model": v.model})

    def _c_all_dismissed(self, data: EventData) -> Passed | None:
        # Other escalations of this camera still await their verdict, or an alert goes on: stay.
        return self._dismissed(data) if not self._pending and not self.book.alerts else None

    def _c_no_alert_left(self, data: EventData) -> Passed | None:
        return self._dismissed(data) if not self.book.alerts else None

    def _c_alert_goes_on(self, data: EventData) -> Passed | None:
        if self._pending or not self.book.alerts:
            return None
        ctx: VerdictContext = data.kwargs["context"]
        return Passed(f"teacher dismissed the escalation; alert {', '.join(sorted(self.book.alerts))} goes on",
                      {"escalation_id": ctx.verdict.escalation_id, "open_alerts": sorted(self.book.alerts)})

    # ==================================================================================
    # After-callbacks: what a transition does once taken
    # ==================================================================================

    def _a_open_activity(self, data: EventData) -> None:
        stats = self._stats
        if stats is not None and self.book.activity is None:
            self._open_activity(stats, data.kwargs["timestamp"], data.kwargs["passed"].reason)

    def _a_open_incident(self, data: EventData) -> None:
        if self.open_incident_id is None:
            self._new_incident()

    def _a_open_persisting_alerts(self, data: EventData) -> None:
        t = data.kwargs["timestamp"]
        for kind in self._persisting(self._stats):
            if kind not in self.book.alerts:
                self._open_alert(kind, t, data.kwargs["passed"].reason)

    def _a_incident_over(self, data: EventData) -> None:
        self.open_incident_id = None

    def _a_went_idle(self, data: EventData) -> None:
        self.open_incident_id = None
        self.book.end_activity(data.kwargs["timestamp"], data.kwargs["passed"].reason)

    def _a_end_alerts(self, data: EventData) -> None:
        t = data.kwargs["timestamp"]
        self._cooldown_since = t
        for kind in list(self.book.alerts):
            self.book.end_alert(kind, t, data.kwargs["passed"].reason)

    def _a_await_verdict(self, data: EventData) -> None:
        self._escalated_since = data.kwargs["timestamp"]

    def _a_unverified_by_timeout(self, data: EventData) -> None:
        t = data.kwargs["timestamp"]
        why = data.kwargs["passed"].reason
        for ev in self.book.alerts.values():
            if ev.review == Review.PENDING_REVIEW:
                self.book.review(ev, Review.UNVERIFIED, why, explanation="no verdict from the teacher in time")
        for kind in self._persisting(self._stats):
            if kind not in self.book.alerts:
                # A late verdict on the waiting escalations still reaches this event.
                self._open_alert(kind, t, why, review=Review.UNVERIFIED, explanation="no verdict from the teacher in time",
                                 escalation_ids=self._pending)
        self._last_flag_ts = max(self._last_flag_ts, t)

    def _a_confirm_alerts(self, data: EventData) -> None:
        t = data.kwargs["timestamp"]
        ctx: VerdictContext = data.kwargs["context"]
        self._confirm(t, ctx, ctx.alert_types)
        # A confirmed alert lasts at least quiet_after_s from the verdict.
        self._last_flag_ts = max(self._last_flag_ts, t)

    def _confirm(self, t: float, ctx: VerdictContext, types: Iterable[str]) -> None:
        """The teacher confirms ``types`` (those it was asked about or named): their alerts, open or new."""
        v = ctx.verdict
        named = self._triggers_in(ctx.teacher_flags) if ctx.seen_until is not None else frozenset()
        for kind in types:
            ev = self.book.alerts.get(kind)
            if ev is None:
                ev = self._open_alert(kind, t, ctx.why, review=Review.CONFIRMED, explanation=v.explanation,
                                      confidence=v.confidence, escalation_ids=(v.escalation_id,))
            self.book.review(ev, Review.CONFIRMED, ctx.why, escalation_id=v.escalation_id, explanation=v.explanation,
                             flags=ctx.teacher_flags)
            if kind in named:  # the teacher saw it on frames up to seen_until
                ev.seen_by_teacher(ctx.seen_until)

    def _a_unverify_alerts(self, data: EventData) -> None:
        t = data.kwargs["timestamp"]
        ctx: VerdictContext = data.kwargs["context"]
        v = ctx.verdict
        for ev in self.book.linked(ctx.escalation_ids):
            if ev.review == Review.PENDING_REVIEW:
                self.book.review(ev, Review.UNVERIFIED, ctx.why, escalation_id=v.escalation_id, explanation=v.explanation)
        for kind in ctx.alert_types:
            if kind not in self.book.alerts:
                self._open_alert(kind, t, ctx.why, review=Review.UNVERIFIED, explanation=v.explanation,
                                 escalation_ids=(v.escalation_id,))
        self._last_flag_ts = max(self._last_flag_ts, t)

    # ==================================================================================
    # Dismissals
    # ==================================================================================

    def _dismiss(self, t: float, ctx: VerdictContext, coverage: Coverage) -> None:
        """A dismissal covers what the teacher saw; it ends the alerts it concerns unless their
        type was seen after that (a new question: the alert stands, still pending)."""
        if coverage.flags:
            self._coverages += (coverage,)
            log.info("%s: dismissal covers %s up to t=%.2f (confidence <= %.2f)", self.camera, sorted(coverage.flags),
                     coverage.until, coverage.strength)
        seen_since = self._seen_after_coverage()
        v = ctx.verdict
        for ev in self.book.linked(ctx.escalation_ids):
            if ev.type in seen_since:
                ev.escalation_ids.add(v.escalation_id)
                ev.add_reason(f"{ctx.why}: covers frames up to t={coverage.until:.2f}; {ev.type} seen since stands")
                continue
            self.book.review(ev, Review.DISMISSED, ctx.why, escalation_id=v.escalation_id, explanation=v.explanation)
            self.book.end_alert(ev.type, t, ctx.why)
        # A hazard the teacher names while dismissing what it was asked (a fall dismissed, fire
        # seen) is reported: verdict words may add an alert, never remove one.
        self._confirm(t, ctx, [k for k in ctx.alert_types if k not in coverage.flags])

    def _dismiss_unnamed(self, t: float, ctx: VerdictContext, coverage: Coverage) -> VerdictContext:
        """A confirmation that did not name some of the types it was asked about
        (`verdicts.unnamed_coverage`): their alerts end as by a dismissal of the frames the teacher
        saw (not one confirmed earlier, nor one seen since); the confirmation is of the rest."""
        self._coverages += (coverage,)
        seen_since = self._seen_after_coverage()
        v = ctx.verdict
        for ev in self.book.linked(ctx.escalation_ids):
            if ev.type in coverage.flags and ev.type not in seen_since and ev.review != Review.CONFIRMED:
                self.book.review(ev, Review.DISMISSED, f"{ctx.why}: {ev.type} not named", escalation_id=v.escalation_id,
                                 explanation=v.explanation)
                self.book.end_alert(ev.type, t, ctx.why)
        return replace(ctx, alert_types=tuple(k for k in ctx.alert_types if k not in coverage.flags))

    def _seen_after_coverage(self) -> frozenset[str]:
        """Triggers the last n reports show on frames no dismissal covers."""
        if self._stats is None:
            return frozenset()
        return frozenset().union(*(ev.triggers for ev in self._recent_uncovered(self._stats))) & self.triggers

    # ==================================================================================
    # Events (what to open and fold in; the lines are `pipeline.incidents.events`)
    # ==================================================================================

    def _new_incident(self) -> None:
        self._incident_counter += 1
        self.open_incident_id = f"{self.camera}-incident-{self._incident_counter:05d}"

    def _open_activity(self, stats: WindowStats, t: float, reason: str) -> None:
        self.book.open_activity(self._activity_kind(stats) or "motion", float(stats.timestamp), t,
                                self._activity_flags(stats), stats.confidence_last, reason)

    def _open_alert(self, kind: str, t: float, reason: str, *, review: ReviewStatus = Review.NOT_REVIEWED,
                    explanation: str = "", confidence: float | None = None, escalation_ids: Iterable[str] = ()) -> OpenEvent:
        stats = self._stats
        in_view = stats is not None and kind in self._evidence_triggers(stats)
        flags = set(stats.active_flags) if stats is not None and in_view else set()
        peak = confidence if confidence is not None else (stats.confidence_last if stats is not None and in_view else 0.0)
        if self.open_incident_id is None:
            self._new_incident()
        return self.book.open_alert(kind, t, reason, flags=flags, peak=peak, review=review, explanation=explanation,
                                    escalation_ids=escalation_ids)

    def _end_quiet_activity(self, t: float) -> None:
        """End the activity event after quiet_after_s without activity, whatever the alert cycle is
        doing (where the machine ends it, go_quiet does, with the camera going idle)."""
        self.book.end_quiet_alongside(t, self.cfg.quiet_after_s)
        if self.book.activity is None or self._is("quiet_by_machine"):
            return
        quiet = t - self._last_activity_ts
        if quiet >= self.cfg.quiet_after_s:
            self.book.end_activity(t, f"no activity for {quiet:.1f}s >= quiet_after_s {self.cfg.quiet_after_s:g}s")

    def _refresh_events(self, t: float, stats: WindowStats, flags: frozenset[str], activity: str | None) -> None:
        """Fold the newest report into the open events (peak confidence, flags, a new activity type)."""
        conf = stats.confidence_last
        if activity is not None:
            if self.book.activity is None and self._is("watching"):
                self._open_activity(stats, t, f"activity ({activity}) while {self.state}")
            else:
                self.book.see_activity(activity, t, self._activity_flags(stats), conf)
            # A vehicle passing while a person is in view (or the reverse) is an event of its own.
            self.book.see_alongside(activity_kinds(stats.observations) & ALONGSIDE_KINDS, t, conf)
        alerting = self._is("alerting")
        for kind, ev in list(self.book.alerts.items()):
            if kind in flags:
                self.book.see_alert(kind, t, stats.active_flags, conf)
            elif alerting and len(self.book.alerts) > 1 and t - ev.last_seen >= self.cfg.quiet_after_s:
                self.book.end_alert(kind, t, f"{kind} not seen for {t - ev.last_seen:.1f}s")
        if alerting:
            # Another flag type persisting during an alert gets its own event.  (While escalated,
            # the verdict decides which alerts there are.)
            for kind in self._persisting(stats):
                if kind not in self.book.alerts:
                    self._open_alert(kind, t, f"{kind} persisted during the alert")


__all__ = ["CameraMonitor", "STATES", "VERDICT_TIMEOUT_S"]
