"""The escalation policy: (window stats, thresholds, queue state, memory) → decision.

`decide` is pure: everything it needs arrives as arguments (including what it remembers
from earlier frames, `PolicyMemory`) and it returns the decision plus the new memory.
`EscalationPolicy` is the thin per-camera wrapper the runner holds.

Signals, strongest first (their `records.Priority`):

1. **safety** — a safety trigger matched (on words and synonyms, in flags *and*
   observations, see `match_safety`) in at least k of the last n analysed frames;
2. **low_confidence** — confidence below ``min_confidence`` *sustained*: the window's mean is
   below it and at least max(3, half the window's reports) are below it;
3. **flag_flip** — a flag switched on/off at least ``flip_limit`` times in the window;
4. **scene_change** — the newest frame is a global change (once per change: rising edge);
5. **audit** — every ``audit_every`` analysed frames, even when calm.

Backpressure (queue pressure ≥ 0.8, recent sheds, or a raised ``bar``) defers the weakest
signals first: level 1 defers audits (they stay due), level 2 also flips and scene changes,
level 3 also low confidence.  Safety is never deferred.

A pattern (set of flags) once escalated is not sent again within the cool-off (``cooloff_s``,
default the window length) unless a new flag joins it.  A teacher's dismissal of a safety
pattern covers the frames it saw (`cover`, `pipeline.incidents.verdicts`): those frames no
longer count towards k, while frames after its last keyframe (or stronger) do; a dismissed type
the student reports again on such a frame is a new question, asked again at most every
``reask_after_s`` (``reask_wait`` until then: the monitor's own alert, if the evidence persists,
stands meanwhile).  A dismissal suppresses the *other*
signals (low confidence, flips) of that pattern until `suppress`'s expiry; never safety.

**Calibrated confidence** (``Thresholds.calibrated``: the reports' confidence is the
calibration map's probability that the teacher agrees, see docs/LEARNING.md) changes two
things, and nothing when it is off:

* safety persistence weighs each flagged frame by how likely its flag is right: a frame
  counts ``min(1, p / FULL_EVIDENCE_PROBABILITY)`` towards k, so a flag at least as likely
  right as wrong counts as a whole frame (as before) while a flag the map doubts needs more
  frames (a phantom the student reports at p = 0.25 counts half);
* the low-confidence signal looks at the frames *without* a safety flag only: a flagged
  frame's doubt is already weighed by the safety rule, and a low probability on a flag says
  "probably a phantom", which is no reason to call the teacher.  Without a flag, low means
  "probably missing something", which is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Protocol

from pipeline.config.escalation import EscalationConfig
from pipeline.incidents.evidence import evidence_counts
from pipeline.incidents.evidence import persisting as persisting_triggers
from pipeline.incidents.verdicts import Coverage, may_reask, prune, uncover
from pipeline.records import ALWAYS_TRIGGERS, Priority, WindowStats, normalise_flag

# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------

#: Queue pressure (depth / capacity) from which audits are deferred; the higher marks defer more.
PRESSURE_DEFER_AUDIT = 0.8
PRESSURE_DEFER_MINOR = 0.9
PRESSURE_FULL = 1.0

REASON_PRIORITY: Mapping[str, Priority] = MappingProxyType({
    "safety": Priority.SAFETY,
    "low_confidence": Priority.LOW_CONFIDENCE,
    "blip": Priority.LOW_CONFIDENCE,
    "flag_flip": Priority.FLAG_FLIP,
    "scene_change": Priority.SCENE_CHANGE,
    "audit": Priority.AUDIT,
})
#: The backpressure level from which a signal is deferred (safety: never).
_DEFER_FROM_LEVEL: Mapping[str, int] = MappingProxyType({
    "audit": 1, "flag_flip": 2, "scene_change": 2, "blip": 2, "low_confidence": 3,
})
MAX_BAR = 3


def _frozen_map(data: Mapping[Any, Any] | None = None) -> Mapping[Any, Any]:
    return MappingProxyType(dict(data or {}))


@dataclass(frozen=True, slots=True)
class Thresholds:
    min_confidence: float
    safety_triggers: frozenset[str]
    persistence_k: int
    persistence_n: int
    audit_every: int
    flip_limit: int
    bar: int = 0
    """Backpressure raised from outside (0 = normal, 1 defers audits, 2 also flips/scene changes, 3 also low confidence)."""
    cooloff_s: float | None = None
    """How long an escalated pattern is not re-sent; None = the window's length."""
    persistence_k_by_flag: Mapping[str, int] = field(default_factory=_frozen_map, hash=False)
    """Per-flag k (normalised flag -> 1..persistence_n) overriding persistence_k (adaptive teacher feedback)."""
    rearm_after_s: float = 2.0
    """A safety flag back after this long absent is a new onset (see `Onsets`)."""
    reask_after_s: float = 2.0
    review_alerts: bool = True
    """An alert the monitor raised that no teacher has seen is a safety question too (`decide`'s ``unreviewed``)."""
    """A dismissed safety pattern that persists again on later frames is asked again at most this often."""
    reask_when_due: bool = True
    """A re-ask the rate limit held back is owed: asked once the limit allows, while its evidence is in the window."""
    hold_confirmed: bool = True
    """A safety type the teacher confirmed is not asked again while its evidence goes on (re-armed by a new onset)."""
    ask_at_end: bool = True
    """When the source ends, safety evidence of the last n frames no teacher has answered is asked (`decide`'s ``final``)."""
    ask_blips: bool = False
    """A safety flag on the newest frame that does not (yet) persist is asked too, below safety priority (``blip``)."""
    calibrated: bool = False
    """The reports' confidence is calibrated (probability the teacher agrees): safety evidence is
    weighed by it and low confidence looks at unflagged frames only (module doc).  False = raw."""

    def __post_init__(self) -> None:
        if not 1 <= self.persistence_k <= self.persistence_n:
            raise ValueError(f"persistence_k ({self.persistence_k}) must be in 1..persistence_n ({self.persistence_n})")
        for flag, k in self.persistence_k_by_flag.items():
            if not 1 <= k <= self.persistence_n:
                raise ValueError(f"persistence_k_by_flag[{flag}] ({k}) must be in 1..persistence_n ({self.persistence_n})")
        if not 0 <= self.bar <= MAX_BAR:
            raise ValueError(f"bar must be in 0..{MAX_BAR} (got {self.bar})")

    def k_for(self, flag: str) -> int:
        return self.persistence_k_by_flag.get(flag, self.persistence_k)

    @classmethod
    def from_config(cls, cfg: EscalationConfig, *, bar: int = 0, cooloff_s: float | None = None) -> "Thresholds":
        return cls(
            min_confidence=cfg.min_confidence,
            safety_triggers=frozenset(normalise_flag(t) for t in cfg.safety_triggers if t.strip()) | ALWAYS_TRIGGERS,
            persistence_k=cfg.persistence_k,
            persistence_n=cfg.persistence_n,
            audit_every=cfg.audit_every,
            flip_limit=cfg.flip_limit,
            bar=bar,
            cooloff_s=cooloff_s,
            rearm_after_s=cfg.rearm_after_s,
            reask_after_s=cfg.reask_after_s,
            review_alerts=cfg.review_alerts,
            reask_when_due=cfg.reask_when_due,
            ask_at_end=cfg.ask_at_end,
            hold_confirmed=cfg.hold_confirmed,
            ask_blips=cfg.ask_blips,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "min_confidence": self.min_confidence,
            "safety_triggers": sorted(self.safety_triggers),
            "persistence": f"{self.persistence_k}/{self.persistence_n}",
            "audit_every": self.audit_every,
            "flip_limit": self.flip_limit,
            "bar": self.bar,
            "cooloff_s": self.cooloff_s,
            **({"persistence_by_flag": {f: f"{k}/{self.persistence_n}" for f, k in sorted(self.persistence_k_by_flag.items())}}
               if self.persistence_k_by_flag else {}),
            **({"confidence": "calibrated"} if self.calibrated else {}),
        }


