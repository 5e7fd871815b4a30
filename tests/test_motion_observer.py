"""The dense motion observer (pipeline/frames/motion.py) on generated clips: falls seen at 12.5 fps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import run_cli
from fixtures.demo import Lighting, Room, Scene, Walker, render_frame
from helpers_video import pacing_then_falling, write_video
from pipeline.frames.motion import MotionObserver
from pipeline.records import MotionRecord

SIZE = (320, 180)
FPS = 25.0


def scene(*actors: Walker) -> Scene:
    return Scene(room=Room(size=SIZE, seed=3), actors=tuple(actors), lighting=Lighting())


def watch(sc: Scene, duration_s: float, fps: float = FPS) -> tuple[MotionObserver, list[MotionRecord]]:
    observer = MotionObserver()
    records = []
    for i in range(int(duration_s * fps)):
        t = i / fps
        if observer.wants(t):
            records.append(observer.observe(render_frame(sc, t), t))
    return observer, records


def first_fall(records: list[MotionRecord]) -> MotionRecord | None:
    return next((r for r in records if r.fall is not None), None)


def test_a_fall_after_a_long_stretch_of_normal_motion_is_found() -> None:
    _, records = watch(scene(pacing_then_falling(20.0)), 23.0)
    record = first_fall(records)
    assert record is not None, "the fall was never seen"
    assert record.timestamp <= 21.6, "a fall must be reported within about 1.5 s"
    assert 20.0 <= record.fall.onset <= 20.8
    assert not [r for r in records if r.timestamp < 20.0 and r.fall is not None]
    # Seen from standing to lying: the top came down, the silhouette turned wide, quickly.
    assert record.fall.standing.aspect >= 1.3 and record.fall.lying.aspect <= 0.8
    assert record.fall.top_drop >= 0.1 and record.fall.descent_s <= 1.5
    # It stays reported while the person lies there.
    assert all(r.fall is not None for r in records if r.timestamp >= record.timestamp)


def test_a_person_bending_and_straightening_up_is_not_a_fall() -> None:
    bender = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (3.0, 0.45), (60.0, 0.45)),
                    tilt=((3.0, 0.0), (3.8, 50.0), (4.3, 50.0), (5.1, 0.0), (6.0, 0.0), (6.8, 50.0), (7.3, 50.0), (8.1, 0.0)))
    observer, records = watch(scene(bender), 10.0)
    assert first_fall(records) is None
    assert observer.finish(records[-1].timestamp).fall is None


def test_a_deep_bend_held_for_most_of_a_second_is_not_a_fall() -> None:
    # Low, wide and fast like a fall, but back up within two seconds: a fall stays down.
    bender = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (3.0, 0.45), (60.0, 0.45)),
                    tilt=((3.0, 0.0), (3.4, 55.0), (4.2, 55.0), (5.2, 0.0)))
    observer, records = watch(scene(bender), 7.5)
    assert first_fall(records) is None
    assert observer.finish(records[-1].timestamp).fall is None


def test_a_bend_held_until_it_fades_then_straightened_is_not_a_fall() -> None:
    # Held still, the bent figure joins the background; straightening, it comes back as a new
    # mover rising where it was bent: it got up, it did not lie still.
    bender = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (3.0, 0.45), (60.0, 0.45)),
                    tilt=((3.0, 0.0), (3.4, 70.0), (4.9, 70.0), (5.9, 0.0)))
    observer, records = watch(scene(bender), 8.0)
    assert first_fall(records) is None
    assert observer.finish(records[-1].timestamp).fall is None


def test_lying_down_slowly_is_not_a_fall() -> None:
    lier = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (3.0, 0.45), (60.0, 0.45)),
                  tilt=((3.0, 0.0), (7.0, 90.0)))
    _, records = watch(scene(lier), 10.0)
    assert first_fall(records) is None


def test_walking_out_of_view_is_not_a_fall() -> None:
    leaver = Walker(enter=0.0, exit=60.0, path=((0.0, 0.3), (5.0, 1.2)))
    observer, records = watch(scene(leaver), 7.0)
    assert first_fall(records) is None
    assert observer.finish(records[-1].timestamp).fall is None


def test_a_fall_in_the_last_moment_of_a_video_is_reported_when_it_ends() -> None:
    observer, records = watch(scene(pacing_then_falling(5.0)), 5.9)
    assert first_fall(records) is None, "not yet down long enough to tell from a stumble"
    final = observer.finish(records[-1].timestamp)
    assert final is not None and final.fall is not None
    assert final.fall.how == "fell as the video ended"


def test_the_record_is_immutable_and_names_its_movers() -> None:
    _, records = watch(scene(Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (4.0, 0.7)))), 4.0)
    record = records[-1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.moving_fraction = 0.0  # type: ignore[misc]
    assert len(record.movers) >= 1 and all(m.track > 0 for m in record.movers)
    walker = max(record.movers, key=lambda m: m.area)
    assert walker.aspect >= 1.3 and 0.1 <= walker.h <= 0.6
    assert json.loads(json.dumps(record.to_json()))["movers"][0]["track"] == walker.track
    # The observer looks at most fps frames a second: 4 s of 25 fps video -> about 50 records.
    assert 45 <= len(records) <= 51


def test_a_whole_view_change_starts_the_background_again() -> None:
    observer = MotionObserver()
    dark = render_frame(Scene(room=Room(size=SIZE, seed=3), actors=(), lighting=Lighting()), 0.0) // 4
    for i in range(10):
        observer.observe(render_frame(scene(), i / FPS), i / FPS)
    record = observer.observe(dark, 0.5)
    assert record.view_reset and record.movers == ()


@pytest.mark.slow
def test_a_fall_in_the_last_second_of_a_clip_raises_a_fall_alert(tmp_path: Path) -> None:
    # Down by 4.7 s, the clip ends at 5.6 s: the student looks when the observer sees the fall and
    # once more at the last frame, so the alert needs no later sample.
    sc = scene(pacing_then_falling(4.0))
    clip = write_video(tmp_path / "fall_at_end.avi", (render_frame(sc, i / FPS) for i in range(int(5.6 * FPS))), FPS)
    out = tmp_path / "out"
    proc = run_cli(str(clip), "--out", str(out), "--quiet", "--ollama-host", "http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    falls = [e for e in events if e["type"] == "fall"]
    assert falls, [(e["type"], e["phase"], e["start"]) for e in events]
    assert 4.0 <= falls[0]["start"] <= 5.6


@pytest.mark.slow
def test_a_person_lying_where_they_fell_is_not_a_vehicle(tmp_path: Path) -> None:
    # Lying and getting up, the silhouette is wide and moving: the shape alone says "vehicle".
    # The mover the observer saw fall stays a person for as long as it is tracked.
    faller = Walker(enter=0.0, exit=16.0, path=((0.0, -0.06), (4.0, 0.42), (10.6, 0.42), (14.0, 1.08)),
                    tilt=((4.0, 0.0), (4.7, 90.0), (9.0, 90.0), (10.5, 0.0)))
    sc = Scene(room=Room(size=(640, 360), seed=7), actors=(faller,), lighting=Lighting())
    clip = write_video(tmp_path / "fall_and_lie.avi", (render_frame(sc, i / 10.0) for i in range(160)), 10.0)
    out = tmp_path / "out"
    proc = run_cli(str(clip), "--out", str(out), "--quiet", "--ollama-host", "http://127.0.0.1:9")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
    kinds = {e["type"] for e in events}
    assert "fall" in kinds, sorted(kinds)
    assert "vehicle" not in kinds, [(e["type"], e["phase"], e["start"]) for e in events]
