"""File sinks: the JSONL event log, the JSONL decision log, alert snapshots and the summary.

Every line is written with one ``write`` call as it comes, so a crash or a kill loses at most the
line being written, never the events before it.  A partial last line left by a killed run is cut
off when the file is opened again, so the next line never glues onto it.  When the disk is full a
line is held in a bounded in-memory buffer and written as soon as space returns; a half-written
line is truncated away at once.  Every path written is checked to lie inside the output folder.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from pipeline.errors import OutputError
from pipeline.records import EncodedFrame, Event
from pipeline.sinks.disk_guard import DiskGuard

log = logging.getLogger("edgewatch.sinks")

#: Lines a log holds in memory while the disk is full (oldest dropped first, counted).
MAX_BUFFERED_LINES = 10_000
#: Files whose presence means an earlier run wrote into the folder.
RUN_FILES = ("events.jsonl", "decisions.jsonl", "summary.json")


def prepare_out_dir(out_dir: Path) -> Path:
    """Create the output folder and prove it is writable, or raise `OutputError` with one clear line."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".edgewatch-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise OutputError(f"cannot write to output folder {out_dir}: {reason}") from None
    return out_dir


def earlier_run(out_dir: Path) -> str | None:
    """The name of a file an earlier run left in ``out_dir`` (None when the folder is new or empty of runs)."""
    for name in RUN_FILES:
        path = out_dir / name
        try:
            if path.is_file() and path.stat().st_size > 0:
                return name
        except OSError:
            continue
    return None


def new_run_id(wall: float) -> str:
    """``YYYYmmddTHHMMSSZ-xxxxxx``: sortable by start time, unique across runs started in the same second."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(wall)) + "-" + secrets.token_hex(3)


def inside(root: Path, path: Path) -> Path:
    """``path`` resolved, or `OutputError` when it would lie outside ``root`` (a hostile id, a symlink out)."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise OutputError(f"refusing to write {path}: it lies outside the output folder {root}")
    return resolved


class JsonlWriter:
    """Append-only JSON Lines file, one object per line, safe from several threads, never stopped by the disk."""

    def __init__(self, path: Path, *, max_buffered: int = MAX_BUFFERED_LINES) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._repair_tail()
        self._pending: deque[bytes] = deque(maxlen=max_buffered)
        self.lines = 0
        self.buffered_max = 0
        self.dropped = 0
        """Lines lost because the buffer overflowed while the disk stayed full (oldest first)."""
        self._full_warned = False

    def _repair_tail(self) -> None:
        """Cut a partial last line (a killed writer's) so the next line starts on its own."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        with open(self.path, "rb") as fh:
            fh.seek(max(0, size - 65536))
            tail = fh.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= 65536 else size)
        if keep == size:  # one line longer than 64 KiB with no end: end it instead of losing it
            os.write(self._fd, b"\n")
        else:
            os.ftruncate(self._fd, keep)
        log.warning("%s: removed a partial last line (%d bytes) left by an earlier run", self.path, size - keep)

    def write(self, obj: dict[str, Any]) -> None:
        line = (json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                log.warning("dropped a line written after %s was closed", self.path.name)
                return
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append(line)
            self.buffered_max = max(self.buffered_max, len(self._pending))
            self._flush_locked()

    def _flush_locked(self) -> None:
        assert self._fd is not None
        while self._pending:
            line = self._pending[0]
            start = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                written = os.write(self._fd, line)
                if written != len(line):
                    raise OSError(28, "short write")
            except OSError as exc:
                try:
                    os.ftruncate(self._fd, start)  # no half line stays behind
                except OSError:
                    pass
                if not self._full_warned:
                    self._full_warned = True
                    log.warning("cannot write %s (%s): holding up to %d lines in memory until it can",
                                self.path, exc.strerror or exc, self._pending.maxlen)
                return
            self._pending.popleft()
            self.lines += 1
            if self._full_warned:
                self._full_warned = False
                log.warning("%s writable again: buffered lines written", self.path)

    @property
    def buffered(self) -> int:
        with self._lock:
            return len(self._pending)

    def close(self) -> None:
        with self._lock:
            if self._fd is None:
                return
            self._flush_locked()
            if self._pending:
                log.error("%s: %d line(s) could not be written (disk full) and are lost", self.path, len(self._pending))
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


class SnapshotWriter:
    """Saves the already-encoded JPEG of the frame that raised an event (no re-encoding).

    A name already taken (an earlier run's snapshot) is never overwritten: the run id goes into the name.
    Below the disk watermark nothing is written (counted by the guard).
    """

    def __init__(self, folder: Path, *, root: Path | None = None, run_id: str = "", guard: DiskGuard | None = None) -> None:
        self.folder = folder
        self.root = root or folder
        self.run_id = run_id
        self.guard = guard
        self.saved = 0
        self.failed = 0

    def save(self, event: Event, item: EncodedFrame) -> str | None:
        if self.guard is not None and not self.guard.allow("snapshot"):
            return None
        path: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name in (f"{event.id}.jpg", f"{event.id}-{self.run_id or secrets.token_hex(3)}.jpg"):
                path = inside(self.root, self.folder / name)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                try:
                    view = memoryview(item.jpeg)
                    while view:
                        view = view[os.write(fd, view):]
                except OSError:
                    os.close(fd)
                    path.unlink(missing_ok=True)
                    raise
                os.close(fd)
                break
            else:
                raise FileExistsError(17, "name taken", str(path))
        except OutputError as exc:
            self.failed += 1
            log.error("snapshot for %s not saved: %s", event.id, exc)
            return None
        except OSError as exc:
            self.failed += 1
            log.warning("could not save snapshot for %s in %s: %s", event.id, self.folder, exc.strerror or exc)
            return None
        self.saved += 1
        return str(path)


def write_json_atomically(path: Path, obj: Any) -> bool:
    """Write JSON to ``path`` via a temporary file and rename, so a reader never sees half a file.

    On a full disk (or any write error) the temporary file is removed, a warning names the file, and
    False is returned: the caller still has the object (the CLI prints the summary anyway).
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not write %s: %s", path, exc.strerror or exc)
        return False
    return True