@dataclass(frozen=True, slots=True)
class QueueState:
    depth: int
    capacity: int
    recent_sheds: int = 0
    """Escalations shed by the teacher queue recently (the queue's own horizon)."""

    @property
    def pressure(self) -> float:
        return self.depth / self.capacity if self.capacity > 0 else 1.0


@dataclass(frozen=True)
class Onsets:
    """When each safety trigger was last reported, and which were since reported absent.

    A trigger that comes back after an analysed report without it, and after at least
    ``rearm_s`` of source time, is a *new onset*: a dismissal or an escalation of the earlier
    pattern no longer holds it back (a steady lamp dismissed at 32 s must not hide a fire at
    38 s).  A trigger that is merely not re-analysed (a static scene the gate skips) is not
    absent, so a dismissed pattern stays dismissed while it stays in view.
    """

    last_seen: Mapping[str, float] = field(default_factory=_frozen_map)
    absent: frozenset[str] = frozenset()


def track_onsets(onsets: Onsets, present: frozenset[str], now: float, rearm_s: float) -> tuple[Onsets, frozenset[str]]:
    """Fold one analysed report's triggers into ``onsets``; return the new memory and the new onsets."""
    new_onsets = frozenset(
        f for f in present if f in onsets.absent and now - onsets.last_seen.get(f, now) >= rearm_s
    )
    last_seen = dict(onsets.last_seen)
    for flag in present:
        last_seen[flag] = now
    absent = (onsets.absent | frozenset(last_seen)) - present
    return Onsets(last_seen=_frozen_map(last_seen), absent=frozenset(absent)), new_onsets


