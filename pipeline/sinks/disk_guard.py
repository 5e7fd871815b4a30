"""Free space of the output folder, and the rules for what may still be written when it runs low.

Monitoring never stops because of the disk.  Below the watermark (``output.min_free_mb``) the
optional writes — snapshots and the agreement store's keyframes — stop first (counted, warned
once with the folder's name, a metric); the event and decision logs keep writing until the
disk is really full, and then hold their lines in a bounded in-memory buffer until it recovers
(`pipeline.sinks.files.JsonlWriter`).  Snapshots are pruned by age and total size
(``output.retain_days`` / ``output.retain_mb``), oldest first, like Frigate's ``retain``.

Every decision is made on the injected clock: free space is read at most once per
``check_every_s`` so a busy camera does not call ``statvfs`` per frame.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections import Counter
from pathlib import Path
from typing import Callable

from pipeline.clock import Clock

log = logging.getLogger("edgewatch.disk")

FreeBytes = Callable[[Path], int]


def free_bytes(path: Path) -> int:
    """Bytes available to this (unprivileged) process under ``path``."""
    return shutil.disk_usage(path).free


class DiskGuard:
    """Says whether optional writes may go on, counts what was skipped, warns once per low period."""

    def __init__(self, folder: Path, min_free_mb: float, clock: Clock, *, check_every_s: float = 1.0,
                 free: FreeBytes = free_bytes) -> None:
        self.folder = folder
        self.min_free_bytes = int(min_free_mb * 2**20)
        self._clock = clock
        self._check_every_s = check_every_s
        self._free = free
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._low = False
        self.skipped: Counter[str] = Counter()
        """Optional writes skipped because space was low, by kind (snapshot, agreement_store)."""
        self.low_periods = 0
        self.on_skip: Callable[[str], None] | None = None
        """Called with the kind of each skipped write (the runner points it at the metrics)."""

    @property
    def low(self) -> bool:
        """Is free space below the watermark (re-read at most once per ``check_every_s``)?"""
        with self._lock:
            now = self._clock.monotonic()
            if self._checked_at is None or now - self._checked_at >= self._check_every_s:
                self._checked_at = now
                self._update(self._read_free())
            return self._low

    def _read_free(self) -> int | None:
        try:
            return self._free(self.folder)
        except OSError as exc:
            log.debug("free space of %s unknown: %s", self.folder, exc)
            return None

    def _update(self, free: int | None) -> None:
        low = free is not None and free < self.min_free_bytes
        if low and not self._low:
            self.low_periods += 1
            log.warning("disk nearly full at %s (%.1f MiB free, watermark %.0f MiB): snapshots and the agreement store "
                        "stop writing; events keep flowing", self.folder, free / 2**20, self.min_free_bytes / 2**20)
        elif self._low and not low:
            log.warning("disk space at %s back above the watermark: snapshots and the agreement store write again", self.folder)
        self._low = low

    def allow(self, kind: str) -> bool:
        """May an optional write of ``kind`` go ahead?  Counts it when not."""
        if not self.low:
            return True
        self.note_skipped(kind)
        return False

    def note_skipped(self, kind: str) -> None:
        with self._lock:
            self.skipped[kind] += 1
        if self.on_skip is not None:
            self.on_skip(kind)

    def summary(self) -> dict[str, object]:
        return {"min_free_mb": round(self.min_free_bytes / 2**20, 1), "low_periods": self.low_periods,
                "skipped": dict(self.skipped)}


def prune_folder(folder: Path, *, max_bytes: int, max_age_s: float, now_wall: float, pattern: str = "*.jpg") -> int:
    """Delete the oldest files matching ``pattern`` until the folder holds at most ``max_bytes`` and
    nothing older than ``max_age_s``; returns how many were deleted.  Missing files are ignored."""
    try:
        entries = []
        for path in folder.rglob(pattern):
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
    except OSError:
        return 0
    entries.sort()
    total = sum(size for _, size, _ in entries)
    deleted = 0
    for mtime, size, path in entries:
        if total <= max_bytes and now_wall - mtime <= max_age_s:
            break
        try:
            os.unlink(path)
        except OSError:
            continue
        total -= size
        deleted += 1
    return deleted
