"""What every page reads: the run folder, its index, the agreement store and, when the page runs
inside a run, the live parts (camera health, the newest frames, the threshold controllers)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.learning.agreement_store import AgreementStore, store_path_for
from pipeline.clock import Clock
from pipeline.config.settings import Settings
from pipeline.web.index import RunIndex

log = logging.getLogger("edgewatch.web")

#: A run's logs untouched this long (and a summary written after them) mean the run is over: no polling.
LIVE_QUIET_S = 120.0
_ESCALATED = re.compile(r"\bescalated (\S+) to the teacher\b")


@dataclass
class ReviewContext:
    out_dir: Path
    settings: Settings
    clock: Clock
    index: RunIndex
    store: AgreementStore
    token: str | None = None
    embedded: bool = False
    """Running inside a run (web.enabled): the live parts below are set."""
    health: Callable[[], dict[str, Any]] | None = None
    latest_jpeg: Callable[[str], bytes | None] | None = None
    controllers: Mapping[str, Any] = field(default_factory=dict)
    """Camera -> the run's `ThresholdController` (feedback is submitted to it, on the runner's thread)."""
    mqtt: Any | None = None

    @classmethod
    def open(cls, out_dir: Path, settings: Settings, clock: Clock, **live: Any) -> "ReviewContext":
        store = AgreementStore.open(store_path_for(settings.learning, out_dir), settings.learning, clock, sweep=False)
        return cls(out_dir=Path(out_dir), settings=settings, clock=clock, index=RunIndex(out_dir), store=store,
                   token=settings.web.token, **live)

    def refresh(self) -> None:
        """Bring the index up to the logs and the store's human verdicts (cheap when nothing changed)."""
        self.index.refresh()
        version = self.store.human_verdicts_version()
        self.index.sync_human({e: h.verdict.value for e, h in self.store.human_verdicts().items()}
                              if version else {}, version)

    def is_live(self) -> bool:
        """Is a run writing this folder? (then the pages poll for updates)."""
        if self.embedded:
            return True
        try:
            events = (self.out_dir / "events.jsonl").stat().st_mtime
        except OSError:
            return False
        summary = self.out_dir / "summary.json"
        finished = summary.is_file() and summary.stat().st_mtime >= events
        return not finished and time.time() - events < LIVE_QUIET_S

    def escalation_ids(self, event: Mapping[str, Any]) -> list[str]:
        """The escalations the run logged for this event: named in its reasons, else in its time span."""
        ids = [m.group(1) for reason in event.get("reasons", ()) for m in [_ESCALATED.search(str(reason))] if m]
        if not ids:
            start = float(event.get("start") or 0.0)
            end = event.get("end")
            ids = [str(d.id) for d in self.index.decisions(str(event.get("camera")), ["escalation"], start,
                                                                  None if end is None else float(end))]
        return list(dict.fromkeys(ids))

    def close(self) -> None:
        self.index.close()
        self.store.close()
