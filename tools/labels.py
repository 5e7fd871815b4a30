"""Ground-truth labels for clips (format ``edgewatch-labels/1``) and their validating loader.

A labels file is JSON::

    {"format": "edgewatch-labels/1", "about": "...",
     "clips": [{"file": "demo.mp4", "duration_s": 60.0,
                "events": [{"type": "fall", "start": 18.0, "end": 25.0}, ...],
                "quiet": [[0.0, 9.5], ...],              # optional: nothing should alert here
                "decoys": [{"type": "fire", "start": 31.0, "end": 36.0, "note": "lamp"}],  # optional
                "scenes": [{"start": 0.0, "end": 9.0, "note": "lights ramp"}],             # optional
                "notes": "..."}]}

Times are seconds of clip time.  ``events`` are intervals in which something of that type is
present or happening; ``quiet`` intervals are labelled as "nothing"; ``decoys`` look like a
type without being it (a steady orange lamp for fire).  Every problem is a `ConfigError`
naming the file and the place (``clips[0].events[2]``) in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.records import normalise_flag

LABELS_FORMAT = "edgewatch-labels/1"
#: Label types that are activity, not safety (matched by activity events, not alerts).
ACTIVITY_TYPES: frozenset[str] = frozenset({"person", "vehicle"})
#: Every type a label may carry (the seed safety triggers, tamper, and activity).
KNOWN_TYPES: frozenset[str] = frozenset({"fall", "intrusion", "fire", "smoke", "weapon", "blood", "tamper"}) | ACTIVITY_TYPES
#: An event may end this far past the clip's stated duration (durations are rounded).
DURATION_SLACK_S = 0.5

_TOP_KEYS = frozenset({"format", "about", "clips"})
_CLIP_KEYS = frozenset({"file", "duration_s", "events", "quiet", "decoys", "scenes", "notes"})
_EVENT_KEYS = frozenset({"type", "start", "end", "note"})
_SCENE_KEYS = frozenset({"start", "end", "note"})


def is_safety_type(kind: str) -> bool:
    return kind not in ACTIVITY_TYPES


@dataclass(frozen=True, slots=True)
class LabelledEvent:
    type: str
    start: float
    end: float
    note: str = ""

    def contains(self, t: float) -> bool:
        return self.start <= t <= self.end

    @property
    def safety(self) -> bool:
        return is_safety_type(self.type)


@dataclass(frozen=True, slots=True)
class SceneNote:
    start: float
    end: float
    note: str


@dataclass(frozen=True, slots=True)
class ClipLabels:
    file: str
    duration_s: float
    events: tuple[LabelledEvent, ...]
    quiet: tuple[tuple[float, float], ...] = ()
    decoys: tuple[LabelledEvent, ...] = ()
    scenes: tuple[SceneNote, ...] = ()
    notes: str = ""

    def truth_at(self, t: float) -> frozenset[str]:
        """The labelled types present at clip time ``t`` (empty in quiet or unlabelled time)."""
        return frozenset(e.type for e in self.events if e.contains(t))

    def decoys_at(self, t: float) -> frozenset[str]:
        return frozenset(d.type for d in self.decoys if d.contains(t))

    def is_labelled(self, t: float) -> bool:
        """True when ``t`` lies in an event or a quiet interval (its truth is known)."""
        return any(e.contains(t) for e in self.events) or any(a <= t <= b for a, b in self.quiet)

    def is_edge_case(self, t: float) -> bool:
        """A labelled event or decoy is in view: the frames on which models are tested hardest."""
        return any(e.contains(t) for e in self.events) or any(d.contains(t) for d in self.decoys)

    @property
    def types(self) -> frozenset[str]:
        return frozenset(e.type for e in self.events) | frozenset(d.type for d in self.decoys)


@dataclass(frozen=True, slots=True)
class LabelSet:
    path: Path
    clips: tuple[ClipLabels, ...]

    def video_path(self, clip: ClipLabels) -> Path:
        """Clip files are relative to the labels file's folder."""
        return self.path.parent / clip.file