def drop_patterns_with(patterns: Mapping[frozenset[str], float], flags: frozenset[str]) -> dict[frozenset[str], float]:
    """``patterns`` without those that name any of ``flags`` (they had a new onset)."""
    return {p: t for p, t in patterns.items() if not (p & flags)}


@dataclass(frozen=True)
class PolicyMemory:
    analysed_since_audit: int = 0
    suppressed: Mapping[frozenset[str], float] = field(default_factory=_frozen_map)
    """Pattern (flag set) → source time until which it does not escalate (teacher dismissed it)."""
    last_escalated_at: Mapping[str, float] = field(default_factory=_frozen_map)
    """Signal ("safety", "low_confidence", ...) → source time of its last escalation."""
    escalated_patterns: Mapping[frozenset[str], float] = field(default_factory=_frozen_map)
    """Pattern → source time it was last escalated (for the cool-off)."""
    open_incident: bool = False
    """A safety pattern was escalated and safety evidence is still in the last n frames."""
    last_scene_change: bool = False
    scene_change_at: float | None = None
    """Source time of a scene change not yet sent (deferred changes wait up to one window)."""
    last_timestamp: float | None = None
    onsets: Onsets = field(default_factory=Onsets)
    coverages: tuple[Coverage, ...] = ()
    """What the teacher's dismissals covered (frames up to their last keyframe): not safety evidence again."""
    owed: frozenset[str] = frozenset()
    """Dismissed safety types seen again whose re-ask the rate limit held back: asked when due."""
    confirmed: frozenset[str] = frozenset()
    """Safety types the teacher confirmed whose evidence has gone on since (no new onset, not gone quiet)."""


@dataclass(frozen=True, slots=True)
class Decision:
    escalate: bool
    reason: str
    priority: Priority | None
    flags: frozenset[str]
    detail: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def suppress(memory: PolicyMemory, flags: Iterable[str], until: float) -> PolicyMemory:
    """Memory where the pattern ``flags`` does not escalate before source time ``until``."""
    pattern = frozenset(normalise_flag(f) for f in flags)
    suppressed = dict(memory.suppressed)
    suppressed[pattern] = max(until, suppressed.get(pattern, until))
    return replace(memory, suppressed=_frozen_map(suppressed))


# --------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------


