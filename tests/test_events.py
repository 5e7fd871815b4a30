"""The event lifecycle (pipeline/incidents/events.py): ids, review moves, one line per change."""

from __future__ import annotations

import itertools
import json
import random
import re
from pathlib import Path

import pytest

from conftest import run_cli
from pipeline.config.escalation import EscalationConfig
from pipeline.config.states import StatesConfig
from pipeline.incidents.escalation import FixedThresholds, Thresholds
from pipeline.incidents.events import EventBook, EventIds, advance_review, fold
from pipeline.incidents.verdicts import Coverage
from pipeline.incidents.window import SlidingWindow
from pipeline.records import FrameReport, ReviewStatus, Verdict, VerdictKind
from states.monitor import CameraMonitor

Review = ReviewStatus
CAM = "cam1"
TRIGGERS = ["fire", "fall", "smoke"]


def report(t: float, flags: tuple[str, ...] = (), obs: tuple[str, ...] = ("person walking",)) -> FrameReport:
    return FrameReport(camera=CAM, frame_index=int(t * 10), timestamp=t, observations=obs, safety_flags=flags,
                       confidence=0.9, backend="test", model="m", prompt_version="p", latency_ms=1.0)


def monitor(seed: int | None = 0) -> tuple[SlidingWindow, CameraMonitor]:
    rule = Thresholds.from_config(EscalationConfig(safety_triggers=TRIGGERS, persistence_k=2, persistence_n=3))
    return SlidingWindow(CAM, 10.0), CameraMonitor(CAM, StatesConfig(), safety_triggers=TRIGGERS,
                                                   thresholds=FixedThresholds(rule),
                                                   rng=None if seed is None else random.Random(seed))


def verdict(kind: VerdictKind, escalation_id: str, flags: tuple[str, ...] = ()) -> Verdict:
    return Verdict(escalation_id, CAM, "inc", kind, (), flags, 0.9, f"teacher says {kind.value}", "test", "t", 1.0)


# --------------------------------------------------------------------------------------
# Ids
# --------------------------------------------------------------------------------------


def test_ids_are_frame_time_and_a_random_suffix_unique_across_runs() -> None:
    ids = EventIds(CAM, random.Random(1))
    first, second = ids.new(12.3456), ids.new(12.3456)
    assert re.fullmatch(rf"{CAM}-12346-[a-z2-7]{{6}}", first) and first != second
    # Two runs (or a restart) over the same video: the same times, never the same ids.
    runs = [[EventIds(CAM).new(t) for t in (0.0, 1.0, 2.0)] for _ in range(2)]
    assert not set(runs[0]) & set(runs[1])
    # Injected randomness makes them repeatable (tests, replays compared line by line).
    assert [EventIds(CAM, random.Random(7)).new(1.0) for _ in range(2)] == [EventIds(CAM, random.Random(7)).new(1.0)] * 2


# --------------------------------------------------------------------------------------
# Review moves
# --------------------------------------------------------------------------------------

ORDER = [Review.NOT_REVIEWED, Review.PENDING_REVIEW, Review.UNVERIFIED]
FINAL = [Review.DISMISSED, Review.CONFIRMED]


@pytest.mark.parametrize(("current", "proposed"), list(itertools.product(ORDER + FINAL, repeat=2)))
def test_a_review_never_goes_backwards(current: ReviewStatus, proposed: ReviewStatus) -> None:
    moved = advance_review(current, proposed)
    if current in FINAL:
        assert moved == current  # confirmed and dismissed are final
    elif proposed in FINAL or ORDER.index(proposed) > ORDER.index(current):
        assert moved == proposed
    else:
        assert moved == current


def test_confirmed_is_never_pending_again_nor_dismissed() -> None:
    book = EventBook(CAM, lambda: "alert", EventIds(CAM, random.Random(0)))
    ev = book.open_alert("fire", 1.0, "persisted", flags=(), peak=0.9)
    book.review(ev, Review.PENDING_REVIEW, "sent", escalation_id="e1")
    book.review(ev, Review.CONFIRMED, "teacher confirmed", escalation_id="e1", explanation="flames")
    book.review(ev, Review.PENDING_REVIEW, "sent again", escalation_id="e2")
    book.review(ev, Review.DISMISSED, "teacher dismissed", escalation_id="e2")
    assert [line.review for line in book.take()] == [Review.NOT_REVIEWED, Review.PENDING_REVIEW, Review.CONFIRMED]
    assert ev.review == Review.CONFIRMED and ev.escalation_ids == {"e1", "e2"}


# --------------------------------------------------------------------------------------
# One line per change, and the monitor through a frame
# --------------------------------------------------------------------------------------


def test_fold_writes_an_event_opened_and_changed_in_one_frame_once() -> None:
    book = EventBook(CAM, lambda: "alert", EventIds(CAM, random.Random(0)))
    ev = book.open_alert("fire", 1.0, "persisted", flags=(), peak=0.9)
    other = book.open_alert("smoke", 1.0, "persisted", flags=(), peak=0.9)
    book.review(ev, Review.PENDING_REVIEW, "sent", escalation_id="e1")
    book.end_alert("smoke", 1.0, "gone")
    lines = fold(book.take())
    assert [(line.id, line.phase, line.review) for line in lines] == [
        (ev.id, "new", Review.PENDING_REVIEW), (other.id, "new", Review.NOT_REVIEWED), (other.id, "end", Review.NOT_REVIEWED)]