def load_labels(path: Path | str) -> LabelSet:
    """Read and validate a labels file; every problem is one `ConfigError` line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"labels file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"labels file {p} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"labels file {p} is not UTF-8 text") from None
    return LabelSet(path=p, clips=parse_labels(data, where=str(p)))


def parse_labels(data: Any, *, where: str = "labels") -> tuple[ClipLabels, ...]:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: must be a JSON object with 'format' and 'clips', not {type(data).__name__}")
    _no_unknown(data, _TOP_KEYS, where)
    fmt = data.get("format")
    if fmt != LABELS_FORMAT:
        raise ConfigError(f"{where}: 'format' must be {LABELS_FORMAT!r} (got {fmt!r})")
    clips = data.get("clips")
    if not isinstance(clips, list) or not clips:
        raise ConfigError(f"{where}: 'clips' must be a non-empty list")
    out = []
    seen: set[str] = set()
    for i, raw in enumerate(clips):
        clip = _clip(raw, f"{where}: clips[{i}]")
        if clip.file in seen:
            raise ConfigError(f"{where}: clips[{i}]: file {clip.file!r} is labelled twice")
        seen.add(clip.file)
        out.append(clip)
    return tuple(out)


def _no_unknown(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: '{name}' must be a finite number of seconds (got {value!r})")
    return float(value)


def _interval(start: Any, end: Any, where: str, duration: float) -> tuple[float, float]:
    a, b = _number(start, where, "start"), _number(end, where, "end")
    if a < 0:
        raise ConfigError(f"{where}: start {a:g} must be >= 0")
    if b <= a:
        raise ConfigError(f"{where}: start {a:g} must be before end {b:g}")
    if b > duration + DURATION_SLACK_S:
        raise ConfigError(f"{where}: end {b:g} is past the clip's duration_s {duration:g}")
    return a, b


def _event(raw: Any, where: str, duration: float) -> LabelledEvent:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object with type, start and end (got {type(raw).__name__})")
    _no_unknown(raw, _EVENT_KEYS, where)
    kind = raw.get("type")
    if not isinstance(kind, str) or not kind.strip():
        raise ConfigError(f"{where}: 'type' must be a non-empty string (got {kind!r})")
    kind = normalise_flag(kind)
    if kind not in KNOWN_TYPES:
        raise ConfigError(f"{where}: unknown type {kind!r} (known: {', '.join(sorted(KNOWN_TYPES))})")
    a, b = _interval(raw.get("start"), raw.get("end"), where, duration)
    note = raw.get("note", "")
    return LabelledEvent(kind, a, b, str(note))


def _list_field(raw: dict[str, Any], key: str, where: str, shape: str = "must be a list") -> list[Any]:
    """``raw[key]`` (an empty list when absent), or a one-line error naming where it is not a list."""
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{where}: '{key}' {shape}")
    return value


def _clip(raw: Any, where: str) -> ClipLabels:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be an object (got {type(raw).__name__})")
    _no_unknown(raw, _CLIP_KEYS, where)
    file = raw.get("file")
    if not isinstance(file, str) or not file.strip():
        raise ConfigError(f"{where}: 'file' must be a non-empty string (got {file!r})")
    if Path(file).is_absolute() or ".." in Path(file).parts:
        raise ConfigError(f"{where}: 'file' must be relative to the labels file's folder (got {file!r})")
    duration = _number(raw.get("duration_s"), where, "duration_s")
    if duration <= 0:
        raise ConfigError(f"{where}: 'duration_s' must be > 0 (got {duration:g})")
    events_raw = _list_field(raw, "events", where)
    events = tuple(_event(e, f"{where}.events[{j}]", duration) for j, e in enumerate(events_raw))
    quiet_raw = _list_field(raw, "quiet", where, "must be a list of [start, end] pairs")
    quiet = []
    for j, q in enumerate(quiet_raw):
        if not isinstance(q, (list, tuple)) or len(q) != 2:
            raise ConfigError(f"{where}.quiet[{j}]: must be a [start, end] pair (got {q!r})")
        quiet.append(_interval(q[0], q[1], f"{where}.quiet[{j}]", duration))
    for j, (a, b) in enumerate(quiet):
        for e in events:
            if e.safety and e.start < b and a < e.end:
                raise ConfigError(f"{where}.quiet[{j}]: [{a:g}, {b:g}] overlaps the {e.type} event [{e.start:g}, {e.end:g}]")
    decoys_raw = _list_field(raw, "decoys", where)
    decoys = tuple(_event(d, f"{where}.decoys[{j}]", duration) for j, d in enumerate(decoys_raw))
    scenes_raw = _list_field(raw, "scenes", where)
    scenes = []
    for j, s in enumerate(scenes_raw):
        w = f"{where}.scenes[{j}]"
        if not isinstance(s, dict):
            raise ConfigError(f"{w}: must be an object with start, end and note")
        _no_unknown(s, _SCENE_KEYS, w)
        a, b = _interval(s.get("start"), s.get("end"), w, duration)
        scenes.append(SceneNote(a, b, str(s.get("note", ""))))
    notes = raw.get("notes", "")
    return ClipLabels(file=file, duration_s=duration, events=events, quiet=tuple(quiet), decoys=decoys,
                      scenes=tuple(scenes), notes=str(notes))
