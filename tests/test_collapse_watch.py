"""The collapse watch (pipeline/frames/collapse.py): a fall among merged movers, on generated clips.

The people finder is replaced by an ideal upright-person detector that reports where the generated
walkers stand upright, so these tests check the rule on the observer's real moving mask; how OpenCV's
HOG detector finds real people is what ../shared/tools/real_clips.py measures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fixtures.demo import Lighting, Room, Scene, Walker, _piecewise, render_frame
from pipeline.frames.collapse import BODY_BOTTOM, BODY_TOP, TRACK_ID_BASE
from pipeline.frames.motion import MotionObserver
from pipeline.records import MotionRecord, Mover

SIZE = (320, 180)
FPS = 25.0
UPRIGHT_TILT = 20.0
"""Degrees: a walker leaning further than this is no upright pedestrian for a people detector."""


class UprightWalkers:
    """Boxes (padded like a detector's window) of the walkers standing upright at the current time."""

    def __init__(self, walkers: Sequence[Walker]) -> None:
        self.walkers = walkers
        self.now = 0.0
        self.calls = 0

    def __call__(self, image: np.ndarray, movers: Sequence[Mover]) -> list[tuple[float, float, float, float]]:
        self.calls += 1
        w, h = SIZE
        boxes = []
        for walker in self.walkers:
            if not (walker.enter <= self.now <= walker.exit) or _piecewise(walker.tilt, self.now) > UPRIGHT_TILT:
                continue
            box_h = walker.height / (BODY_BOTTOM - BODY_TOP)
            box_w = 0.5 * box_h * h / w
            top = walker.feet_y - walker.height - BODY_TOP * box_h
            x = _piecewise(walker.path, self.now) - box_w / 2
            boxes.append((x, top, box_w, box_h))
        return boxes


def watch(walkers: Sequence[Walker], duration_s: float, finder: UprightWalkers | None = None,
          ) -> tuple[MotionObserver, list[MotionRecord]]:
    sc = Scene(room=Room(size=SIZE, seed=3), actors=tuple(walkers), lighting=Lighting())
    finder = finder if finder is not None else UprightWalkers(walkers)
    observer = MotionObserver(people=finder)
    records = []
    for i in range(int(duration_s * FPS)):
        t = i / FPS
        if observer.wants(t):
            finder.now = t
            records.append(observer.observe(render_frame(sc, t), t))
    return observer, records


def first_fall(records: list[MotionRecord]) -> MotionRecord | None:
    return next((r for r in records if r.fall is not None), None)


def companion() -> Walker:
    """Walks a little behind and beside the other person, overlapping them in the image, and on past."""
    return Walker(enter=0.0, exit=60.0, path=((0.0, 0.28), (4.0, 0.48), (8.0, 0.68)), feet_y=0.72, height=0.40,
                  shirt=(40, 40, 160))


def faller(fall_t: float = 4.0) -> Walker:
    return Walker(enter=0.0, exit=60.0, path=((0.0, 0.20), (fall_t, 0.40), (60.0, 0.40)),
                  tilt=((fall_t, 0.0), (fall_t + 0.6, 90.0)))


def test_one_of_two_overlapping_movers_collapses_and_it_is_a_fall() -> None:
    walkers = (faller(4.0), companion())
    _, records = watch(walkers, 7.0)
    record = first_fall(records)
    assert record is not None, "the fall among the merged movers was never seen"
    fall = record.fall
    assert fall.track > TRACK_ID_BASE, "found by the collapse watch, not the blob tracks"
    assert 4.0 <= fall.onset <= 5.0 and record.timestamp <= 6.6, "reported once down for two seconds"
    assert not [r for r in records if r.timestamp < 4.0 and r.fall is not None]
    # Where the person went down: under where they stood, below their standing top.
    assert fall.standing.x <= fall.lying.cx <= fall.standing.x + fall.standing.w + 0.5 * fall.standing.w
    assert fall.lying.y > fall.standing.y + 0.4 * fall.standing.h
    # The blobs alone do not separate the two: with no person found, nothing is seen to fall.
    nobody = UprightWalkers(())
    _, blind = watch(walkers, 7.0, nobody)
    assert nobody.calls > 0 and first_fall(blind) is None


def test_a_person_who_bends_beside_another_and_straightens_up_is_not_a_fall() -> None:
    bender = Walker(enter=0.0, exit=60.0, path=((0.0, 0.20), (4.0, 0.40), (60.0, 0.40)),
                    tilt=((4.0, 0.0), (4.5, 60.0), (5.3, 60.0), (5.9, 0.0)))
    observer, records = watch((bender, companion()), 8.0)
    assert first_fall(records) is None
    assert observer.finish(records[-1].timestamp).fall is None


def standing_by() -> Walker:
    """A second person standing nearly still beside the first, overlapping them in the image."""
    return Walker(enter=0.0, exit=60.0, path=((0.0, 0.62), (60.0, 0.66)), feet_y=0.80, height=0.42,
                  shirt=(40, 40, 160))


def test_a_deep_bend_held_for_most_of_a_second_beside_a_still_person_is_not_a_fall() -> None:
    bender = Walker(enter=0.0, exit=60.0, path=((0.0, 0.20), (3.0, 0.45), (60.0, 0.45)),
                    tilt=((3.0, 0.0), (3.4, 55.0), (4.2, 55.0), (5.2, 0.0)))
    for walkers in ((bender,), (bender, standing_by())):
        observer, records = watch(walkers, 7.5)
        assert first_fall(records) is None, len(walkers)
        assert observer.finish(records[-1].timestamp).fall is None, len(walkers)


def test_a_fall_beside_a_still_person_is_found() -> None:
    _, records = watch((faller(4.0), standing_by()), 7.5)
    record = first_fall(records)
    assert record is not None, "the fall beside the standing person was never seen"
    assert 4.0 <= record.fall.onset <= 5.0 and record.timestamp <= 7.0


def test_a_collapse_in_the_last_moment_of_a_video_is_reported_when_it_ends() -> None:
    observer, records = watch((faller(4.0), companion()), 5.5)
    assert first_fall(records) is None, "not yet down long enough to tell from a bend"
    final = observer.finish(records[-1].timestamp)
    assert final is not None and final.fall is not None
    assert final.fall.how == "collapsed among other movers as the video ended"


def test_a_collapse_is_no_longer_reported_once_the_person_stands_up_again() -> None:
    riser = Walker(enter=0.0, exit=60.0, path=((0.0, 0.20), (4.0, 0.40), (60.0, 0.40)),
                   tilt=((4.0, 0.0), (4.6, 90.0), (7.0, 90.0), (8.0, 0.0)))
    _, records = watch((riser, companion()), 9.5)
    down = [r for r in records if r.fall is not None]
    assert down, "the collapse itself was seen"
    assert all(r.fall is None for r in records if r.timestamp >= 8.5), "standing again, no longer down"
    assert math.isclose(down[0].fall.onset, min(r.fall.onset for r in down))
