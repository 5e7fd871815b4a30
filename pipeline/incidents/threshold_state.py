"""The thresholds' state file: each camera's teacher feedback (`FlagFeedback` per period and flag), kept
across restarts in one JSON file written atomically; a corrupt or foreign file is a warning, not a crash."""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from pipeline.config.settings import Settings
from pipeline.incidents.threshold_records import FlagFeedback

log = logging.getLogger("edgewatch.thresholds")

STATE_VERSION = 1
STATE_FILE_NAME = "thresholds_state.json"

#: period -> feedback key -> its smoothed feedback
FeedbackTable = dict[str, dict[str, FlagFeedback]]


def resolve_state_path(settings: Settings) -> Path:
    return Path(settings.adaptive.state_file) if settings.adaptive.state_file else Path(settings.output.out_dir) / STATE_FILE_NAME


def load_feedback(path: Path, camera: str) -> tuple[FeedbackTable, str | None]:
    """``camera``'s feedback from the state file (empty when there is none) and a warning when the file,
    or some of its entries, could not be used."""
    feedback: FeedbackTable = {}
    if not path.exists():
        return feedback, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION or not isinstance(data.get("cameras"), dict):
            raise ValueError("not an edgewatch thresholds state (version %r)" % (data.get("version") if isinstance(data, dict) else None))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        warning = f"thresholds state file {path} is unusable ({exc}); starting from default feedback"
        log.warning("%s", warning)
        return feedback, warning
    mine = data["cameras"].get(camera, {})
    periods = mine.get("periods", {}) if isinstance(mine, dict) else {}
    skipped = 0
    for period, table in (periods.items() if isinstance(periods, dict) else ()):
        if not isinstance(table, dict):
            skipped += 1
            continue
        for key, raw in table.items():
            fb = _feedback_from_json(raw)
            if fb is None or not isinstance(key, str):
                skipped += 1
                continue
            feedback.setdefault(str(period), {})[key] = fb
    if skipped:
        warning = f"thresholds state file {path}: {skipped} malformed entries skipped"
        log.warning("%s", warning)
        return feedback, warning
    return feedback, None


def save_feedback(path: Path, camera: str, feedback: FeedbackTable) -> bool:
    """Write ``camera``'s feedback into the state file atomically (other cameras' entries kept)."""
    cameras: dict[str, Any] = {}
    try:
        existing = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if isinstance(existing, dict) and existing.get("version") == STATE_VERSION and isinstance(existing.get("cameras"), dict):
            cameras = dict(existing["cameras"])
    except (OSError, UnicodeDecodeError, ValueError):
        pass  # a corrupt file is replaced (its warning was logged at load)
    cameras[camera] = {
        "periods": {p: {k: fb.to_json() for k, fb in sorted(t.items())} for p, t in sorted(feedback.items())},
    }
    payload = {"version": STATE_VERSION, "cameras": cameras}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("%s: could not save thresholds state to %s: %s", camera, path, exc)
        return False
    return True


def _feedback_from_json(raw: Any) -> FlagFeedback | None:
    if not isinstance(raw, dict):
        return None
    try:
        fb = FlagFeedback(
            dismissal_rate=float(raw.get("dismissal_rate", 0.0)),
            verdicts=int(raw.get("verdicts", 0)),
            miss_rate=float(raw.get("miss_rate", 0.0)),
            audits=int(raw.get("audits", 0)),
            offset=int(raw.get("offset", 0)),
            since_change=int(raw.get("since_change", 0)),
            updated_at=None if raw.get("updated_at") is None else float(raw["updated_at"]),
        )
    except (TypeError, ValueError):
        return None
    rates_ok = all(math.isfinite(r) and 0.0 <= r <= 1.0 for r in (fb.dismissal_rate, fb.miss_rate))
    if not rates_ok or min(fb.verdicts, fb.audits, fb.since_change) < 0 or abs(fb.offset) > 100:
        return None
    return fb
