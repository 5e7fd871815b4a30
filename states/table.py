"""The monitor's machine, declared: its states (with tags) and its transitions (with named conditions).

`STATE_TABLE` lists each state and what it means to the rest of the monitor; `TRANSITIONS` lists
each row: its name (what the decision log calls the move), the triggers that fire it, its sources,
its destination (None: stay, run the after-callbacks only), one named condition and what happens
after.  Rows of one trigger are tried in table order from the current state; the first whose
condition passes is taken.  A condition (``CameraMonitor._c_<name>``) returns a `Passed` record —
why, with the figures it used — or None; `_When` hands the record on in the event data, where the
`Transition` and the after-callbacks (``CameraMonitor._a_<name>``) read it.

This is the only module that imports ``transitions``.

Conditions:

* ``activity_seen`` (notice_activity, idle → observing): the newest report shows activity — an
  observation clause naming something present or moving at confidence ≥
  ``activity_min_confidence`` — or a safety flag no dismissal covers.  Opens an *activity event*.
* ``safety_flag_seen`` (raise_suspicion, observing/cooldown → suspicious): the newest report
  names a safety trigger (``safety_triggers`` ∪ ``tamper``; flags and observations, read once
  by the window: `pipeline.incidents.evidence`) that no dismissal covers.  ``model_error`` is no
  trigger: a failed analysis never alerts; it only *holds* the current state.
* ``safety_persists`` (persist_alert, suspicious → alert): a trigger is in ≥ k of the last n
  reports (``escalation.persistence_k``/``_n`` in force, the rule the policy escalates on), or
  ``tamper`` is on a frame the change gate read as a tamper change (`evidence.gate_corroborated`:
  an instant has one frame).  One alert event per persisting type.
* ``flags_quiet`` (calm_down, end_alert): no trigger for ``quiet_after_s``;
  ``activity_quiet`` (go_quiet, observing → idle): no activity for ``quiet_after_s``.
* ``cooldown_over_idle`` / ``cooldown_over_active`` (finish_cooldown): ``cooldown_s`` without
  flags → idle, or → observing while activity goes on.
* ``sent`` (send_to_teacher, any state but escalated → escalated): the runner sent a sequence to
  the teacher.  With ``safety=True`` the alert is raised at once, ``pending_review`` (alert first,
  explanation later); the verdict updates the same event.
* ``verdict_names_alert`` / ``verdict_calm`` (teacher_confirmed, teacher_unverified): → alert
  when the escalation or the teacher names a safety type (or an alert is open), else → observing.
  In alert, a verdict confirms (or leaves unverified) the alerts it concerns without a move.
* ``all_dismissed`` / ``no_alert_left`` / ``alert_goes_on`` (teacher_dismissed): a dismissal
  covers the frames the teacher saw, up to its last keyframe (`pipeline.incidents.verdicts`); it
  ends the alerts it concerns unless their type was seen after those frames (that evidence is a
  new question: the alert stands, pending, and the policy asks again).
* ``timed_out_alert`` / ``timed_out_calm`` (verdict_timeout): no verdict within
  ``verdict_timeout_s`` (60 s of source time) → alert (review ``unverified``) when an alert is
  pending or a trigger persists, else → observing.  A later verdict still updates its events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from transitions import EventData, Machine
from transitions.extensions.states import Tags, add_state_features

# pytransitions logs every callback at INFO, and a trigger a state has no row for (ignored by
# design: a verdict while idle) at WARNING; our own transition lines say what matters.
if logging.getLogger("transitions").level == logging.NOTSET:
    logging.getLogger("transitions").setLevel(logging.ERROR)

#: Each state and what it means to the rest of the monitor:
#: ``watching`` — activity opens an activity event and a failed analysis holds the activity timer;
#: ``flagging`` — a failed analysis holds the safety-flag timer too;
#: ``alerting`` — other flag types that persist get their own alert, and a type gone quiet ends;
#: ``quiet_by_machine`` — the activity event ends by the go_quiet transition, not on its own.
STATE_TABLE: tuple[dict[str, Any], ...] = (
    {"name": "idle", "tags": ["quiet_by_machine"]},
    {"name": "observing", "tags": ["watching", "quiet_by_machine"]},
    {"name": "suspicious", "tags": ["watching", "flagging"]},
    {"name": "alert", "tags": ["watching", "flagging", "alerting"]},
    {"name": "cooldown", "tags": ["watching"]},
    {"name": "escalated", "tags": ["watching", "flagging"]},
)
STATES: tuple[str, ...] = tuple(s["name"] for s in STATE_TABLE)

#: The frame triggers: ``analysed`` (``update``) and ``skipped`` (``tick``: a gate-skipped frame
#: shows nothing new, so it never notices activity).
FRAME = ("analysed", "skipped")
NOT_ESCALATED = ("idle", "observing", "suspicious", "alert", "cooldown")


@dataclass(frozen=True, slots=True)
class Row:
    """One transition: ``name`` (what the decision log calls it), the triggers that fire it, its
    sources and destination (None: stay, run ``after`` only), its condition and after-callbacks."""

    name: str
    triggers: tuple[str, ...]
    source: tuple[str, ...]
    dest: str | None
    condition: str
    after: tuple[str, ...] = ()


#: Rows of one trigger are tried in this order from the current state; the first whose
#: condition passes is taken.
TRANSITIONS: tuple[Row, ...] = (
    Row("notice_activity", ("analysed",), ("idle",), "observing", "activity_seen", ("open_activity",)),
    Row("raise_suspicion", FRAME, ("observing", "cooldown"), "suspicious", "safety_flag_seen", ("open_incident",)),
    Row("go_quiet", FRAME, ("observing",), "idle", "activity_quiet", ("went_idle",)),
    Row("persist_alert", FRAME, ("suspicious",), "alert", "safety_persists", ("open_persisting_alerts",)),
    Row("calm_down", FRAME, ("suspicious",), "observing", "flags_quiet", ("incident_over",)),
    Row("end_alert", FRAME, ("alert",), "cooldown", "flags_quiet", ("end_alerts",)),
    Row("finish_cooldown", FRAME, ("cooldown",), "idle", "cooldown_over_idle", ("went_idle",)),
    Row("finish_cooldown", FRAME, ("cooldown",), "observing", "cooldown_over_active", ("incident_over",)),
    Row("verdict_timeout", FRAME, ("escalated",), "alert", "timed_out_alert", ("unverified_by_timeout",)),
    Row("verdict_timeout", FRAME, ("escalated",), "observing", "timed_out_calm", ("incident_over",)),
    Row("send_to_teacher", ("send_to_teacher",), NOT_ESCALATED, "escalated", "sent", ("await_verdict",)),
    Row("teacher_confirmed", ("teacher_confirmed",), ("escalated", "idle", "observing", "suspicious", "cooldown"), "alert",
        "verdict_names_alert", ("confirm_alerts",)),
    Row("teacher_confirmed", ("teacher_confirmed",), ("escalated",), "observing", "verdict_calm", ("incident_over",)),
    Row("teacher_confirmed", ("teacher_confirmed",), ("alert",), None, "verdict_received", ("confirm_alerts",)),
    Row("teacher_dismissed", ("teacher_dismissed",), ("escalated",), "observing", "all_dismissed", ("incident_over",)),
    Row("teacher_dismissed", ("teacher_dismissed",), ("alert",), "observing", "no_alert_left", ("incident_over",)),
    Row("teacher_dismissed", ("teacher_dismissed",), ("escalated",), "alert", "alert_goes_on"),
    Row("teacher_unverified", ("teacher_unverified",), ("escalated",), "alert", "verdict_names_alert", ("unverify_alerts",)),
    Row("teacher_unverified", ("teacher_unverified",), ("escalated",), "observing", "verdict_calm", ("incident_over",)),
    Row("teacher_unverified", ("teacher_unverified",), ("alert",), None, "verdict_received", ("unverify_alerts",)),
)


@dataclass(frozen=True, slots=True)
class Passed:
    """A condition that held: why, with the figures it used (they become the `Transition`'s)."""

    reason: str
    figures: dict[str, Any] = field(default_factory=dict)


class _When:
    """A row's condition as ``transitions`` calls it: runs the named condition and, when it
    passes, hands its `Passed` record (and the row's name) on in the event data."""

    def __init__(self, row: Row) -> None:
        self.row = row

    def __call__(self, data: EventData) -> bool:
        passed: Passed | None = getattr(data.model, f"_c_{self.row.condition}")(data)
        if passed is None:
            return False
        data.kwargs["passed"] = passed
        data.kwargs["row"] = self.row.name
        return True


def _machine_transitions() -> list[dict[str, Any]]:
    return [{"trigger": trigger, "source": list(row.source), "dest": row.dest, "conditions": [_When(row)],
             "after": [f"_a_{name}" for name in row.after]}
            for row in TRANSITIONS for trigger in row.triggers]


@add_state_features(Tags)
class _TaggedMachine(Machine):
    """A ``transitions`` machine whose states carry `STATE_TABLE`'s tags."""


def build_machine(model: Any) -> Machine:
    """The machine on ``model`` (which keeps ``state`` and the ``_c_``/``_a_`` methods the rows name).
    A trigger a state has no row for is ignored (a verdict while idle changes nothing)."""
    return _TaggedMachine(model=model, states=[dict(s) for s in STATE_TABLE], initial="idle",
                          transitions=_machine_transitions(), send_event=True, auto_transitions=False,
                          ignore_invalid_triggers=True, before_state_change="_record_transition",
                          model_attribute="state")


def tags_of(machine: Machine, state: str) -> list[str]:
    return list(machine.get_state(state).tags)


__all__ = ["EventData", "FRAME", "NOT_ESCALATED", "Passed", "Row", "STATES", "STATE_TABLE", "TRANSITIONS", "build_machine",
           "tags_of"]
