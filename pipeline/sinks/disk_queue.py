"""A bounded, durable FIFO on disk: one numbered JSON file per item in a directory.

Why one file per item: an append is "write a temp file, fsync, rename, fsync the folder",
so a crash or power cut leaves either the whole item or nothing; a pop is one unlink.  The
numbers only grow, so the order survives restarts (the next number continues after the
largest file found at start).

Overflow policy: **drop the oldest**.  When the queue is full, the oldest item is deleted
to make room and counted in ``stats.dropped_oldest``: after a long outage the newest
events (what is happening now) are the ones worth delivering.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import OutputError

log = logging.getLogger("edgewatch.sinks.disk_queue")

_ITEM_NAME = re.compile(r"^(\d{12})\.json$")


@dataclass
class DiskQueueStats:
    """Counters since this process opened the queue (mutable, owned by the queue)."""

    appended: int = 0
    popped: int = 0
    dropped_oldest: int = 0
    """Items deleted unsent because the queue was full."""
    corrupt: int = 0
    """Item files that could not be read back (skipped and removed)."""
    recovered: int = 0
    """Items found on disk at start (left by an earlier run)."""


class DiskQueue:
    """Bounded FIFO of JSON-able dicts that survives restarts.  Safe to use from several threads."""

    def __init__(self, directory: Path | str, max_items: int) -> None:
        if max_items < 1:
            raise ValueError(f"max_items must be >= 1 (got {max_items})")
        self.directory = Path(directory)
        self.max_items = int(max_items)
        self.stats = DiskQueueStats()
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            names = os.listdir(self.directory)
        except OSError as exc:
            raise OutputError(f"cannot use queue folder {self.directory}: {exc.strerror or exc}") from None
        seqs: list[int] = []
        for name in names:
            match = _ITEM_NAME.match(name)
            if match:
                seqs.append(int(match.group(1)))
            elif name.endswith(".tmp"):
                # A write interrupted before its rename: never acknowledged, safe to remove.
                self._unlink(self.directory / name)
        seqs.sort()
        self._seqs: list[int] = seqs
        self._next_seq = (seqs[-1] + 1) if seqs else 0
        self.stats.recovered = len(seqs)
        if seqs:
            log.info("queue %s: %d items left by an earlier run", self.directory, len(seqs))
        while len(self._seqs) > self.max_items:  # the bound may have shrunk since the last run
            self._drop_oldest_locked()

    # -- public ------------------------------------------------------------------------

    def __len__(self) -> int:
        with self._lock:
            return len(self._seqs)

    def append(self, item: dict[str, Any]) -> int:
        """Store ``item`` durably at the tail; returns its sequence number.  Drops the oldest when full."""
        data = json.dumps(item, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
        with self._lock:
            while len(self._seqs) >= self.max_items:
                self._drop_oldest_locked()
            seq = self._next_seq
            self._next_seq += 1
            final = self._path(seq)
            tmp = final.with_suffix(".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
                self._fsync_dir()
            except OSError as exc:
                self._unlink(tmp)
                raise OutputError(f"cannot write to queue folder {self.directory}: {exc.strerror or exc}") from None
            self._seqs.append(seq)
            self.stats.appended += 1
            return seq

    def peek(self) -> tuple[int, dict[str, Any]] | None:
        """The oldest item and its sequence number, or None when empty.  Unreadable items are skipped."""
        with self._lock:
            while self._seqs:
                seq = self._seqs[0]
                try:
                    item = json.loads(self._path(seq).read_bytes())
                    if not isinstance(item, dict):
                        raise ValueError("not an object")
                    return seq, item
                except (OSError, ValueError) as exc:
                    log.warning("queue %s: skipping unreadable item %d (%s)", self.directory, seq, type(exc).__name__)
                    self.stats.corrupt += 1
                    self._seqs.pop(0)
                    self._unlink(self._path(seq))
            return None

    def pop(self, seq: int) -> bool:
        """Remove item ``seq`` once it is delivered.  False when it is no longer the head (e.g. dropped meanwhile)."""
        with self._lock:
            if not self._seqs or self._seqs[0] != seq:
                return False
            self._seqs.pop(0)
            self._unlink(self._path(seq))
            self.stats.popped += 1
            return True

    # -- internals ---------------------------------------------------------------------

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:012d}.json"

    def _drop_oldest_locked(self) -> None:
        seq = self._seqs.pop(0)
        self._unlink(self._path(seq))
        self.stats.dropped_oldest += 1
        if self.stats.dropped_oldest == 1 or self.stats.dropped_oldest % 100 == 0:
            log.warning("queue %s is full (%d items): dropped the oldest (%d so far)", self.directory, self.max_items, self.stats.dropped_oldest)

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("cannot remove %s: %s", path.name, exc.strerror or exc)
