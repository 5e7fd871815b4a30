"""The agreement store: every teacher verdict kept as a labelled example (SQLite).

One **record** per reviewed escalation or audit: the student's reports (its timeline, with
the *raw* confidence the student gave), the teacher's verdict, the keyframes as JPEG files
(written in ``<store>-frames/`` beside the database and referenced by relative path), the
skill (prompt) version and the thresholds in force, and the calibration map's version.

Durability: the database runs in WAL mode and each record is one transaction, so a process
killed mid-write leaves either the whole record or none of it.  Keyframe files are written
(atomically, via a temporary name) *before* the transaction; a kill between the two leaves
unreferenced files, which `AgreementStore.open` sweeps.

Bounded: at most ``max_records`` records and none older than ``retention_days`` (wall clock
from the injected `Clock`); deleting a record deletes the keyframe files no other record uses.

Deduplicated: a record whose newest keyframe's 64-bit difference hash (`dhash`) is within
``dedupe_distance`` bits of one of the camera's ``dedupe_recent`` newest records *with the same
labels* (student flags, verdict, teacher flags) is not stored — a static scene reviewed again
and again adds nothing.  A same-looking frame with a different outcome is stored: it is what
the student gets wrong.

This is the only module that uses ``sqlite3``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.clock import Clock
from pipeline.config.learning import LearningConfig
from pipeline.errors import EdgewatchError
from pipeline.records import MODEL_ERROR_FLAG, Escalation, FrameReport, Verdict, VerdictKind, normalise_flag

log = logging.getLogger("edgewatch.agreement_store")

SCHEMA_VERSION = 1
_DAY_S = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    escalation_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at REAL NOT NULL,
    stored_at REAL NOT NULL,
    verdict TEXT NOT NULL,
    teacher_flags TEXT NOT NULL,
    teacher_observations TEXT NOT NULL,
    teacher_confidence REAL NOT NULL,
    teacher_explanation TEXT NOT NULL,
    teacher_model TEXT NOT NULL,
    student_model TEXT NOT NULL,
    skill_version TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    calibration_version TEXT,
    reports TEXT NOT NULL,
    phash TEXT NOT NULL,
    label_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_camera ON records (camera, id);
CREATE INDEX IF NOT EXISTS records_stored ON records (stored_at);
CREATE TABLE IF NOT EXISTS keyframes (
    record_id INTEGER NOT NULL REFERENCES records(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    path TEXT NOT NULL,
    frame_index INTEGER NOT NULL,
    t REAL NOT NULL,
    phash TEXT NOT NULL,
    PRIMARY KEY (record_id, idx)
);
CREATE INDEX IF NOT EXISTS keyframes_path ON keyframes (path);
CREATE TABLE IF NOT EXISTS human_verdicts (
    event_id TEXT NOT NULL,
    escalation_id TEXT NOT NULL,
    camera TEXT NOT NULL,
    verdict TEXT NOT NULL,
    flags TEXT NOT NULL,
    note TEXT NOT NULL,
    reviewed_at REAL NOT NULL,
    PRIMARY KEY (event_id, escalation_id)
);
CREATE INDEX IF NOT EXISTS human_verdicts_escalation ON human_verdicts (escalation_id);
"""


class StoreError(EdgewatchError):
    """The agreement store cannot be opened or read (one line)."""


# --------------------------------------------------------------------------------------
# Perceptual hash
# --------------------------------------------------------------------------------------

_GREY_WEIGHTS = np.array([0.114, 0.587, 0.299])  # BGR → luma


def dhash(image: np.ndarray, size: int = 8) -> int:
    """64-bit difference hash of a BGR or grey image: each bit says whether a cell of a
    (size x size+1) area-averaged grey thumbnail is brighter than its right neighbour.
    Small shifts, noise and JPEG artefacts move few bits; a different scene moves about half."""
    img = np.asarray(image)
    if img.ndim == 3:
        grey = img[..., :3].astype(np.float64) @ _GREY_WEIGHTS[: img.shape[2]] if img.shape[2] >= 3 else img[..., 0].astype(np.float64)
    elif img.ndim == 2:
        grey = img.astype(np.float64)
    else:
        raise ValueError(f"dhash needs an (H, W) or (H, W, C) image, got shape {img.shape}")
    h, w = grey.shape
    if h < size or w < size + 1:
        raise ValueError(f"image {w}x{h} is too small to hash")
    rows = np.array_split(np.arange(h), size)
    cols = np.array_split(np.arange(w), size + 1)
    thumb = np.array([[grey[np.ix_(r, c)].mean() for c in cols] for r in rows])
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    return int(bin(a ^ b).count("1"))


