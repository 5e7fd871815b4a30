"""Label format loader: the fixtures load, and every malformed file is one ConfigError line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigError
from tools.labels import LABELS_FORMAT, load_labels, parse_labels

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "fixtures" / "clips" / "labels.json"


def _clip(**over: Any) -> dict[str, Any]:
    clip: dict[str, Any] = {"file": "a.mp4", "duration_s": 20.0,
                            "events": [{"type": "fall", "start": 5.0, "end": 8.0}, {"type": "person", "start": 2.0, "end": 12.0}],
                            "quiet": [[0.0, 1.5], [13.0, 20.0]]}
    clip.update(over)
    return clip


def _doc(*clips: dict[str, Any]) -> dict[str, Any]:
    return {"format": LABELS_FORMAT, "clips": list(clips) or [_clip()]}


def test_demo_labels_load_with_truth_and_decoys() -> None:
    labels = load_labels(ROOT / "fixtures" / "demo" / "demo.labels.json")
    (clip,) = labels.clips
    assert labels.video_path(clip).name == "demo.mp4"
    assert clip.truth_at(20.0) == {"person", "fall"}
    assert clip.truth_at(5.0) == frozenset() and clip.is_labelled(5.0)
    assert not clip.is_labelled(9.8)
    assert clip.decoys_at(33.0) == {"fire"} and clip.is_edge_case(33.0) and not clip.is_edge_case(5.0)


@pytest.mark.skipif(not SHARED.is_file(), reason="shared clips folder absent")
def test_shared_clip_labels_load() -> None:
    labels = load_labels(SHARED)
    assert len(labels.clips) >= 10
    assert any(e.type == "fall" for c in labels.clips for e in c.events)


def test_interval_queries_on_parsed_labels() -> None:
    (clip,) = parse_labels(_doc())
    assert clip.truth_at(6.0) == {"fall", "person"}
    assert clip.truth_at(10.0) == {"person"}
    assert clip.is_labelled(1.0) and not clip.is_labelled(12.5)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ([], "must be a JSON object"),
        ({"format": "other/1", "clips": [_clip()]}, "'format' must be"),
        ({"format": LABELS_FORMAT, "clips": []}, "non-empty list"),
        ({"format": LABELS_FORMAT, "clips": [_clip()], "extra": 1}, "unknown key 'extra'"),
        (_doc(_clip(evnts=[])), "clips[0]: unknown key 'evnts'"),
        (_doc(_clip(file="")), "'file' must be a non-empty string"),
        (_doc(_clip(file="../x.mp4")), "relative to the labels file"),
        (_doc(_clip(duration_s=0)), "'duration_s' must be > 0"),
        (_doc(_clip(duration_s="long")), "finite number"),
        (_doc(_clip(events=[{"type": "fall", "start": 8.0, "end": 5.0}])), "clips[0].events[0]: start 8 must be before end 5"),
        (_doc(_clip(events=[{"type": "fall", "start": 5.0, "end": 99.0}])), "past the clip's duration_s"),
        (_doc(_clip(events=[{"type": "explosion", "start": 1.0, "end": 2.0}])), "unknown type 'explosion'"),
        (_doc(_clip(events=[{"type": "fall", "start": -1.0, "end": 2.0}])), "must be >= 0"),
        (_doc(_clip(quiet=[[4.0, 6.0]])), "overlaps the fall event"),
        (_doc(_clip(quiet=[[1.0]])), "[start, end] pair"),
        (_doc(_clip(), _clip()), "labelled twice"),
    ],
)
def test_malformed_labels_are_one_line_config_errors(tmp_path: Path, doc: Any, needle: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_labels(path)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert str(path) in message


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_labels(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_labels(bad)
