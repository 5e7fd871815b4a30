"""The keyframe budget: which of the frames the gate passes are worth a student call.

The gate (`pipeline.frames.gate`) runs on every decoded frame and passes every frame that shows
change standing out from what normally moves.  A mover passes many frames a second; most
are near-duplicates of each other.  `KeyframeBudget` picks, per camera, the few that tell
the story, within ``max_calls_per_min`` and ``min_spacing_s``:

* the **first frame** of the source, every **global change** (possible tamper or lighting
  change: never dropped, only held ``1/sample_fps`` after any send and ``global_repeat_s`` after
  the last global one, since a camera being moved or a shaky feed changes the whole view several
  times a second and one look per interval follows it), and the gate's **heartbeat**;
* the **onset** of a change episode (an episode starts with the first passed change after
  ``quiet_s`` without one): the first passed change once the episode has lasted
  ``onset_confirm_s`` — by then the mover is in view rather than one block at the edge, and
  flicker shorter than that sends nothing.  When spacing or budget hold it back, the onset
  stays pending and goes with the next passed frame that is allowed, so an episode is never
  silently missed;
* a **peak**: a frame whose change quality (salience, weighted toward the centre of the
  view) exceeds ``peak_factor`` times that of the strongest frame sent in the episode — the
  frame where a mover is largest / most central.  (Against the strongest, not the last sent:
  a weak frame sent in between must not make the next ordinary frame look like a peak.);
* an **active refresh**: while the change stays strong (quality >= ``active_ratio`` of the
  strongest sent in the episode), a frame every ``active_refresh_s``, near-duplicate region or
  not.  Why: someone moving about in one place (playing, stumbling, a struggle) keeps the
  changing region where it was, so region novelty never fires, yet that is exactly where a
  fall happens; with a frame at least every ``active_refresh_s`` of strong activity, any event
  lasting ``active_refresh_s - 1`` s or more there gets a frame within a second of its end
  (budget permitting: 2 s is 30 a minute, so over minutes of strong activity the default
  24 a minute stretches the cadence to 2.5 s);
* a **refresh** during a long episode, every ``refresh_s``, when the changing region is not a
  near-duplicate of the last one sent (bounding-box overlap < ``duplicate_iou``) and the change
  is not weak (quality >= ``weak_ratio`` of the strongest sent: someone standing nearly still
  needs no new look);
* an episode **heartbeat**: a changed frame whatever it shows once nothing was sent for
  ``max_silence_s`` (the gate's own heartbeat fires only when nothing *changes*);
* the **final** frame (`finish`, when the source ends): the last frame the gate passed, when a
  global change or a confirmed onset is still held, or when strong activity (as for the active
  refresh) went unsent for at least ``min_spacing_s``.  The active refresh promises a frame for
  every ``active_refresh_s`` of strong activity; at the end of a file, or just before a camera
  drops, that next refresh never comes, and what happened last (someone down on the floor) is
  what matters most.

Budget: a token bucket (``burst`` tokens, refilled at ``max_calls_per_min`` per minute) plus
a strict sliding-minute cap, and ``min_spacing_s`` between sends.  **Safety bends it**: while
the caller says a safety flag is active, any frame (passed by the gate or not: a person lying
still produces no change) is sent once ``1/sample_fps`` has passed since the last send.

Time is the frames' source time only.  One budget per camera; not thread-safe.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass

from pipeline.config.budget import BudgetConfig
from pipeline.records import GateDecision, GateReason

_EPS = 1e-9
TAMPER_KIND = "tamper"  # (the gate's word; not imported from pipeline.frames.gate, which is the cv2 side)

# Why a frame was sent.
SENT_FIRST = "first"
SENT_GLOBAL = "global_change"
SENT_HEARTBEAT = "heartbeat"
SENT_ONSET = "onset"
SENT_PEAK = "peak"
SENT_ACTIVE = "active"
SENT_REFRESH = "refresh"
SENT_SAFETY = "safety"
SENT_FINAL = "final"
# Why a frame the gate passed was not sent.
DROP_DUPLICATE = "duplicate"
DROP_UNCONFIRMED = "unconfirmed"
DROP_SPACING = "spacing"
DROP_BUDGET = "budget"


@dataclass(frozen=True, slots=True)
class BudgetDecision:
    """Whether to send one frame to the student, and why (or why not)."""

    send: bool
    reason: str
    """A send reason (first, global_change, heartbeat, onset, peak, active, refresh, safety, final) or a drop
    reason (unconfirmed, duplicate, spacing, budget, or the gate's reason such as 'static' when it was gated out)."""
    tokens: float
    """Budget tokens left after this decision (one send costs one)."""
    global_kind: str | None = None
    """For a global change sent late (held by spacing, so it goes with a later frame): the gate's kind of
    that change ('tamper' over 'lighting_change' when several were held), so it still reaches the window."""


def _quality(decision: GateDecision) -> float:
    """Salience weighted toward the centre: the frame where a mover is largest and most central scores highest."""
    if decision.region is None:
        return decision.salience
    x0, y0, x1, y1 = decision.region
    off_centre = math.hypot((x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5) / math.hypot(0.5, 0.5)
    return decision.salience * (1.0 - 0.5 * off_centre)


def _iou(a: tuple[float, float, float, float] | None, b: tuple[float, float, float, float] | None) -> float:
    if a is None or b is None:
        return 0.0
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class KeyframeBudget:
    """Per-camera keyframe selection under a call budget; feed it every gate decision in time order."""

    def __init__(self, cfg: BudgetConfig, sample_fps: float) -> None:
        if not (math.isfinite(sample_fps) and sample_fps > 0):
            raise ValueError(f"sample_fps must be a positive number (got {sample_fps!r})")
        self.cfg = cfg
        self.safety_gap_s = 1.0 / sample_fps
        self._tokens = float(cfg.burst)
        self._last_ts: float | None = None
        self._last_sent_ts = -math.inf
        self._recent_sends: deque[float] = deque()  # budgeted send times within the last minute
        self._last_change_ts = -math.inf
        self._episode_sent = False  # has the current change episode had a frame sent?
        self._episode_start = -math.inf  # source time of the current episode's first change
        self._episode_max_quality = 0.0  # the strongest change sent in the current episode
        self._last_sent_region: tuple[float, float, float, float] | None = None
        self._pending_global = False
        self._pending_global_kind: str | None = None
        self._last_global_sent_ts = -math.inf
        self._unsent_change = False  # has the gate passed a frame since the last send?
        self._strong_unsent_s = 0.0  # source seconds of strong change since the last send
        self._onset_held = False  # was the current episode's confirmed onset held back by spacing or budget?
        self.frames = 0
        self.gated_out: Counter[str] = Counter()
        self.sent: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    # -- public ------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, object]:
        """Frames judged, gated out (by gate reason), sent (by reason) and budget-dropped (by reason)."""
        return {
            "frames": self.frames,
            "gated_out": dict(self.gated_out),
            "sent": dict(self.sent),
            "budget_dropped": dict(self.dropped),
            "frames_sent": sum(self.sent.values()),
        }

    def admit(self, decision: GateDecision, timestamp: float, safety_active: bool = False) -> BudgetDecision:
        """Decide whether the frame judged by ``decision`` at source time ``timestamp`` goes to the student."""
        ts = float(timestamp)
        self.frames += 1
        # A decision the runner's safety watch already let through means the same as safety_active.
        safety_active = safety_active or decision.reason is GateReason.SAFETY_WATCH
        self._refill(ts)
        since = ts - self._last_sent_ts
        if decision.passed:
            self._unsent_change = True  # (cleared again if this frame is sent)
        if decision.reason is GateReason.GLOBAL_CHANGE:
            self._pending_global = True
            if self._pending_global_kind != TAMPER_KIND:
                self._pending_global_kind = decision.global_kind or self._pending_global_kind

        if self._pending_global:
            if since >= self.safety_gap_s - _EPS and ts - self._last_global_sent_ts >= self.cfg.global_repeat_s - _EPS:
                return self._send(SENT_GLOBAL, decision, ts)
            if not decision.passed:
                self.gated_out[decision.reason.value] += 1
                return BudgetDecision(False, decision.reason.value, self._tokens)
            return self._drop(DROP_SPACING)
        if safety_active:
            if decision.passed and decision.reason is GateReason.CHANGE:
                self._track_episode(ts)
            if since >= self.safety_gap_s - _EPS:
                return self._send(SENT_SAFETY, decision, ts)
            if not decision.passed:
                self.gated_out[decision.reason.value] += 1
                return BudgetDecision(False, decision.reason.value, self._tokens)
            return self._drop(DROP_SPACING)
        if not decision.passed:
            self.gated_out[decision.reason.value] += 1
            return BudgetDecision(False, decision.reason.value, self._tokens)
        if decision.reason is GateReason.FIRST:
            return self._send(SENT_FIRST, decision, ts)
        if decision.reason is GateReason.HEARTBEAT:
            if since >= self.safety_gap_s - _EPS:
                return self._send(SENT_HEARTBEAT, decision, ts)
            return self._drop(DROP_SPACING)

        # A change.
        previous_change_ts = self._last_change_ts
        self._track_episode(ts)
        quality = _quality(decision)
        strongest = self._episode_max_quality
        if self._episode_sent and quality >= self.cfg.active_ratio * strongest:
            self._strong_unsent_s += ts - previous_change_ts
        if not self._episode_sent:
            if ts - self._episode_start < self.cfg.onset_confirm_s - _EPS:
                return self._drop(DROP_UNCONFIRMED)
            why = SENT_ONSET
        elif quality > self.cfg.peak_factor * strongest:
            why = SENT_PEAK
        elif since >= self.cfg.active_refresh_s - _EPS and quality >= self.cfg.active_ratio * strongest:
            why = SENT_ACTIVE
        elif (since >= self.cfg.refresh_s - _EPS and quality >= self.cfg.weak_ratio * strongest
              and _iou(decision.region, self._last_sent_region) < self.cfg.duplicate_iou):
            why = SENT_REFRESH
        elif since >= self.cfg.max_silence_s - _EPS:
            why = SENT_HEARTBEAT  # a long episode of weak or near-duplicate change still gets a look now and then
        else:
            return self._drop(DROP_DUPLICATE)
        if since < self.cfg.min_spacing_s - _EPS:
            self._onset_held = why == SENT_ONSET
            return self._drop(DROP_SPACING)
        if self._tokens < 1.0 - _EPS or len(self._recent_sends) >= self.cfg.max_calls_per_min:
            self._onset_held = why == SENT_ONSET
            return self._drop(DROP_BUDGET)
        return self._send(why, decision, ts)

    def finish(self) -> BudgetDecision:
        """The source ended: should the last frame the gate passed, not sent yet, still go (as 'final')?

        Yes when a global change is still held, when an episode's confirmed onset is still held
        back, or when strong activity went unsent for ``min_spacing_s`` or more (see the module doc).
        Calling it again without new frames says no.
        """
        spaced = (self._last_ts or 0.0) - self._last_sent_ts >= self.cfg.min_spacing_s - _EPS
        due = self._unsent_change and (
            self._pending_global
            or (spaced and (self._onset_held or self._strong_unsent_s >= self.cfg.min_spacing_s - _EPS))
        )
        if not due:
            return BudgetDecision(False, DROP_DUPLICATE, self._tokens)
        return BudgetDecision(True, SENT_FINAL, self._tokens, self._spend(SENT_FINAL))

    # -- internals ---------------------------------------------------------------------

    def _refill(self, ts: float) -> None:
        if self._last_ts is not None and ts < self._last_ts - 1.0:
            # The source restarted (time jumped back): forget time-based state, keep the counters.
            self._last_sent_ts = -math.inf
            self._last_global_sent_ts = -math.inf
            self._last_change_ts = -math.inf
            self._recent_sends.clear()
        elif self._last_ts is not None and ts > self._last_ts:
            self._tokens = min(float(self.cfg.burst), self._tokens + (ts - self._last_ts) * self.cfg.max_calls_per_min / 60.0)
        self._last_ts = ts if self._last_ts is None else max(ts, self._last_ts - 1.0)
        while self._recent_sends and self._recent_sends[0] <= ts - 60.0:
            self._recent_sends.popleft()

    def _track_episode(self, ts: float) -> None:
        if ts - self._last_change_ts > self.cfg.quiet_s:
            self._episode_sent = False  # a new change episode starts
            self._onset_held = False
            self._episode_start = ts
            self._episode_max_quality = 0.0
        self._last_change_ts = ts

    def _spend(self, why: str) -> str | None:
        """Count one send and clear what it settles; returns the kind of a held global change it carries."""
        # Unbudgeted sends (first, global, heartbeat, safety, final) still spend a token when one is
        # there, so the budget over a minute stays close to max_calls_per_min; they never wait for one.
        self._tokens = max(0.0, self._tokens - 1.0)
        self.sent[why] += 1
        self._unsent_change = False
        self._onset_held = False
        self._strong_unsent_s = 0.0
        if why not in (SENT_GLOBAL, SENT_FINAL):
            return None
        kind = self._pending_global_kind
        self._pending_global, self._pending_global_kind = False, None
        return kind

    def _send(self, why: str, decision: GateDecision, ts: float) -> BudgetDecision:
        global_kind = self._spend(why)
        self._recent_sends.append(ts)
        self._last_sent_ts = ts
        if why == SENT_GLOBAL:
            self._last_global_sent_ts = ts
        if decision.reason is GateReason.CHANGE:
            self._episode_sent = True
            self._episode_max_quality = max(self._episode_max_quality, _quality(decision))
            self._last_sent_region = decision.region
        elif decision.reason is GateReason.GLOBAL_CHANGE or decision.reason is GateReason.FIRST:
            # A new view: the next change starts over with an onset, judged against nothing sent yet.
            self._episode_sent = False
            self._episode_max_quality = 0.0
            self._last_sent_region = None
        return BudgetDecision(True, why, self._tokens, global_kind)

    def _drop(self, why: str) -> BudgetDecision:
        self.dropped[why] += 1
        return BudgetDecision(False, why, self._tokens)