def _hex(h: int) -> str:
    return f"{h:016x}"


# --------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredKeyframe:
    path: Path
    """Absolute path of the JPEG file."""
    frame_index: int
    timestamp: float
    phash: int


@dataclass(frozen=True, slots=True)
class AgreementRecord:
    """One reviewed escalation or audit, as stored."""

    id: int
    escalation_id: str
    camera: str
    reason: str
    created_at: float
    """Source time of the escalation."""
    stored_at: float
    """Wall-clock seconds when stored (retention is measured on it)."""
    verdict: VerdictKind
    teacher_flags: frozenset[str]
    teacher_observations: tuple[str, ...]
    teacher_confidence: float
    teacher_explanation: str
    teacher_model: str
    student_model: str
    skill_version: str
    thresholds: dict[str, Any]
    calibration_version: str | None
    reports: tuple[FrameReport, ...]
    """The student's timeline, with its raw (uncalibrated) confidence."""
    keyframes: tuple[StoredKeyframe, ...]
    phash: int
    verdict_source: str = "teacher"
    """'teacher', or 'human' when a person's verdict (review page) replaced the teacher's verdict and flags."""

    @property
    def is_audit(self) -> bool:
        return self.reason == "audit"

    def report_for(self, keyframe: StoredKeyframe) -> FrameReport | None:
        """The student's report on a keyframe (None when the timeline does not hold it)."""
        for r in self.reports:
            if r.frame_index == keyframe.frame_index:
                return r
        return None

    @property
    def newest_keyframe(self) -> StoredKeyframe:
        return max(self.keyframes, key=lambda k: (k.timestamp, k.frame_index))


@dataclass(frozen=True, slots=True)
class HumanVerdict:
    """A person's verdict on an event (review page): ranked above the teacher's for the event's escalations."""

    event_id: str
    camera: str
    verdict: VerdictKind
    """CONFIRMED, or DISMISSED for a false alarm."""
    flags: frozenset[str]
    """The safety flags the person confirmed (empty for a false alarm)."""
    note: str
    reviewed_at: float
    """Wall-clock seconds (the injected `Clock`)."""
    escalation_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AddResult:
    stored: bool
    outcome: str
    """'stored', 'duplicate', 'unverified' or 'no_keyframes'."""
    record_id: int | None = None
    deleted: int = 0
    """Records deleted by retention while storing this one."""
    similar_to: int | None = field(default=None)


def safety_set(flags: Iterable[str]) -> frozenset[str]:
    """Normalised flags without the operational ``model_error``."""
    return frozenset(normalise_flag(f) for f in flags if str(f).strip()) - {MODEL_ERROR_FLAG}


def report_to_json(report: FrameReport) -> dict[str, Any]:
    data = report.to_json()
    data["confidence"] = float(report.confidence)  # full precision: calibration is fitted on it
    return data


def report_from_json(data: Mapping[str, Any]) -> FrameReport:
    return FrameReport(
        camera=str(data["camera"]), frame_index=int(data["frame"]), timestamp=float(data["t"]),
        observations=tuple(str(o) for o in data.get("observations", ())),
        safety_flags=tuple(str(f) for f in data.get("safetyFlags", ())),
        confidence=float(data["confidence"]), backend=str(data.get("backend", "")), model=str(data.get("model", "")),
        prompt_version=str(data.get("prompt_version", "")), latency_ms=float(data.get("latency_ms", 0.0)),
        error=data.get("error"), timings={str(k): float(v) for k, v in (data.get("timings") or {}).items()},
    )


def _label_key(newest: FrameReport | None, verdict: Verdict) -> str:
    student = ",".join(sorted(safety_set(newest.safety_flags))) if newest is not None else "?"
    return f"{student}|{verdict.kind.value}|{','.join(sorted(safety_set(verdict.safety_flags)))}"


# --------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------


