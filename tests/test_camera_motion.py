"""Camera motion (pipeline/frames/camera_motion.py) and the dense observer on generated clips whose camera pans."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fixtures.demo import Lighting, Room, Scene, Walker, render_frame
from helpers_video import pacing_then_falling, textured_background
from pipeline.frames.camera_motion import ViewAligner
from pipeline.frames.motion import MotionObserver
from pipeline.records import MotionRecord

SIZE = (320, 180)
FPS = 25.0


def small_grey(image: np.ndarray) -> np.ndarray:
    """The observer's work image: 192 pixels wide, grey, lightly blurred."""
    small = cv2.resize(image, (192, 108), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (3, 3), 0)


def moved_by(image: np.ndarray, dx: float, dy: float, zoom: float = 1.0) -> np.ndarray:
    """The view of a camera turned so the scene lands ``dx``, ``dy`` pixels further (and zoomed about the centre)."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REFLECT)


def panning(start: float, end: float, dx: float, dy: float):
    """The camera turns steadily between ``start`` and ``end`` seconds, the scene landing ``dx``, ``dy`` pixels away."""
    def view(image: np.ndarray, t: float) -> np.ndarray:
        done = min(1.0, max(0.0, (t - start) / (end - start)))
        return moved_by(image, dx * done, dy * done)
    return view


def watch(walker: Walker, duration_s: float, camera) -> tuple[MotionObserver, list[MotionRecord]]:
    sc = Scene(room=Room(size=SIZE, seed=3), actors=(walker,), lighting=Lighting())
    observer, records = MotionObserver(), []
    for i in range(int(duration_s * FPS)):
        t = i / FPS
        if observer.wants(t):
            records.append(observer.observe(camera(render_frame(sc, t), t), t))
    return observer, records


# -- measuring the camera's motion -------------------------------------------------------------


def test_a_turned_camera_is_measured_and_put_back_onto_the_learnt_view() -> None:
    scene = textured_background(320, 180, seed=5)
    reference = small_grey(scene)
    aligner = ViewAligner(reference)
    turned = small_grey(moved_by(scene, 10.0, -6.0))  # 6 and 3.6 work pixels
    shift = aligner.measure(turned)
    assert shift is not None and shift.moved
    assert shift.to_reference[0, 2] == pytest.approx(-6.0, abs=0.3)
    assert shift.to_reference[1, 2] == pytest.approx(3.6, abs=0.3)
    put_back = aligner.confirms(turned, shift)
    assert put_back is not None
    aligned, inside = put_back
    valid = inside.astype(bool)
    assert not valid[:, -3:].any(), "the columns the turned camera no longer sees hold no real pixels"
    assert np.abs(aligned.astype(int) - reference)[valid].mean() < 0.3 * np.abs(turned.astype(int) - reference)[valid].mean()


def test_a_zoom_is_measured() -> None:
    scene = textured_background(320, 180, seed=6)
    aligner = ViewAligner(small_grey(scene))
    shift = aligner.measure(small_grey(moved_by(scene, 0.0, 0.0, zoom=1.04)))
    assert shift is not None and shift.moved
    assert np.hypot(shift.to_reference[0, 0], shift.to_reference[1, 0]) == pytest.approx(1 / 1.04, abs=0.005)


def camera_moved(aligner: ViewAligner, image: np.ndarray) -> bool:
    """What the observer concludes: a measured motion that the frame, put back, confirms."""
    grey = small_grey(image)
    shift = aligner.measure(grey)
    return shift is not None and shift.moved and aligner.confirms(grey, shift) is not None


def test_a_still_camera_a_mover_or_a_change_of_exposure_is_not_camera_motion() -> None:
    scene = textured_background(320, 180, seed=7)
    still = ViewAligner(small_grey(scene)).measure(small_grey(scene))
    assert still is not None and not still.moved
    # A large textured thing moving across one part of the view: the scene behind it stays put.
    with_mover = scene.copy()
    with_mover[40:140, 200:300] = textured_background(100, 100, seed=8)
    moved_on = scene.copy()
    moved_on[40:140, 170:270] = with_mover[40:140, 200:300]
    assert not camera_moved(ViewAligner(small_grey(with_mover)), moved_on)
    # The camera's exposure drops: everything darkens in place.
    assert not camera_moved(ViewAligner(small_grey(scene)), (scene * 0.7).astype(np.uint8))


def test_a_blank_view_has_no_corners_to_follow() -> None:
    aligner = ViewAligner(np.full((108, 192), 120, np.uint8))
    assert aligner.measure(np.full((108, 192), 120, np.uint8)) is None


# -- the dense observer while the camera moves ---------------------------------------------------


def test_a_fall_while_the_camera_pans_is_found() -> None:
    # The camera turns 12 px right and 4 down over 1.5 s; the person falls in the middle of it.
    observer, records = watch(pacing_then_falling(8.0), 11.0, panning(7.5, 9.0, 12.0, 4.0))
    falls = [r for r in records if r.fall is not None]
    assert falls, "the fall was never seen"
    assert 8.0 <= falls[0].fall.onset <= 8.8 and falls[0].timestamp <= 9.6
    assert not [r for r in falls if r.timestamp < 8.0]
    assert observer.finish(records[-1].timestamp).fall is not None


@pytest.mark.parametrize("dx, dy", [(12.0, 4.0), (-16.0, 0.0), (20.0, 6.0)])
def test_a_person_bending_while_the_camera_pans_is_not_a_fall(dx: float, dy: float) -> None:
    # A 50 degree bend held half a second: on a still camera its silhouette stays compact; the
    # scene's edges misplaced by an inexact fit must not widen it into a lying shape.
    bender = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (3.0, 0.45), (60.0, 0.45)),
                    tilt=((5.0, 0.0), (5.8, 50.0), (6.3, 50.0), (7.1, 0.0)))
    observer, records = watch(bender, 9.0, panning(5.0, 6.5, dx, dy))
    assert not [r for r in records if r.fall is not None]
    assert observer.finish(records[-1].timestamp).fall is None


def test_a_person_walking_while_the_camera_pans_is_tracked_as_one_upright_mover() -> None:
    walker = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (4.0, 0.75), (8.0, 0.2)))
    _, records = watch(walker, 8.0, panning(4.5, 6.0, 16.0, 4.0))
    assert not [r for r in records if r.fall is not None]
    during = [r for r in records if 4.8 <= r.timestamp <= 6.0]
    # The static scene stays background: one upright mover, not the room's edges.
    assert all(r.moving_fraction < 0.05 for r in during), max(r.moving_fraction for r in during)
    assert all(len(r.movers) >= 1 and max(r.movers, key=lambda m: m.area).aspect >= 1.3 for r in during)


def test_a_camera_turned_too_far_from_the_learnt_view_starts_the_background_again() -> None:
    walker = Walker(enter=0.0, exit=60.0, path=((0.0, 0.2), (6.0, 0.75)))
    _, records = watch(walker, 6.0, panning(3.0, 5.0, 80.0, 0.0))  # 48 work pixels: a quarter of the view
    resets = [r for r in records if r.view_reset]
    assert resets and all(3.0 < r.timestamp <= 5.0 for r in resets)
