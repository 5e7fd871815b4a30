"""The decision log (``decisions.jsonl``): every line a typed record, one writer, one reader.

Each record says why the program did something — a frame's routing decision, an escalation and
what the queue did with it, a verdict, a state transition, a threshold change, a shed, a backend
switch, a live-source change, a reload, a notice, the summary.  `DecisionLog.write` is the only
writer; `read_decisions` / `decision_from_line` / `decision_from_json` the only reader (the evaluation
harness and the review page's index read through it).  The JSON keys are the documented ones (README, docs/EVALUATION.md):
a record's ``to_json`` writes them, ``from_json`` reads them back into the same record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator, Protocol

from pipeline.records import Transition
from pipeline.sinks.files import JsonlWriter

log = logging.getLogger("edgewatch.decisions")


class DecisionRecord(Protocol):
    """What the writer needs of a record: its kind and its JSON line."""

    kind: ClassVar[str]

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class _Line:
    """Base of the records here: fields are the JSON keys, in order, after ``kind``.

    ``_renamed`` maps a field to its JSON key where the key is not a Python name (``from``)."""

    kind: ClassVar[str] = ""
    _renamed: ClassVar[dict[str, str]] = {}
    _optional: ClassVar[frozenset[str]] = frozenset()
    """Fields left out of the line when None (the key is absent rather than null)."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in self._optional:
                continue
            out[self._renamed.get(f.name, f.name)] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "_Line":
        return cls(**{f.name: data.get(cls._renamed.get(f.name, f.name)) for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class FrameDecision(_Line):
    """The policy's decision on one analysed frame, with the student's report and the thresholds in force."""

    kind: ClassVar[str] = "decision"
    _optional: ClassVar[frozenset[str]] = frozenset({"gate_hint"})
    camera: str
    t: float
    frame: int
    escalate: bool
    reason: str
    priority: str | None
    flags: list[str]
    thresholds: dict[str, Any]
    queue_depth: int
    student: dict[str, Any]
    gate_hint: str | None = None
    """The gate's reading of a whole-view change (tamper / lighting_change): the student sees one frame
    and cannot know the camera moved; the gate compared it with the one before."""


@dataclass(frozen=True, slots=True)
class EscalationSent(_Line):
    """A sequence sent to the teacher, and what the queue did with it (queued, merged, shed ...)."""

    kind: ClassVar[str] = "escalation"
    id: str
    camera: str
    t: float
    reason: str
    priority: str | None
    incident_id: str
    keyframes: list[float]
    queue: str
    into: str | None
    shed: str | None
    queue_reason: str | None


@dataclass(frozen=True, slots=True)
class VerdictReceived(_Line):
    """The teacher's verdict on an escalation (``verdict`` holds the `Verdict` record's JSON)."""

    kind: ClassVar[str] = "verdict"
    t: float
    wait_s: float
    service_s: float
    verdict: dict[str, Any] = field(default_factory=dict)
    covers: dict[str, Any] | None = None
    """A dismissal's coverage (`verdicts.Coverage` JSON): the flags and frames it speaks for."""

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "t": self.t, "wait_s": self.wait_s, "service_s": self.service_s, **self.verdict,
                **({"covers": self.covers} if self.covers is not None else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "VerdictReceived":
        rest = {k: v for k, v in data.items() if k not in ("kind", "t", "wait_s", "service_s", "covers")}
        return cls(t=data.get("t"), wait_s=data.get("wait_s"), service_s=data.get("service_s"), verdict=rest,
                   covers=data.get("covers"))

    @property
    def escalation_id(self) -> str | None:
        return self.verdict.get("escalation_id")

    @property
    def camera(self) -> str | None:
        return self.verdict.get("camera")


@dataclass(frozen=True, slots=True)
class Shed(_Line):
    """An escalation the teacher queue dropped, with its reason (never a safety one but at shutdown)."""

    kind: ClassVar[str] = "shed"
    escalation_id: str
    camera: str
    incident_id: str
    priority: Any
    reason: str
    detail: str
    at_s: float
    created_at: float

    @classmethod
    def of(cls, record: Any) -> "Shed":
        """The line of a `ShedRecord` (pipeline.teacher.queue)."""
        return cls(escalation_id=record.escalation_id, camera=record.camera, incident_id=record.incident_id,
                   priority=int(record.priority), reason=record.reason, detail=record.detail, at_s=record.at_s,
                   created_at=record.created_at)


@dataclass(frozen=True, slots=True)
class StateTransition(_Line):
    """A state change of a camera's monitor, with the guard's reason and figures."""

    kind: ClassVar[str] = "transition"
    _renamed: ClassVar[dict[str, str]] = {"source": "from", "dest": "to"}
    camera: str
    t: float
    source: str
    dest: str
    trigger: str
    reason: str
    figures: dict[str, Any]

    @classmethod
    def of(cls, tr: Transition) -> "StateTransition":
        return cls(camera=tr.camera, t=round(tr.timestamp, 3), source=tr.source, dest=tr.dest, trigger=tr.trigger,
                   reason=tr.reason, figures=tr.figures)


@dataclass(frozen=True, slots=True)
class BackendSwitch(_Line):
    """The student's circuit breaker switched backend (Ollama ↔ offline)."""

    kind: ClassVar[str] = "backend_switch"
    _renamed: ClassVar[dict[str, str]] = {"from_backend": "from", "to_backend": "to"}
    camera: str
    t: float
    from_backend: str
    to_backend: str
    reason: str


@dataclass(frozen=True, slots=True)
class SourceChange(_Line):
    """A live source was lost, restored or went stale."""

    kind: ClassVar[str] = "source"
    event: str
    camera: str
    t: float
    wall: float
    detail: str


@dataclass(frozen=True, slots=True)
class ThresholdChangeLine(_Line):
    """A value in force changed (cause: profile, load, fp_feedback or reload)."""

    kind: ClassVar[str] = "threshold_change"
    camera: str
    t: float
    name: str
    old: Any
    new: Any
    cause: str
    period: str
    figures: dict[str, Any]

    @classmethod
    def of(cls, change: Any) -> "ThresholdChangeLine":
        """The line of a `ThresholdChange` (pipeline.incidents.thresholds)."""
        return cls(camera=change.camera, t=round(change.timestamp, 3), name=change.name, old=change.old, new=change.new,
                   cause=change.cause, period=change.period, figures=change.figures)


@dataclass(frozen=True, slots=True)
class Reload(_Line):
    """SIGHUP took effect for a camera: the thresholds now in force."""

    kind: ClassVar[str] = "reload"
    camera: str
    t: float
    thresholds: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CalibrationChange(_Line):
    """A new calibration map came into force."""

    kind: ClassVar[str] = "calibration"
    version: str
    examples: int
    groups: list[str]
    applied: bool


@dataclass(frozen=True, slots=True)
class Notice(_Line):
    """A line the user must see (which backend plays which role, a fallback)."""

    kind: ClassVar[str] = "notice"
    message: str


@dataclass(frozen=True, slots=True)
class RunStarted(_Line):
    """The first line of each run: its id (runs appended to one log with --append stay apart)."""

    kind: ClassVar[str] = "run"
    run_id: str
    wall: float


@dataclass(frozen=True, slots=True)
class RunSummaryLine(_Line):
    """The run's summary for one camera (``summary`` holds `RunSummary.to_json`)."""

    kind: ClassVar[str] = "summary"
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.summary}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunSummaryLine":
        return cls(summary={k: v for k, v in data.items() if k != "kind"})


RECORDS: dict[str, type[_Line]] = {cls.kind: cls for cls in (
    FrameDecision, EscalationSent, VerdictReceived, Shed, StateTransition, BackendSwitch, SourceChange,
    ThresholdChangeLine, Reload, CalibrationChange, Notice, RunStarted, RunSummaryLine,
)}


def decision_from_json(data: Any) -> _Line | None:
    """The typed record of one decoded line; None (logged) for a line of an unknown kind or shape."""
    if not isinstance(data, dict):
        return None
    cls = RECORDS.get(str(data.get("kind")))
    if cls is None:
        log.debug("decision line of unknown kind %r skipped", data.get("kind"))
        return None
    try:
        return cls.from_json(data)
    except (TypeError, ValueError) as exc:
        log.debug("decision line of kind %s not readable: %s", cls.kind, exc)
        return None


#: Any record of the decision log, as the reader returns it.
DecisionLine = _Line


def decision_from_line(line: str | bytes) -> DecisionLine | None:
    """The typed record of one line of the log (the review index reads lines at byte offsets);
    None for a line that is not JSON or not a known record."""
    try:
        return decision_from_json(json.loads(line))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_decisions(path: Path) -> Iterator[DecisionLine]:
    """Every readable record of a decision log, in order (a partial last line is skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    for line in text.splitlines():
        if not line.strip():
            continue
        record = decision_from_line(line)
        if record is not None:
            yield record


class DecisionLog:
    """The one writer of ``decisions.jsonl``."""

    def __init__(self, path: Path) -> None:
        self._writer = JsonlWriter(path)

    @property
    def writer(self) -> JsonlWriter:
        """The file underneath (its counts of lines held in memory or lost on a full disk)."""
        return self._writer

    def write(self, record: DecisionRecord) -> None:
        self._writer.write(record.to_json())

    def close(self) -> None:
        self._writer.close()
