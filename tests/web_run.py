"""A synthetic run folder in the formats the pipeline writes (events.jsonl, decisions.jsonl,
snapshots/, keyframes/), for the review page's tests and bench/review_page.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SCRIPT = "<script>document.title='pwned'</script>"


def jpeg(seed: int, size: tuple[int, int] = (48, 64)) -> bytes:
    rng = np.random.default_rng(seed)
    ok, data = cv2.imencode(".jpg", rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    assert ok
    return data.tobytes()


def event_line(i: int, camera: str, type_: str, severity: str, phase: str, start: float, *, out: Path,
               review: str = "not_reviewed", explanation: str = "", reasons: list[str] | None = None,
               snapshot: bool = True) -> dict[str, Any]:
    event_id = f"{camera}-{i:05d}-{type_}"
    return {"id": event_id, "camera": camera, "type": type_, "severity": severity, "phase": phase,
            "state": "alert" if severity == "alert" else "observing", "start": start,
            "end": start + 5.0 if phase == "end" else None, "flags": [type_] if severity == "alert" else [],
            "peak_confidence": 0.8, "reasons": reasons or [f"{type_} observed"], "review": review,
            "explanation": explanation, "snapshot": str(out / "snapshots" / f"{event_id}.jpg") if snapshot else None}


def write_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(line) + "\n")


def small_run(out: Path) -> Path:
    """Two cameras; a fall on cam0 escalated (keyframes archived), confirmed by the teacher with an
    explanation holding a script tag; a person on cam1; an open smoke alert on cam1."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "snapshots").mkdir(exist_ok=True)
    events = []
    fall_reasons = ["safety flag persisted (fall in 2 of last 3; need 2 of 3)",
                    "escalated cam0-esc-00001 to the teacher for safety: safety:fall"]
    events.append(event_line(1, "cam0", "person", "activity", "new", 2.0, out=out))
    events.append(event_line(1, "cam0", "person", "activity", "end", 2.0, out=out))
    events.append(event_line(2, "cam0", "fall", "alert", "new", 10.0, out=out, reasons=fall_reasons[:1]))
    events.append(event_line(2, "cam0", "fall", "alert", "update", 10.0, out=out, review="confirmed",
                             explanation="Confirmed fall. " + SCRIPT, reasons=fall_reasons))
    events.append(event_line(2, "cam0", "fall", "alert", "end", 10.0, out=out, review="confirmed",
                             explanation="Confirmed fall. " + SCRIPT, reasons=fall_reasons))
    events.append(event_line(3, "cam1", "person", "activity", "new", 4.0, out=out))
    events.append(event_line(4, "cam1", "smoke", "alert", "new", 30.0, out=out))
    for e in events:
        if e["snapshot"]:
            Path(e["snapshot"]).write_bytes(jpeg(len(e["id"])))
    write_lines(out / "events.jsonl", events)
    thresholds = {"min_confidence": 0.72, "persistence": "2/3", "audit_every": 120, "bar": 0}
    decisions: list[dict[str, Any]] = [{"kind": "notice", "message": "offline analyzer"}]
    for i, t in enumerate([8.0, 8.5, 9.0, 9.5, 10.0]):
        decisions.append({"kind": "decision", "camera": "cam0", "t": t, "frame": 16 + i, "escalate": t == 10.0,
                          "reason": "safety:fall" if t == 10.0 else "calm", "priority": "SAFETY" if t == 10.0 else None,
                          "flags": ["fall"] if t >= 9.5 else [], "thresholds": thresholds, "queue_depth": 2,
                          "student": {"camera": "cam0", "frame": 16 + i, "t": t, "observations": [f"person lying {SCRIPT}"],
                                      "safetyFlags": ["fall"] if t >= 9.5 else [], "confidence": 0.7,
                                      "backend": "offline", "model": "student-x", "prompt_version": "student/7"}})
    decisions.append({"kind": "transition", "camera": "cam0", "t": 10.0, "from": "suspicious", "to": "alert",
                      "trigger": "raise_alert", "reason": "fall persisted", "figures": {}})
    decisions.append({"kind": "escalation", "id": "cam0-esc-00001", "camera": "cam0", "t": 10.0, "reason": "safety:fall",
                      "priority": "SAFETY", "incident_id": "cam0-inc-00001", "keyframes": [9.0, 9.5, 10.0],
                      "queue": "queued", "into": None, "shed": None, "queue_reason": "queued"})
    decisions.append({"kind": "verdict", "t": 10.5, "wait_s": 0.1, "service_s": 0.9, "escalation_id": "cam0-esc-00001",
                      "camera": "cam0", "incident_id": "cam0-inc-00001", "verdict": "confirmed",
                      "observations": ["a person on the floor"], "safetyFlags": ["fall"], "confidence": 0.9,
                      "explanation": "Confirmed fall. " + SCRIPT, "backend": "offline", "model": "teacher-x", "latency_ms": 900})
    decisions.append({"kind": "transition", "camera": "cam1", "t": 30.0, "from": "suspicious", "to": "alert",
                      "trigger": "raise_alert", "reason": "smoke persisted", "figures": {}})
    write_lines(out / "decisions.jsonl", decisions)
    archive = out / "keyframes" / "cam0-esc-00001"
    archive.mkdir(parents=True)
    frames = []
    for i, t in enumerate([9.0, 9.5, 10.0]):
        name = f"{i:02d}-f{18 + i}.jpg"
        (archive / name).write_bytes(jpeg(100 + i))
        frames.append({"file": name, "frame": 18 + i, "t": t})
    (archive / "keyframes.json").write_text(json.dumps({"escalation_id": "cam0-esc-00001", "camera": "cam0",
                                                        "reason": "safety:fall", "created_at": 10.0, "keyframes": frames}))
    return out


def many_events(out: Path, count: int, cameras: int = 4) -> Path:
    """``count`` events (new + end lines each) over several cameras and types, with snapshots named."""
    out.mkdir(parents=True, exist_ok=True)
    types = [("person", "activity"), ("motion", "activity"), ("fall", "alert"), ("fire", "alert"), ("smoke", "alert")]
    lines = []
    for i in range(count):
        type_, severity = types[i % len(types)]
        camera = f"cam{i % cameras}"
        start = float(i)
        lines.append(event_line(i, camera, type_, severity, "new", start, out=out))
        lines.append(event_line(i, camera, type_, severity, "end", start, out=out,
                                review="confirmed" if severity == "alert" and i % 3 else "dismissed" if severity == "alert" else "not_reviewed"))
    write_lines(out / "events.jsonl", lines)
    (out / "decisions.jsonl").touch()
    return out