def backpressure_level(queue: QueueState, bar: int = 0) -> int:
    """0 normal … 3 (see module doc); the larger of the queue's level and the raised bar."""
    level = 0
    if queue.pressure >= PRESSURE_DEFER_AUDIT or queue.recent_sheds > 0:
        level = 1
    if queue.pressure >= PRESSURE_DEFER_MINOR or (queue.recent_sheds > 0 and queue.pressure >= PRESSURE_DEFER_AUDIT):
        level = 2
    if queue.pressure >= PRESSURE_FULL and queue.recent_sheds > 0:
        level = 3
    return max(level, bar)


def _covered(pattern: frozenset[str], patterns: Mapping[frozenset[str], float], now: float, *, since: float | None = None) -> bool:
    """Is ``pattern`` within an unexpired entry (until > now), or one set after ``since``?

    An empty pattern is only covered by an empty entry, so suppressing {} (a calm
    low-confidence sequence) does not hide a flagged one, and vice versa.
    """
    for other, t in patterns.items():
        if not pattern <= other or (not pattern and other):
            continue
        if since is None and t > now:
            return True
        if since is not None and t > since:
            return True
    return False


def decide(
    stats: WindowStats, thresholds: Thresholds, queue: QueueState, memory: PolicyMemory,
    unreviewed: frozenset[str] = frozenset(), *, final: bool = False,
) -> tuple[Decision, PolicyMemory]:
    """The policy's decision on the newest frame; ``unreviewed`` names the safety types the
    monitor alerts on that no teacher has seen (with ``review_alerts`` they are asked about like
    persisting evidence: the monitor can alert on frames the policy never analyses).

    ``final``: the source has ended and no frame follows.  With ``ask_at_end``, safety evidence in
    the last n frames that no verdict covers is asked now, persisting or not and whatever the
    re-ask rate (a flag on a clip's last frame, a cut just before a camera is lost): it would
    otherwise never be answered."""
    now = stats.timestamp
    cooloff_s = thresholds.cooloff_s if thresholds.cooloff_s is not None else stats.window_s
    is_new_frame = memory.last_timestamp is None or now > memory.last_timestamp

    # -- the frame's safety evidence, read once by the window ------------------------------
    evidence = stats.recent_evidence
    current_safety = stats.evidence.triggers & thresholds.safety_triggers if stats.evidence is not None else frozenset()
    onsets, new_onsets = memory.onsets, frozenset()
    if is_new_frame:
        onsets, new_onsets = track_onsets(memory.onsets, current_safety, now, thresholds.rearm_after_s)
    if new_onsets:
        # A new onset is a new incident: what the teacher said about the old one no longer applies.
        memory = replace(
            memory,
            suppressed=_frozen_map(drop_patterns_with(memory.suppressed, new_onsets)),
            escalated_patterns=_frozen_map(drop_patterns_with(memory.escalated_patterns, new_onsets)),
        )
    analysed_since_audit = memory.analysed_since_audit + (1 if is_new_frame else 0)

    # -- safety: k of the last n frames (the one persistence rule, shared with the monitor) --
    # Frames a dismissal covered are answered; later (or stronger) frames are a new question.
    recent = uncover(evidence[-thresholds.persistence_n:], memory.coverages)
    safety_counts = {trig: sum(trig in e.triggers for e in recent) for trig in thresholds.safety_triggers}
    safety_weight = {t: w for t, w in evidence_counts(recent, thresholds).items() if t in thresholds.safety_triggers}
    persisting = frozenset(t for t in persisting_triggers(recent, thresholds) if t in thresholds.safety_triggers)
    if thresholds.review_alerts:
        persisting |= unreviewed & thresholds.safety_triggers
    # A type the teacher dismissed that the student reports again on a frame after what the
    # teacher saw is a new question: asked (at most every reask_after_s) before it persists again.
    dismissed_before = frozenset().union(*(c.flags for c in memory.coverages)) if memory.coverages else frozenset()
    persisting |= frozenset(t for t in dismissed_before & thresholds.safety_triggers if any(t in e.triggers for e in recent))
    any_evidence = any(e.triggers & thresholds.safety_triggers for e in recent)
    # A re-ask the rate limit held back is owed while its (uncovered) evidence is in the window.
    window_uncovered = uncover(evidence, memory.coverages)
    in_window = frozenset().union(*(e.triggers for e in window_uncovered)) & thresholds.safety_triggers if window_uncovered \
        else frozenset()
    owed = memory.owed & in_window if thresholds.reask_when_due else frozenset()
    if owed and may_reask(memory.last_escalated_at.get("safety"), now, thresholds.reask_after_s):
        persisting |= owed
    ask_now = final and thresholds.ask_at_end
    if ask_now:
        persisting |= frozenset().union(*(e.triggers for e in recent)) & thresholds.safety_triggers if recent else frozenset()
    # A confirmed type stays answered while its evidence goes on: a new onset or a quiet spell re-arms it.
    confirmed = (memory.confirmed - new_onsets) if any_evidence and thresholds.hold_confirmed else frozenset()

    # -- low confidence, sustained --------------------------------------------------------
    window_trace = evidence[-max(stats.n_reports, 1):]
    if thresholds.calibrated:
        # Only frames without a safety flag: there low means "probably missing something".
        unflagged = [t.confidence for t in window_trace if not t.triggers & thresholds.safety_triggers]
        below = sum(c < thresholds.min_confidence for c in unflagged)
        needed_below = max(3, math.ceil(len(unflagged) / 2))
        low_conf = bool(unflagged) and sum(unflagged) / len(unflagged) < thresholds.min_confidence and below >= needed_below
    else:
        below = sum(t.confidence < thresholds.min_confidence for t in window_trace)
        needed_below = max(3, math.ceil(stats.n_reports / 2))
        low_conf = stats.confidence_mean < thresholds.min_confidence and below >= needed_below

    # -- flips, scene change, audit -------------------------------------------------------
    flipping = frozenset(f for f, n in stats.flips.items() if n >= thresholds.flip_limit)
    scene_edge = stats.scene_change and not memory.last_scene_change and is_new_frame
    scene_change_at = now if scene_edge else memory.scene_change_at
    if scene_change_at is not None and now - scene_change_at >= stats.window_s:
        scene_change_at = None  # too old to be worth a review
    audit_due = analysed_since_audit >= thresholds.audit_every

    level = backpressure_level(queue, thresholds.bar)
    detail: dict[str, Any] = {
        "safety_now": sorted(current_safety),
        "safety_counts": {k: v for k, v in sorted(safety_counts.items()) if v},
        "persistence": f"{thresholds.persistence_k}/{thresholds.persistence_n}",
        **({"safety_evidence": {k: round(v, 3) for k, v in sorted(safety_weight.items()) if v}} if thresholds.calibrated else {}),
        "confidence_mean": round(stats.confidence_mean, 4),
        "below_min_confidence": below,
        "needed_below": needed_below,
        "flips": {f: n for f, n in sorted(stats.flips.items()) if n},
        "scene_change": stats.scene_change,
        "analysed_since_audit": analysed_since_audit,
        "queue_pressure": round(queue.pressure, 3),
        "recent_sheds": queue.recent_sheds,
        "backpressure": level,
    }

    # Candidates in priority order: (signal, flags, reason text).
    candidates: list[tuple[str, frozenset[str], str]] = []
    if persisting:
        top = max(sorted(persisting), key=lambda t: safety_counts[t])
        candidates.append(("safety", persisting, f"safety:{top}"))
    # A lone safety flag (not persisting, not answered): a cheap question before k of n could say it.
    blips = (current_safety & frozenset().union(*(e.triggers for e in recent[-1:]))) - persisting - confirmed \
        - dismissed_before if thresholds.ask_blips and is_new_frame and recent else frozenset()
    if blips:
        candidates.append(("blip", blips, f"blip:{min(blips)}"))
    if low_conf:
        candidates.append(("low_confidence", stats.active_flags, "low_confidence"))
    if flipping:
        candidates.append(("flag_flip", flipping, "flag_flip"))
    # A scene change that carries a safety flag (a covered lens reads as both) waits for the
    # safety path to see whether the flag persists: a teacher shown one frame of it would
    # dismiss it, and the dismissal would suppress the real alarm.  The change stays pending
    # for a window, so it is still reviewed if the flag fades.
    if scene_change_at is not None and not (current_safety - persisting):
        candidates.append(("scene_change", stats.active_flags, "scene_change"))
    if audit_due:
        candidates.append(("audit", stats.active_flags, "audit"))
    if final:
        candidates = [c for c in candidates if c[0] == "safety"]  # the last question is a safety one or none

    chosen: tuple[str, frozenset[str], str] | None = None
    blocked: list[tuple[str, str]] = []
    for signal, flags, reason in candidates:
        if signal not in ("audit", "safety") and _covered(flags, memory.suppressed, now):
            blocked.append((signal, "suppressed"))
            continue
        if (signal == "safety" and flags & dismissed_before and not ask_now
                and not may_reask(memory.last_escalated_at.get("safety"), now, thresholds.reask_after_s)):
            blocked.append((signal, "reask_wait"))
            owed |= flags & dismissed_before & in_window if thresholds.reask_when_due else frozenset()
            continue
        if signal == "safety" and flags <= confirmed:
            blocked.append((signal, "confirmed_ongoing"))
            continue
        if signal in ("safety", "blip"):
            recent = _covered(flags, memory.escalated_patterns, now, since=now - cooloff_s)
        elif signal == "scene_change":
            recent = False  # the rising edge already makes it once per change
        else:
            last = memory.last_escalated_at.get(signal)
            recent = signal != "audit" and last is not None and now - last < cooloff_s
        if recent:
            blocked.append((signal, "cooloff"))
            continue
        if level >= _DEFER_FROM_LEVEL.get(signal, MAX_BAR + 1):
            blocked.append((signal, "deferred_backpressure"))
            continue
        chosen = (signal, flags, reason)
        break

    # -- new memory -----------------------------------------------------------------------
    last_escalated = dict(memory.last_escalated_at)
    patterns = {p: t for p, t in memory.escalated_patterns.items() if now - t < cooloff_s}
    open_incident = memory.open_incident and any_evidence
    if memory.open_incident and not any_evidence:
        # The incident is over: a recurrence is a new incident and escalates straight away.
        patterns = {p: t for p, t in patterns.items() if not (p & thresholds.safety_triggers)}
    if chosen is not None:
        signal, flags, reason = chosen
        last_escalated[signal] = now
        if signal == "safety":
            patterns[flags] = now
            open_incident = True
            owed -= flags
        elif signal == "blip":
            patterns[flags] = now
        # Any escalation sends the window to the teacher, so a due audit or a pending
        # scene change is served by it.
        if audit_due:
            analysed_since_audit = 0
        scene_change_at = None
    new_memory = PolicyMemory(
        analysed_since_audit=analysed_since_audit,
        suppressed=_frozen_map({p: u for p, u in memory.suppressed.items() if u > now}),
        last_escalated_at=_frozen_map(last_escalated),
        escalated_patterns=_frozen_map(patterns),
        open_incident=open_incident,
        last_scene_change=stats.scene_change,
        scene_change_at=scene_change_at,
        last_timestamp=now if memory.last_timestamp is None else max(now, memory.last_timestamp),
        onsets=onsets,
        coverages=prune(memory.coverages, now - stats.window_s),
        owed=owed,
        confirmed=confirmed,
    )

    if chosen is not None:
        signal, flags, reason = chosen
        if blocked:
            detail["passed_over"] = dict(blocked)
        return Decision(True, reason, REASON_PRIORITY[signal], flags, detail), new_memory
    if blocked:
        signal, why = blocked[0]
        detail["signal"] = signal
        detail["would_be_priority"] = REASON_PRIORITY[signal].name
        return Decision(False, why, None, candidates[0][1], detail), new_memory
    hint = current_safety or any(t.confidence < thresholds.min_confidence for t in window_trace[-1:])
    return Decision(False, "blip" if hint else "calm", None, current_safety, detail), new_memory


