"""The decision log: typed records, one writer, one reader — every kind the runner writes reads back
into the same record, and a run's log is read whole by `read_decisions`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.sinks.decision_log import (
    RECORDS,
    BackendSwitch,
    CalibrationChange,
    DecisionLog,
    EscalationSent,
    FrameDecision,
    Notice,
    Reload,
    RunStarted,
    RunSummaryLine,
    Shed,
    SourceChange,
    StateTransition,
    ThresholdChangeLine,
    VerdictReceived,
    decision_from_json,
    read_decisions,
)

SAMPLES = [
    FrameDecision(camera="c", t=1.0, frame=2, escalate=False, reason="calm", priority=None, flags=[], thresholds={"min_confidence": 0.7},
                  queue_depth=0, student={"confidence": 0.9}),
    FrameDecision(camera="c", t=1.5, frame=3, escalate=True, reason="scene_change", priority="SCENE_CHANGE", flags=["tamper"],
                  thresholds={}, queue_depth=1, student={}, gate_hint="tamper"),
    EscalationSent(id="e1", camera="c", t=1.5, reason="safety:fire", priority="SAFETY", incident_id="i1", keyframes=[0.5, 1.0],
                   queue="queued", into=None, shed=None, queue_reason=None),
    VerdictReceived(t=2.0, wait_s=0.1, service_s=0.2, verdict={"escalation_id": "e1", "verdict": "confirmed"}),
    Shed(escalation_id="e2", camera="c", incident_id="i2", priority=1, reason="displaced", detail="x", at_s=3.0, created_at=2.5),
    StateTransition(camera="c", t=1.0, source="idle", dest="observing", trigger="notice_activity", reason="r", figures={"a": 1}),
    BackendSwitch(camera="c", t=4.0, from_backend="ollama", to_backend="offline", reason="breaker open"),
    SourceChange(event="source_lost", camera="c", t=5.0, wall=123.0, detail="read failed"),
    ThresholdChangeLine(camera="c", t=6.0, name="min_confidence", old=0.7, new=0.6, cause="reload", period="default", figures={}),
    Reload(camera="c", t=6.0, thresholds={"min_confidence": 0.6}),
    CalibrationChange(version="cal/20-abc", examples=20, groups=["fire"], applied=False),
    Notice(message="student: offline"),
    RunStarted(run_id="20260101T000000Z-abc123", wall=1767225600.0),
    RunSummaryLine(summary={"camera": "c", "frames_read": 10}),
]


def test_every_kind_has_a_sample() -> None:
    assert {s.kind for s in SAMPLES} == set(RECORDS)


@pytest.mark.parametrize("record", SAMPLES, ids=lambda r: f"{r.kind}")
def test_a_record_reads_back_as_itself(record) -> None:  # noqa: ANN001
    line = json.loads(json.dumps(record.to_json()))
    assert line["kind"] == record.kind
    assert decision_from_json(line) == record


def test_documented_keys_are_kept() -> None:
    transition = StateTransition(camera="c", t=1.0, source="idle", dest="observing", trigger="x", reason="r", figures={})
    assert {"from", "to"} <= set(transition.to_json())
    assert "gate_hint" not in SAMPLES[0].to_json() and SAMPLES[1].to_json()["gate_hint"] == "tamper"
    assert SAMPLES[3].to_json()["escalation_id"] == "e1" and SAMPLES[3].escalation_id == "e1"


def test_one_writer_one_reader_and_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "decisions.jsonl"
    log = DecisionLog(path)
    for record in SAMPLES:
        log.write(record)
    log.close()
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"kind": "decision", "camera": "c", "t": 9')  # a run killed mid-line
    assert list(read_decisions(path)) == SAMPLES


def test_unknown_kinds_are_skipped_not_fatal(tmp_path: Path) -> None:
    assert decision_from_json({"kind": "from_the_future", "x": 1}) is None
    assert decision_from_json(["not", "a", "dict"]) is None
    assert list(read_decisions(tmp_path / "missing.jsonl")) == []
