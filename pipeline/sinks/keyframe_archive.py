"""The keyframes each escalation sent to the teacher, kept for the review page.

``OUT/keyframes/<escalation id>/`` holds the escalation's JPEGs (the bytes already encoded for
the teacher, not re-encoded) and ``keyframes.json`` (camera, reason, and per keyframe: file,
frame index, source time).  The agreement store keeps keyframes too, but only of reviewed,
non-duplicate escalations and only with learning enabled; this archive has every escalation.

Bounded: at most ``keep`` escalation folders; the oldest are deleted first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import deque
from pathlib import Path
from typing import Any

from pipeline.records import Escalation

log = logging.getLogger("edgewatch.sinks.keyframes")

#: Escalation folders kept at most (about 6 JPEGs of 30-90 kB each: some 300 MB at most).
KEEP_ESCALATIONS = 1000
MANIFEST = "keyframes.json"


def safe_name(text: str) -> str:
    """A file-name-safe form of an id (no separators, no dot-dot)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip(".")
    return name or "_"


class KeyframeArchive:
    def __init__(self, folder: Path, keep: int = KEEP_ESCALATIONS) -> None:
        self.folder = folder
        self.keep = max(1, keep)
        self.saved = 0
        existing = sorted((d for d in folder.iterdir() if d.is_dir()), key=lambda d: d.stat().st_mtime) if folder.is_dir() else []
        self._kept: deque[Path] = deque(existing)

    def save(self, escalation: Escalation) -> None:
        """Write the escalation's keyframes; a disk error is logged and counted out, never raised."""
        target = self.folder / safe_name(escalation.id)
        frames: list[dict[str, Any]] = []
        try:
            target.mkdir(parents=True, exist_ok=True)
            for i, keyframe in enumerate(escalation.keyframes):
                name = f"{i:02d}-f{keyframe.frame.index}.jpg"
                (target / name).write_bytes(keyframe.jpeg)
                frames.append({"file": name, "frame": keyframe.frame.index, "t": round(keyframe.timestamp, 3)})
            manifest = {"escalation_id": escalation.id, "camera": escalation.camera, "reason": escalation.reason,
                        "created_at": round(escalation.created_at, 3), "keyframes": frames}
            tmp = target / (MANIFEST + ".tmp")
            tmp.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, target / MANIFEST)
        except OSError as exc:
            (target / (MANIFEST + ".tmp")).unlink(missing_ok=True)  # a full disk leaves no half manifest
            log.warning("could not keep the keyframes of %s: %s", escalation.id, exc.strerror or exc)
            return
        self.saved += 1
        if target not in self._kept:
            self._kept.append(target)
        while len(self._kept) > self.keep:
            shutil.rmtree(self._kept.popleft(), ignore_errors=True)


def read_manifest(folder: Path, escalation_id: str) -> dict[str, Any] | None:
    """The archived manifest of one escalation, or None when it was not kept (or does not parse)."""
    path = folder / safe_name(escalation_id) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("keyframes"), list) else None
