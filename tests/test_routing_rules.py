"""The routing rules issue 17 added: an owed re-ask is asked when due, unanswered evidence is asked
when the source ends, a confirmed type is not asked again while its evidence goes on."""

from __future__ import annotations

from pipeline.incidents.escalation import EscalationPolicy
from pipeline.incidents.verdicts import Coverage
from test_escalation import CALM_QUEUE, escalated_at, report, thresholds, window_stats


def _dismissing_run(policy: EscalationPolicy, reports: list) -> list:
    """Replay ``reports``; the teacher dismisses every question, having seen up to the newest frame."""
    decisions = []
    for i, rep in enumerate(reports):
        decisions.append(policy.evaluate(window_stats(reports[: i + 1]), CALM_QUEUE))
        if decisions[-1].escalate:
            policy.cover(Coverage(frozenset(decisions[-1].flags), until=rep.timestamp, strength=0.9))
    return decisions


def test_a_reask_the_rate_limit_held_back_is_asked_when_due_even_after_the_evidence_stops() -> None:
    # Dismissed at t=1; the student flags the fall once more at t=2 (1 s later: the 4 s limit holds),
    # then the burst ends.  The question is owed, and asked at t=5.
    reports = [report(0, ["fall"]), report(1, ["fall"]), report(2, ["fall"]), report(3), report(4), report(5), report(6)]
    decisions = _dismissing_run(EscalationPolicy(thresholds(reask_after_s=4.0)), reports)
    assert escalated_at(decisions) == [1, 5]
    assert decisions[2].reason == "reask_wait" and decisions[5].reason == "safety:fall"
    # Without the rule the evidence that stopped persisting is never asked.
    dropped = _dismissing_run(EscalationPolicy(thresholds(reask_after_s=4.0, reask_when_due=False)), reports)
    assert escalated_at(dropped) == [1]


def test_an_owed_question_lapses_when_its_evidence_leaves_the_window() -> None:
    reports = [report(0, ["fall"]), report(1, ["fall"]), report(2, ["fall"])] + [report(t) for t in range(3, 30)]
    decisions = _dismissing_run(EscalationPolicy(thresholds(reask_after_s=20.0)), reports)
    assert escalated_at(decisions) == [1]  # by t=21 the t=2 frame is out of the 10 s window: nothing left to ask


def test_unanswered_evidence_is_asked_when_the_source_ends() -> None:
    # A tamper flag on a clip's last (and only) frame never persists: the end asks it.
    stats = window_stats([report(0, ["fire"])])
    policy = EscalationPolicy(thresholds())
    assert not policy.evaluate(stats, CALM_QUEUE).escalate
    last = policy.at_end(stats, CALM_QUEUE)
    assert last.escalate and last.reason == "safety:fire" and last.flags == {"fire"}
    off = EscalationPolicy(thresholds(ask_at_end=False))
    off.evaluate(stats, CALM_QUEUE)
    assert not off.at_end(stats, CALM_QUEUE).escalate


def test_the_end_asks_nothing_answered_and_nothing_but_safety() -> None:
    reports = [report(0, ["fall"]), report(1, ["fall"])]
    policy = EscalationPolicy(thresholds(audit_every=1))
    for i in range(len(reports)):
        policy.evaluate(window_stats(reports[: i + 1]), CALM_QUEUE)
    policy.cover(Coverage(frozenset({"fall"}), until=1.0, strength=0.9))
    assert not policy.at_end(window_stats(reports), CALM_QUEUE).escalate  # the teacher saw both frames
    calm = EscalationPolicy(thresholds(audit_every=1))
    assert not calm.at_end(window_stats([report(0)]), CALM_QUEUE).escalate  # a due audit is no last question


def test_a_confirmed_type_is_not_asked_again_while_its_evidence_goes_on() -> None:
    fire = [report(t, ["fire"]) for t in range(22)]
    held = EscalationPolicy(thresholds())
    asked = []
    for i in range(len(fire)):
        d = held.evaluate(window_stats(fire[: i + 1]), CALM_QUEUE)
        asked.append(d)
        if d.escalate:
            held.confirm(frozenset({"fire"}))
    assert escalated_at(asked) == [1]
    assert asked[12].reason == "confirmed_ongoing"
    # Without the rule the cool-off (the window, 10 s) re-asks the same fire.
    again = [EscalationPolicy(thresholds(hold_confirmed=False))]
    decisions = []
    for i in range(len(fire)):
        decisions.append(again[0].evaluate(window_stats(fire[: i + 1]), CALM_QUEUE))
        if decisions[-1].escalate:
            again[0].confirm(frozenset({"fire"}))
    assert escalated_at(decisions) == [1, 11, 21]


def test_a_new_onset_rearms_a_confirmed_type() -> None:
    reports = [report(0, ["fall"]), report(1, ["fall"]), report(2), report(3), report(4), report(5, ["fall"]),
               report(6, ["fall"])]
    policy = EscalationPolicy(thresholds())
    decisions = []
    for i in range(len(reports)):
        decisions.append(policy.evaluate(window_stats(reports[: i + 1]), CALM_QUEUE))
        if decisions[-1].escalate:
            policy.confirm(frozenset({"fall"}))
    assert escalated_at(decisions) == [1, 6]  # a fall again after 3 s without one is a new question
