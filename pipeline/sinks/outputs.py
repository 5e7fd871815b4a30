"""Where everything a run says goes: the event and decision logs, snapshots, keyframes, MQTT, metrics and the
CLI's callback — one fan-out the camera pipelines write to.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable
from pipeline.records import EncodedFrame, Event
from pipeline.sinks.decision_log import (DecisionLog, DecisionRecord)
from pipeline.sinks.disk_guard import DiskGuard, prune_folder
from pipeline.sinks.files import JsonlWriter, SnapshotWriter
from pipeline.sinks.keyframe_archive import KeyframeArchive

log = logging.getLogger("edgewatch.outputs")

#: Snapshots saved between two retention sweeps of the snapshot folder.
_PRUNE_EVERY = 100

EventCallback = Callable[[Event], None]


class Outputs:
    """Where everything the pipeline says goes: JSONL logs, snapshots, MQTT, metrics, the CLI's callback."""

    def __init__(
        self,
        out_dir: Path,
        *,
        on_event: EventCallback | None = None,
        mqtt: Any | None = None,
        metrics: Any | None = None,
        run_id: str = "",
        guard: DiskGuard | None = None,
        retain_bytes: int | None = None,
        retain_s: float | None = None,
        wall: Callable[[], float] | None = None,
    ) -> None:
        self.run_id = run_id
        self.guard = guard
        self.events_log = JsonlWriter(out_dir / "events.jsonl")
        self.decisions_log = DecisionLog(out_dir / "decisions.jsonl")
        self.snapshots = SnapshotWriter(out_dir / "snapshots", root=out_dir, run_id=run_id, guard=guard)
        self.keyframes = KeyframeArchive(out_dir / "keyframes")
        self.on_event = on_event
        self.mqtt = mqtt
        self.metrics = metrics
        self._snapshot_by_event: dict[str, str] = {}
        self._retention = (retain_bytes, retain_s, wall) if retain_bytes is not None and retain_s is not None and wall else None
        self.snapshots_pruned = 0
        self.prune_snapshots()

    def prune_snapshots(self) -> None:
        """Retention: snapshots beyond ``output.retain_mb`` or older than ``output.retain_days`` go, oldest first."""
        if self._retention is None:
            return
        max_bytes, max_age_s, wall = self._retention
        pruned = prune_folder(self.snapshots.folder, max_bytes=max_bytes, max_age_s=max_age_s, now_wall=wall())
        if pruned:
            self.snapshots_pruned += pruned
            log.info("retention: deleted %d old snapshot(s) in %s", pruned, self.snapshots.folder)

    def disk_summary(self) -> dict[str, Any]:
        logs = (self.events_log, self.decisions_log.writer)
        return {**(self.guard.summary() if self.guard is not None else {}),
                "snapshots_pruned": self.snapshots_pruned,
                "lines_buffered_max": max(w.buffered_max for w in logs) if any(w.buffered_max > 1 for w in logs) else 0,
                "lines_lost": sum(w.dropped for w in logs),
                # Lines still held when the summary is made: written if the disk frees up before exit, else lost.
                "lines_unwritten": sum(w.buffered for w in logs)}

    def decision(self, record: DecisionRecord) -> None:
        self.decisions_log.write(record)

    def event(self, event: Event, item: EncodedFrame | None) -> Event:
        if event.phase == "new" and item is not None:
            path = self.snapshots.save(event, item)
            if path:
                self._snapshot_by_event[event.id] = path
                if self.snapshots.saved % _PRUNE_EVERY == 0:
                    self.prune_snapshots()
        snapshot = self._snapshot_by_event.get(event.id)
        if snapshot and event.snapshot is None:
            event = replace(event, snapshot=snapshot)
        if event.phase == "end":
            self._snapshot_by_event.pop(event.id, None)
        line = event.to_json()  # once per event line: the log and MQTT send the same JSON
        self.events_log.write(line)
        if self.mqtt is not None:
            self.mqtt.publish_event(event, line)
        if self.metrics is not None:
            self.metrics.event(event.camera, event.phase)
        if self.on_event is not None:
            self.on_event(event)
        return event

    def state(self, camera: str, state: str, flags: list[str], explanation: str) -> None:
        if self.mqtt is not None:
            self.mqtt.publish_state(camera, state, {"flags": flags, "explanation": explanation})

    def close(self) -> None:
        self.events_log.close()
        self.decisions_log.close()