def test_an_alert_sent_to_the_teacher_on_its_frame_is_pending_review_from_its_first_line() -> None:
    window, mon = monitor()
    mon.update(window.add(report(0.0, ("fire",))))
    raised = mon.update(window.add(report(1.0, ("fire",))))
    sent = mon.escalate("e1", "inc", "safety:fire", frozenset({"fire"}), 1.0, safety=True)
    alerts = [line for line in raised.then(sent).events if line.severity == "alert"]
    assert [(line.phase, line.review) for line in alerts] == [("new", Review.PENDING_REVIEW)]


def test_a_dismissal_ends_only_an_alert_whose_evidence_the_teacher_saw() -> None:
    window, mon = monitor()
    for t in (0.0, 1.0):
        mon.update(window.add(report(t, ("fire",))))
    mon.escalate("e1", "inc", "safety:fire", frozenset({"fire"}), 1.0, safety=True)
    [alert] = list(mon.book.alerts.values())
    # The student still sees fire after the teacher's last keyframe (t=1): that is not what it saw.
    for t in (2.0, 3.0):
        mon.update(window.add(report(t, ("fire",))))
    out = mon.apply_verdict(verdict(VerdictKind.DISMISSED, "e1"), 3.0,
                            Coverage(frozenset({"fire"}), until=1.0, strength=0.9, escalation_id="e1"))
    assert mon.state == "alert" and "fire" in mon.book.alerts
    assert not [line for line in out.events if line.id == alert.id and line.phase == "end"]
    assert mon.book.alerts["fire"].review == Review.PENDING_REVIEW  # asked again, not erased
    # A dismissal that saw everything ends it.
    mon.escalate("e2", "inc", "safety:fire", frozenset({"fire"}), 3.0, safety=True)
    out = mon.apply_verdict(verdict(VerdictKind.DISMISSED, "e2"), 3.0,
                            Coverage(frozenset({"fire"}), until=3.0, strength=0.9, escalation_id="e2"))
    assert [(line.phase, line.review) for line in out.events if line.id == alert.id] == [
        ("update", Review.DISMISSED), ("end", Review.DISMISSED)]
    assert mon.state == "observing"


# --------------------------------------------------------------------------------------
# A whole run: the summary counts what the log says
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_summary_counts_events_by_type_as_the_log_does_and_ids_never_repeat_across_runs(tmp_path: Path) -> None:
    ids: list[set[str]] = []
    for run in ("a", "b"):
        out = tmp_path / run
        proc = run_cli("demo", "--out", str(out), "--quiet", "--student", "offline", "--teacher", "offline")
        assert proc.returncode == 0, proc.stderr
        lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        new = [e for e in lines if e["phase"] == "new"]
        counted: dict[str, int] = {}
        for e in new:
            counted[e["type"]] = counted.get(e["type"], 0) + 1
        summary = json.loads((out / "summary.json").read_text())
        assert summary["events_by_type"] == counted
        # Each event opens once, keeps its type, and its review only moves forward.
        by_id: dict[str, list[dict]] = {}
        for e in lines:
            by_id.setdefault(e["id"], []).append(e)
        for history in by_id.values():
            assert [e["phase"] for e in history].count("new") == 1 and len({e["type"] for e in history}) == 1
            reviews = [ReviewStatus(e["review"]) for e in history]
            assert all(advance_review(a, b) == b for a, b in zip(reviews, reviews[1:]))
        # The demo's fall is raised on the frame it goes to the teacher: its first line says so.
        assert next(e for e in new if e["type"] == "fall")["review"] == "pending_review"
        ids.append(set(by_id))
    assert not ids[0] & ids[1]


def test_a_confirmation_that_names_one_of_two_asked_types_ends_the_other_alert() -> None:
    window, mon = monitor()
    mon.update(window.add(report(0.0, ("fall", "smoke"))))
    mon.update(window.add(report(0.5, ("fall", "smoke"))))
    mon.escalate("e1", "inc", "safety:fall", frozenset({"fall", "smoke"}), 0.5, safety=True)
    assert set(mon.book.alerts) == {"fall", "smoke"}
    unnamed = Coverage(frozenset({"fall"}), until=0.5, strength=0.9, escalation_id="e1")
    out = mon.apply_verdict(verdict(VerdictKind.CONFIRMED, "e1", ("smoke",)), 0.5, unnamed)
    by_type = {e.type: e for e in out.events}
    assert by_type["fall"].phase == "end" and by_type["fall"].review == Review.DISMISSED
    assert set(mon.book.alerts) == {"smoke"} and mon.book.alerts["smoke"].review == Review.CONFIRMED
    # Evidence after what the teacher saw is a new question: the fall counts again from there.
    mon.update(window.add(report(1.0, ("fall", "smoke"))))
    out = mon.update(window.add(report(1.5, ("fall", "smoke"))))
    assert "fall" in mon.book.alerts
