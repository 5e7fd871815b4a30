"""An index of a run's ``events.jsonl`` and ``decisions.jsonl``, so pages read 10,000 events fast.

The logs stay the truth: the index (``OUT/review-index.sqlite``, SQLite) holds, per event, the
fields the list filters and sorts on and the byte offset of its newest line; per decision line,
its kind, camera, time and escalation id with its offset.  It is refreshed incrementally from
the byte offset it reached (only complete lines), and rebuilt when a log was truncated or
replaced (its first line changed).  Human verdicts come from the agreement store and are copied
into the ``status`` column so the list can filter on them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.sinks.decision_log import DecisionLine, EscalationSent, VerdictReceived, decision_from_line

log = logging.getLogger("edgewatch.web.index")

INDEX_NAME = "review-index.sqlite"
SCHEMA_VERSION = "1"
#: Human verdicts as shown and filtered (the agreement store keeps them as confirmed / dismissed).
HUMAN_STATUS = {"dismissed": "false_alarm", "confirmed": "confirmed_by_person"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, seq INTEGER NOT NULL, camera TEXT NOT NULL, type TEXT NOT NULL, severity TEXT NOT NULL,
    phase TEXT NOT NULL, review TEXT NOT NULL, status TEXT NOT NULL, start REAL NOT NULL, end REAL,
    peak REAL NOT NULL, snapshot TEXT, line_offset INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_seq ON events (seq);
CREATE INDEX IF NOT EXISTS events_camera ON events (camera, seq);
CREATE INDEX IF NOT EXISTS events_type ON events (type, seq);
CREATE INDEX IF NOT EXISTS events_severity ON events (severity, seq);
CREATE INDEX IF NOT EXISTS events_status ON events (status, seq);
CREATE INDEX IF NOT EXISTS events_start ON events (start);
CREATE TABLE IF NOT EXISTS human (event_id TEXT PRIMARY KEY, verdict TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    line_offset INTEGER PRIMARY KEY, kind TEXT NOT NULL, camera TEXT, t REAL, ref TEXT
);
CREATE INDEX IF NOT EXISTS decisions_camera_t ON decisions (camera, kind, t);
CREATE INDEX IF NOT EXISTS decisions_ref ON decisions (ref);
"""
_LOGS = ("events.jsonl", "decisions.jsonl")


@dataclass(frozen=True, slots=True)
class EventFilter:
    camera: str | None = None
    type: str | None = None
    severity: str | None = None
    status: str | None = None
    """A teacher review value, 'false_alarm', 'confirmed_by_person', or 'needs_person' (no human verdict yet)."""
    start_from: float | None = None
    start_to: float | None = None
    """Source seconds: events that started in [start_from, start_to]."""


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    camera: str
    type: str
    severity: str
    phase: str
    review: str
    status: str
    start: float
    end: float | None
    peak_confidence: float
    snapshot: str | None


