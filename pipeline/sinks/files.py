"""File sinks: the JSONL event log, the JSONL decision log, alert snapshots and the summary.

Every line is flushed as it is written, so a crash or a kill loses at most the line being
written, never the events before it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import IO, Any

from pipeline.errors import OutputError
from pipeline.records import EncodedFrame, Event

log = logging.getLogger("edgewatch.sinks")


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


class JsonlWriter:
    """Append-only JSON Lines file, one object per line, flushed per line, safe from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: IO[str] | None = path.open("a", encoding="utf-8")
        self.lines = 0

    def write(self, obj: dict[str, Any]) -> None:
        line = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            if self._fh is None:
                log.warning("dropped a line written after %s was closed", self.path.name)
                return
            self._fh.write(line + "\n")
            self._fh.flush()
            self.lines += 1

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                self._fh = None


class SnapshotWriter:
    """Saves the already-encoded JPEG of the frame that raised an event (no re-encoding)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.saved = 0

    def save(self, event: Event, item: EncodedFrame) -> str | None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{event.id}.jpg"
            path.write_bytes(item.jpeg)
        except OSError as exc:
            log.warning("could not save snapshot for %s: %s", event.id, exc.strerror or exc)
            return None
        self.saved += 1
        return str(path)


def write_json_atomically(path: Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