class AgreementStore:
    """SQLite-backed store of reviewed examples.  Safe to share between threads (one lock; SQLite
    serialises writers across processes)."""

    def __init__(self, path: Path, cfg: LearningConfig, clock: Clock) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.clock = clock
        self.frames_dir = self.path.with_name(self.path.stem + "-frames")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10.0,
                                       check_same_thread=False)
            self._lock = threading.RLock()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"agreement store {self.path} cannot be opened: {exc}") from None

    @classmethod
    def open(cls, path: Path, cfg: LearningConfig, clock: Clock, *, sweep: bool = True) -> "AgreementStore":
        store = cls(path, cfg, clock)
        if sweep:
            removed = store.sweep_orphans()
            if removed:
                log.warning("agreement store: removed %d keyframe file(s) of records never committed", removed)
        return store

    @classmethod
    def open_existing(cls, path: Path, cfg: LearningConfig, clock: Clock) -> "AgreementStore":
        """For the read-only commands: a missing file is an error, not a new empty store."""
        if not Path(path).is_file():
            raise StoreError(f"no agreement store at {path} (run the pipeline with learning.enabled, or give --store)")
        return cls.open(path, cfg, clock, sweep=False)

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> "AgreementStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def add(
        self,
        escalation: Escalation,
        verdict: Verdict,
        *,
        skill_version: str,
        thresholds: Mapping[str, Any],
        calibration_version: str | None = None,
        raw_confidence: Mapping[tuple[str, int], float] | None = None,
    ) -> AddResult:
        """Store one reviewed escalation (an audit is one with reason ``audit``).

        ``raw_confidence`` maps (camera, frame index) to the confidence the student gave when
        the reports in the timeline carry a calibrated one; the store keeps the raw value.
        """
        with self._lock:
            if verdict.kind == VerdictKind.UNVERIFIED:
                return AddResult(False, "unverified")
            keyframes = sorted(escalation.keyframes, key=lambda k: (k.timestamp, k.frame.index))
            if not keyframes:
                return AddResult(False, "no_keyframes")
            raw = raw_confidence or {}
            reports = [r if (r.camera, r.frame_index) not in raw else _with_confidence(r, raw[(r.camera, r.frame_index)])
                       for r in escalation.timeline]
            hashes = [dhash(k.frame.image) for k in keyframes]
            newest_hash = hashes[-1]
            newest_report = next((r for r in reversed(reports) if r.frame_index == keyframes[-1].frame.index), None) \
                or (reports[-1] if reports else None)
            label = _label_key(newest_report, verdict)
            similar = self._near_duplicate(escalation.camera, label, newest_hash)
            if similar is not None:
                return AddResult(False, "duplicate", similar_to=similar)
            paths = [self._write_jpeg(escalation.camera, k.jpeg) for k in keyframes]
            now = self.clock.wall()
            row = (
                escalation.id, escalation.camera, escalation.reason, float(escalation.created_at), now, verdict.kind.value,
                json.dumps(sorted(safety_set(verdict.safety_flags))), json.dumps(list(verdict.observations)),
                float(verdict.confidence), verdict.explanation, verdict.model,
                reports[-1].model if reports else "", skill_version, json.dumps(dict(thresholds), default=str),
                calibration_version, json.dumps([report_to_json(r) for r in reports]), _hex(newest_hash), label,
            )
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute(
                    "INSERT INTO records (escalation_id, camera, reason, created_at, stored_at, verdict, teacher_flags, "
                    "teacher_observations, teacher_confidence, teacher_explanation, teacher_model, student_model, "
                    "skill_version, thresholds, calibration_version, reports, phash, label_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                record_id = int(cur.lastrowid or 0)
                self._db.executemany(
                    "INSERT INTO keyframes (record_id, idx, path, frame_index, t, phash) VALUES (?, ?, ?, ?, ?, ?)",
                    [(record_id, i, p, int(k.frame.index), float(k.timestamp), _hex(h))
                     for i, (k, p, h) in enumerate(zip(keyframes, paths, hashes))])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"agreement store {self.path}: write failed: {exc}") from None
            deleted = self._enforce_retention()
            return AddResult(True, "stored", record_id=record_id, deleted=deleted)

    def enforce_retention(self) -> int:
        """Delete records beyond ``max_records`` (oldest first) or older than ``retention_days``."""
        with self._lock:
            return self._enforce_retention()

    def _enforce_retention(self) -> int:
        cutoff = self.clock.wall() - self.cfg.retention_days * _DAY_S
        try:
            ids = [r[0] for r in self._db.execute("SELECT id FROM records WHERE stored_at < ?", (cutoff,))]
            (total,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
            excess = total - len(ids) - self.cfg.max_records
            if excess > 0:
                ids += [r[0] for r in self._db.execute(
                    "SELECT id FROM records WHERE stored_at >= ? ORDER BY id LIMIT ?", (cutoff, excess))]
            if not ids:
                return 0
            marks = ",".join("?" * len(ids))
            paths = {r[0] for r in self._db.execute(f"SELECT path FROM keyframes WHERE record_id IN ({marks})", ids)}
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"DELETE FROM keyframes WHERE record_id IN ({marks})", ids)
            self._db.execute(f"DELETE FROM records WHERE id IN ({marks})", ids)
            self._db.execute("COMMIT")
            still_used = {r[0] for r in self._db.execute(
                f"SELECT path FROM keyframes WHERE path IN ({','.join('?' * len(paths))})", sorted(paths))} if paths else set()
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"agreement store {self.path}: retention failed: {exc}") from None
        for rel in paths - still_used:
            (self.frames_dir / rel).unlink(missing_ok=True)
        return len(ids)

    def sweep_orphans(self) -> int:
        """Delete keyframe files no record references (left by a kill between file and commit)."""
        if not self.frames_dir.is_dir():
            return 0
        used = {r[0] for r in self._db.execute("SELECT path FROM keyframes")}
        removed = 0
        for f in self.frames_dir.rglob("*"):
            if f.is_file() and (f.suffix == ".tmp" or f.relative_to(self.frames_dir).as_posix() not in used):
                f.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- reading ---------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])

    def integrity_ok(self) -> bool:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def records(self, *, camera: str | None = None) -> list[AgreementRecord]:
        """Every record (oldest first); a row that does not parse is skipped with a warning."""
        with self._lock:
            return self._records(camera)

    def _records(self, camera: str | None) -> list[AgreementRecord]:
        where, args = ("WHERE camera = ?", (camera,)) if camera is not None else ("", ())
        try:
            rows = self._db.execute(
                "SELECT id, escalation_id, camera, reason, created_at, stored_at, verdict, teacher_flags, "
                "teacher_observations, teacher_confidence, teacher_explanation, teacher_model, student_model, "
                f"skill_version, thresholds, calibration_version, reports, phash FROM records {where} ORDER BY id", args).fetchall()
            frames: dict[int, list[StoredKeyframe]] = {}
            for rid, path, fi, t, ph in self._db.execute("SELECT record_id, path, frame_index, t, phash FROM keyframes ORDER BY record_id, idx"):
                frames.setdefault(int(rid), []).append(StoredKeyframe(self.frames_dir / path, int(fi), float(t), int(ph, 16)))
            human = {esc: (VerdictKind(v), frozenset(json.loads(f))) for esc, v, f in self._db.execute(
                "SELECT escalation_id, verdict, flags FROM human_verdicts WHERE escalation_id != '' ORDER BY reviewed_at")}
        except (sqlite3.Error, ValueError) as exc:
            raise StoreError(f"agreement store {self.path} cannot be read: {exc}") from None
        out = []
        for row in rows:
            try:
                out.append(AgreementRecord(
                    id=int(row[0]), escalation_id=row[1], camera=row[2], reason=row[3], created_at=float(row[4]),
                    stored_at=float(row[5]), verdict=VerdictKind(row[6]), teacher_flags=frozenset(json.loads(row[7])),
                    teacher_observations=tuple(json.loads(row[8])), teacher_confidence=float(row[9]),
                    teacher_explanation=row[10], teacher_model=row[11], student_model=row[12], skill_version=row[13],
                    thresholds=json.loads(row[14]), calibration_version=row[15],
                    reports=tuple(report_from_json(r) for r in json.loads(row[16])),
                    keyframes=tuple(frames.get(int(row[0]), ())), phash=int(row[17], 16)))
                if row[1] in human:  # a person's verdict outranks the teacher's
                    verdict, flags = human[row[1]]
                    out[-1] = replace(out[-1], verdict=verdict, teacher_flags=flags, verdict_source="human")
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("agreement store: skipping record %s that does not parse (%s)", row[0], exc)
        return [r for r in out if r.keyframes]

    # -- human verdicts (the review page) --------------------------------------------------

    def add_human_verdict(self, event_id: str, camera: str, verdict: VerdictKind, flags: Iterable[str], note: str,
                          escalation_ids: Sequence[str]) -> HumanVerdict:
        """Store (or replace) a person's verdict on an event and its escalations, in one transaction."""
        if verdict not in (VerdictKind.CONFIRMED, VerdictKind.DISMISSED):
            raise ValueError(f"a human verdict is confirmed or dismissed, not {verdict.value}")
        result = HumanVerdict(event_id, camera, verdict, safety_set(flags), note, self.clock.wall(),
                              tuple(dict.fromkeys(escalation_ids)))
        flags_json = json.dumps(sorted(result.flags))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM human_verdicts WHERE event_id = ?", (event_id,))
                self._db.executemany(
                    "INSERT INTO human_verdicts (event_id, escalation_id, camera, verdict, flags, note, reviewed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(event_id, esc, camera, verdict.value, flags_json, note, result.reviewed_at)
                     for esc in (result.escalation_ids or ("",))])
                self._db.execute("INSERT INTO meta(key, value) VALUES ('human_version', '1') ON CONFLICT(key) "
                                 "DO UPDATE SET value = CAST(value AS INTEGER) + 1")
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StoreError(f"agreement store {self.path}: human verdict not stored: {exc}") from None
        return result

    def human_verdicts(self) -> dict[str, HumanVerdict]:
        """Every person's verdict, by event id."""
        with self._lock:
            try:
                rows = self._db.execute("SELECT event_id, escalation_id, camera, verdict, flags, note, reviewed_at "
                                        "FROM human_verdicts ORDER BY event_id, escalation_id").fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"agreement store {self.path} cannot be read: {exc}") from None
        out: dict[str, HumanVerdict] = {}
        for event_id, esc, camera, verdict, flags, note, at in rows:
            known = out.get(event_id)
            escalations = (known.escalation_ids if known else ()) + ((esc,) if esc else ())
            out[event_id] = HumanVerdict(event_id, camera, VerdictKind(verdict), frozenset(json.loads(flags)), note,
                                         float(at), escalations)
        return out

    def human_verdicts_version(self) -> int:
        """Counts the human verdicts ever stored, so readers in other threads or processes know when to reload."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'human_version'").fetchone()
        return int(row[0]) if row else 0

    # -- internals -------------------------------------------------------------------------

    def _near_duplicate(self, camera: str, label: str, phash: int) -> int | None:
        rows = self._db.execute("SELECT id, phash FROM records WHERE camera = ? AND label_key = ? ORDER BY id DESC LIMIT ?",
                                (camera, label, self.cfg.dedupe_recent)).fetchall()
        for rid, ph in rows:
            if hamming(int(ph, 16), phash) <= self.cfg.dedupe_distance:
                return int(rid)
        return None

    def _write_jpeg(self, camera: str, jpeg: bytes) -> str:
        """Write (once: the name is the content's hash) and return the path relative to frames_dir."""
        safe_camera = "".join(c if c.isalnum() or c in "-_." else "_" for c in camera) or "camera"
        rel = f"{safe_camera}/{hashlib.sha1(jpeg).hexdigest()[:20]}.jpg"
        target = self.frames_dir / rel
        if not target.is_file():
            tmp = target.with_suffix(".tmp")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(tmp, "wb") as fh:
                    fh.write(jpeg)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except OSError as exc:  # a full disk costs this example, never a half file
                tmp.unlink(missing_ok=True)
                raise StoreError(f"agreement store {self.path}: keyframe not written: {exc.strerror or exc}") from None
        return rel

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _with_confidence(report: FrameReport, confidence: float) -> FrameReport:
    from dataclasses import replace

    return replace(report, confidence=float(confidence))


def store_path_for(cfg: LearningConfig, out_dir: Path) -> Path:
    """The configured store file, or ``agreement.sqlite`` in the output folder."""
    return Path(cfg.store_path) if cfg.store_path is not None else Path(out_dir) / "agreement.sqlite"


__all__: Sequence[str] = ("AddResult", "AgreementRecord", "AgreementStore", "HumanVerdict", "StoreError", "StoredKeyframe", "dhash",
                          "hamming", "report_from_json", "report_to_json", "safety_set", "store_path_for")