@dataclass(frozen=True, slots=True)
class EventPage:
    rows: tuple[EventRow, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


class RunIndex:
    """Safe to share between threads (one lock around the one connection)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self._lock = threading.RLock()
        self.bad_lines = 0
        path = self.out_dir / INDEX_NAME
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
        except (sqlite3.Error, OSError) as exc:  # a read-only run folder: index in memory instead
            log.warning("review index %s cannot be written (%s): indexing in memory", path, exc)
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            self._db.executescript(_SCHEMA)
            if self._meta("schema") != SCHEMA_VERSION:
                self._clear()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- refreshing ---------------------------------------------------------------------------

    def refresh(self) -> None:
        """Index the lines appended since the last refresh (rebuild when a log was replaced)."""
        with self._lock:
            for name in _LOGS:
                self._refresh_log(name)

    def sync_human(self, verdicts: Mapping[str, str], version: int) -> None:
        """Copy the agreement store's human verdicts (event id -> confirmed/dismissed) when they changed."""
        with self._lock:
            if self._meta("human_version") == str(version):
                return
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM human")
            self._db.executemany("INSERT INTO human (event_id, verdict) VALUES (?, ?)", verdicts.items())
            self._db.execute("UPDATE events SET status = review WHERE status IN (?, ?)", tuple(HUMAN_STATUS.values()))
            self._apply_human()
            self._set_meta("human_version", str(version))
            self._db.execute("COMMIT")

    def _apply_human(self) -> None:
        self._db.execute(
            "UPDATE events SET status = CASE human.verdict WHEN 'dismissed' THEN ? ELSE ? END "
            "FROM human WHERE human.event_id = events.id", (HUMAN_STATUS["dismissed"], HUMAN_STATUS["confirmed"]))

    def _refresh_log(self, name: str) -> None:
        path = self.out_dir / name
        offset = int(self._meta(f"{name}:offset") or 0)
        try:
            with path.open("rb") as fh:
                head = hashlib.sha1(fh.readline(4096)).hexdigest()
                size = path.stat().st_size
                if offset and (size < offset or self._meta(f"{name}:head") != head):
                    log.info("review index: %s was replaced; rebuilding", name)
                    self._clear()
                    return self.refresh()
                if size == offset:
                    return None
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            if offset:
                self._clear()
            return None
        end = data.rfind(b"\n") + 1  # a partial last line waits for its newline
        if end == 0:
            return None
        self._db.execute("BEGIN")
        try:
            seq = int(self._meta("events:seq") or 0)
            pos = offset
            for raw in data[:end].splitlines(keepends=True):
                line_offset, pos = pos, pos + len(raw)
                if name != "events.jsonl":
                    record = decision_from_line(raw)
                    if record is None:
                        self.bad_lines += 1
                    else:
                        self._index_decision(record, line_offset)
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    self.bad_lines += 1
                    continue
                if not isinstance(obj, dict):
                    self.bad_lines += 1
                    continue
                seq += 1
                self._index_event(obj, line_offset, seq)
            if name == "events.jsonl":
                self._set_meta("events:seq", str(seq))
                self._apply_human()
            self._set_meta(f"{name}:offset", str(offset + end))
            self._set_meta(f"{name}:head", head)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return None

    def _index_event(self, obj: dict[str, Any], line_offset: int, seq: int) -> None:
        try:
            row = (str(obj["id"]), seq, str(obj["camera"]), str(obj["type"]), str(obj.get("severity", "")),
                   str(obj.get("phase", "")), str(obj.get("review", "")), str(obj.get("review", "")),
                   float(obj["start"]), None if obj.get("end") is None else float(obj["end"]),
                   float(obj.get("peak_confidence") or 0.0), obj.get("snapshot"), line_offset)
        except (KeyError, TypeError, ValueError):
            self.bad_lines += 1
            return
        self._db.execute(
            "INSERT INTO events (id, seq, camera, type, severity, phase, review, status, start, end, peak, snapshot, line_offset) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET phase = excluded.phase, "
            "review = excluded.review, status = excluded.status, end = excluded.end, peak = excluded.peak, "
            "snapshot = COALESCE(excluded.snapshot, events.snapshot), line_offset = excluded.line_offset", row)

    def _index_decision(self, record: DecisionLine, line_offset: int) -> None:
        ref = record.id if isinstance(record, EscalationSent) else record.escalation_id if isinstance(record, VerdictReceived) else None
        t = getattr(record, "t", None)
        self._db.execute("INSERT OR REPLACE INTO decisions (line_offset, kind, camera, t, ref) VALUES (?, ?, ?, ?, ?)",
                         (line_offset, record.kind, getattr(record, "camera", None), float(t) if isinstance(t, (int, float)) else None,
                          ref))

    def _clear(self) -> None:
        self._db.executescript("DELETE FROM events; DELETE FROM decisions; DELETE FROM meta;")
        self._set_meta("schema", SCHEMA_VERSION)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- reading -----------------------------------------------------------------------------

    def events(self, flt: EventFilter, page: int = 1, per_page: int = 50) -> EventPage:
        """One page of events, newest first (by first appearance in the log)."""
        where, args = [], []
        for column in ("camera", "type", "severity"):
            value = getattr(flt, column)
            if value:
                where.append(f"{column} = ?")
                args.append(value)
        if flt.status == "needs_person":
            where.append("status NOT IN (?, ?)")
            args += list(HUMAN_STATUS.values())
        elif flt.status:
            where.append("status = ?")
            args.append(flt.status)
        if flt.start_from is not None:
            where.append("start >= ?")
            args.append(flt.start_from)
        if flt.start_to is not None:
            where.append("start <= ?")
            args.append(flt.start_to)
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        page = max(1, page)
        with self._lock:
            (total,) = self._db.execute(f"SELECT COUNT(*) FROM events {clause}", args).fetchone()
            rows = self._db.execute(
                "SELECT id, camera, type, severity, phase, review, status, start, end, peak, snapshot FROM events "
                f"{clause} ORDER BY seq DESC LIMIT ? OFFSET ?", [*args, per_page, (page - 1) * per_page]).fetchall()
        return EventPage(tuple(EventRow(*r) for r in rows), int(total), page, per_page)

    def distinct(self, column: str) -> list[str]:
        if column not in ("camera", "type", "severity"):
            raise ValueError(column)
        with self._lock:
            return [r[0] for r in self._db.execute(f"SELECT DISTINCT {column} FROM events ORDER BY {column}")]

    def event(self, event_id: str) -> dict[str, Any] | None:
        """The event's newest line, as written."""
        with self._lock:
            row = self._db.execute("SELECT line_offset FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else self._read_line("events.jsonl", int(row[0]))

    def latest_event(self, camera: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT line_offset FROM events WHERE camera = ? ORDER BY seq DESC LIMIT 1",
                                   (camera,)).fetchone()
        return None if row is None else self._read_line("events.jsonl", int(row[0]))

    def decisions_by_ref(self, ref: str) -> list[DecisionLine]:
        """The escalation and verdict lines of one escalation id."""
        with self._lock:
            offsets = [r[0] for r in self._db.execute("SELECT line_offset FROM decisions WHERE ref = ? ORDER BY line_offset", (ref,))]
        return self._read_decisions(offsets)

    def decisions(self, camera: str, kinds: Iterable[str], t_from: float, t_to: float | None,
                  limit: int = 400) -> list[DecisionLine]:
        """Decision-log lines of one camera and kinds with t in [t_from, t_to], in log order (at most ``limit``)."""
        kinds = list(kinds)
        marks = ",".join("?" * len(kinds))
        upper = "AND t <= ?" if t_to is not None else ""
        args: list[Any] = [camera, *kinds, t_from] + ([t_to] if t_to is not None else []) + [limit]
        with self._lock:
            offsets = [r[0] for r in self._db.execute(
                f"SELECT line_offset FROM decisions WHERE camera = ? AND kind IN ({marks}) AND t >= ? {upper} "
                "ORDER BY line_offset LIMIT ?", args)]
        return self._read_decisions(offsets)

    def last_decision(self, camera: str, kind: str) -> DecisionLine | None:
        with self._lock:
            row = self._db.execute("SELECT MAX(line_offset) FROM decisions WHERE camera = ? AND kind = ?",
                                   (camera, kind)).fetchone()
        if row is None or row[0] is None:
            return None
        found = self._read_decisions([int(row[0])])
        return found[0] if found else None

    def _read_line(self, name: str, offset: int) -> dict[str, Any] | None:
        lines = self._read_lines(name, [offset])
        return lines[0] if lines else None

    def _read_lines(self, name: str, offsets: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for raw in self._raw_lines(name, offsets):
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def _read_decisions(self, offsets: list[int]) -> list[DecisionLine]:
        """The decision-log records at ``offsets``, read by the log's one reader."""
        return [r for raw in self._raw_lines("decisions.jsonl", offsets) for r in [decision_from_line(raw)] if r is not None]

    def _raw_lines(self, name: str, offsets: list[int]) -> list[bytes]:
        out: list[bytes] = []
        if not offsets:
            return out
        try:
            with (self.out_dir / name).open("rb") as fh:
                for offset in offsets:
                    fh.seek(offset)
                    out.append(fh.readline())
        except OSError as exc:
            log.warning("review index: cannot read %s: %s", name, exc)
        return out