class ThresholdSource(Protocol):
    """Whoever owns the thresholds in force (`ThresholdController`, static or adaptive)."""

    def current(self) -> Thresholds: ...


@dataclass(frozen=True, slots=True)
class FixedThresholds:
    """A source that never changes: tests and evaluation baselines without a controller."""

    thresholds: Thresholds

    def current(self) -> Thresholds:
        return self.thresholds


class EscalationPolicy:
    """Per-camera holder of the policy's memory; every decision goes through `decide`.

    The policy owns no thresholds: it reads them from their owner at each decision (the runner
    makes it follow the camera's `ThresholdController`, which a reload updates)."""

    def __init__(self, thresholds: Thresholds | ThresholdSource, memory: PolicyMemory | None = None, *,
                 confidence_calibrated: bool = False) -> None:
        self.source: ThresholdSource = FixedThresholds(thresholds) if isinstance(thresholds, Thresholds) else thresholds
        self.confidence_calibrated = confidence_calibrated
        """Set by whoever maps the reports' confidence (the runner, from `Learner.applying`): the
        thresholds in force (which adaptive control replaces) are then read on the calibrated scale."""
        self.memory = memory or PolicyMemory()
        self.last_decision: Decision | None = None
        self.decisions = 0
        self.escalations_by_reason: dict[str, int] = {}

    def evaluate(self, stats: WindowStats, queue: QueueState, unreviewed: frozenset[str] = frozenset()) -> Decision:
        decision, self.memory = decide(stats, self._effective_thresholds(), queue, self.memory, unreviewed)
        self.last_decision = decision
        self.decisions += 1
        if decision.escalate:
            self.escalations_by_reason[decision.reason] = self.escalations_by_reason.get(decision.reason, 0) + 1
        return decision

    def at_end(self, stats: WindowStats, queue: QueueState, unreviewed: frozenset[str] = frozenset()) -> Decision:
        """The source ended after the frame of ``stats``: one last decision (`decide`'s ``final``)."""
        decision, self.memory = decide(stats, self._effective_thresholds(), queue, self.memory, unreviewed, final=True)
        self.last_decision = decision
        if decision.escalate:
            self.escalations_by_reason[decision.reason] = self.escalations_by_reason.get(decision.reason, 0) + 1
        return decision

    def confirm(self, flags: frozenset[str]) -> None:
        """The teacher confirmed these safety types: not asked again while their evidence goes on."""
        self.memory = replace(self.memory, confirmed=self.memory.confirmed | flags)

    def cover(self, coverage: Coverage) -> None:
        """After a dismissal of a safety pattern: the frames it covered no longer count as
        evidence, and the pattern may be asked again (at the re-ask rate) on later frames."""
        patterns = {p: t for p, t in self.memory.escalated_patterns.items() if not (p & coverage.flags)}
        self.memory = replace(self.memory, coverages=self.memory.coverages + (coverage,),
                              escalated_patterns=_frozen_map(patterns), confirmed=self.memory.confirmed - coverage.flags)

    def suppress(self, flags: Iterable[str], until: float, reason: str | None = None) -> None:
        """After a dismissal: the pattern ``flags`` does not escalate on its non-safety signals
        (low confidence, flips, scene change) before ``until`` (source time); safety: see `cover`.

        A dismissed *audit* suppresses nothing: an audit samples a calm sequence, so its
        dismissal says nothing about a pattern (pass the escalation's reason to get this).
        """
        if reason == "audit":
            return
        self.memory = suppress(self.memory, flags, until)

    def follow(self, source: ThresholdSource) -> None:
        """Read the thresholds in force from ``source`` from now on."""
        self.source = source

    @property
    def thresholds(self) -> Thresholds:
        return self.source.current()

    def _effective_thresholds(self) -> Thresholds:
        if not self.confidence_calibrated or self.thresholds.calibrated:
            return self.thresholds
        return replace(self.thresholds, calibrated=self.confidence_calibrated)

    def thresholds_in_force(self) -> dict[str, Any]:
        return self._effective_thresholds().to_json()
