"""The embedded OpenCV student and teacher on small generated clips (fixtures.demo building blocks)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fixtures.demo import Fire, LensCover, Lighting, Room, Scene, SteadyLamp, Walker, render_frame
from pipeline.analyzers import offline_student as offline_module
from pipeline.analyzers.base import Student, Teacher
from pipeline.analyzers.offline import OfflineStudent, OfflineTeacher
from pipeline.clock import ManualClock
from pipeline.config.offline import OfflineConfig
from pipeline.config.zones import Zone
from pipeline.records import (
    MODEL_ERROR_FLAG,
    EncodedFrame,
    Escalation,
    FrameReport,
    Frame,
    GateDecision,
    GateReason,
    Priority,
    VerdictKind,
)

SIZE = (320, 180)
FPS = 2.0
_ids = itertools.count()


def encoded(image: np.ndarray, t: float, index: int = 0, camera: str = "cam0",
            reason: GateReason = GateReason.CHANGE) -> EncodedFrame:
    h, w = image.shape[:2] if image.ndim >= 2 else (0, 0)
    return EncodedFrame(Frame(camera, index, t, image), b"", "", w, h, GateDecision(True, reason, 0.0))


def scene(*actors: object, lighting: Lighting | None = None) -> Scene:
    return Scene(room=Room(size=SIZE, seed=3), actors=tuple(actors), lighting=lighting or Lighting())


def run_student(sc: Scene, duration_s: float, zones: list[Zone] | None = None,
                student: OfflineStudent | None = None) -> list[FrameReport]:
    st = student or OfflineStudent(OfflineConfig(), zones or [], ManualClock())
    reports = []
    for i in range(int(duration_s * FPS)):
        t = i / FPS
        reports.append(st.analyze(encoded(render_frame(sc, t), t, i)))
    return reports


def flagged(reports: list[FrameReport], flag: str) -> list[float]:
    return [r.timestamp for r in reports if flag in r.flags]


def all_flags(reports: list[FrameReport]) -> set[str]:
    return set().union(*(r.flags for r in reports))


def escalation(sc: Scene, times: list[float], flags: set[str], reason: str = "safety",
               timeline: tuple[FrameReport, ...] = ()) -> Escalation:
    frames = tuple(encoded(render_frame(sc, t), t, i) for i, t in enumerate(times))
    return Escalation(id=f"esc-{next(_ids)}", camera="cam0", incident_id="inc-1", reason=reason,
                      priority=Priority.SAFETY if flags else Priority.AUDIT, created_at=times[-1],
                      flags=frozenset(flags), keyframes=frames, timeline=timeline)


def walker_falling_at(fall_t: float) -> Walker:
    return Walker(enter=0.0, exit=60.0, path=((0.0, 0.15), (fall_t, 0.40), (60.0, 0.40)),
                  tilt=((fall_t, 0.0), (fall_t + 0.7, 90.0)))


# --- contract ----------------------------------------------------------------------------


def test_student_and_teacher_satisfy_the_protocols_and_name_themselves() -> None:
    st = OfflineStudent(OfflineConfig(), [], ManualClock())
    te = OfflineTeacher(OfflineConfig(), [], ManualClock())
    assert isinstance(st, Student) and isinstance(te, Teacher)
    assert (st.backend, st.model, st.prompt_version) == ("offline", "opencv-offline-student/2", "offline-rules/2")
    assert (te.backend, te.model) == ("offline", "opencv-offline-teacher/2")
    report = st.analyze(encoded(render_frame(scene(), 0.0), 0.0))
    assert (report.backend, report.model, report.camera) == ("offline", "opencv-offline-student/2", "cam0")


# --- student -----------------------------------------------------------------------------


def test_calm_empty_scene_is_a_confident_no_activity() -> None:
    reports = run_student(scene(), 4.0)
    assert all_flags(reports) == set()
    assert all(r.confidence >= 0.85 for r in reports)
    assert reports[-1].observations == ("no activity",)


def test_slow_lighting_ramp_raises_no_flag() -> None:
    ramp = Lighting(keys=((0.0, 0.80), (6.0, 1.0)))
    reports = run_student(scene(lighting=ramp), 6.0)
    assert all_flags(reports) == set()
    assert not any("person" in o for r in reports for o in r.observations)


def test_sudden_lighting_change_is_observed_but_not_tamper() -> None:
    step = Lighting(keys=((0.0, 1.0), (1.99, 1.0), (2.0, 0.6), (6.0, 0.6)))
    reports = run_student(scene(lighting=step), 4.0)
    assert all_flags(reports) == set()
    assert any("lighting changed" in r.observations for r in reports if r.timestamp >= 2.0)


def test_walking_person_is_a_person_and_not_a_fall() -> None:
    walker = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.7)))
    reports = run_student(scene(walker), 6.0)
    assert sum(1 for r in reports if any("person" in o for o in r.observations)) >= 6
    assert "fall" not in all_flags(reports)
    assert any("person walking right" in r.observations for r in reports)


def test_fall_is_flagged_within_1_5_s_of_its_start() -> None:
    reports = run_student(scene(walker_falling_at(3.0)), 7.0)
    times = flagged(reports, "fall")
    assert times, "the fall was never flagged"
    assert 3.0 <= times[0] <= 4.5
    assert not flagged([r for r in reports if r.timestamp < 3.0], "fall")
    # It stays flagged while the person lies still.
    assert all("fall" in r.flags for r in reports if r.timestamp >= times[0])
    assert any("person lying on the floor" in r.observations for r in reports)


def test_flickering_fire_is_fire_and_steady_lamp_is_not() -> None:
    fire_reports = run_student(scene(Fire(start=1.0, end=10.0, seed=3)), 5.0)
    times = flagged(fire_reports, "fire")
    assert times and times[0] <= 2.5
    lamp_reports = run_student(scene(SteadyLamp(on=1.0, off=10.0)), 5.0)
    assert "fire" not in all_flags(lamp_reports)
    assert any("steady orange light" in o for r in lamp_reports for o in r.observations)


def test_smoke_that_grows_is_smoke() -> None:
    reports = run_student(scene(Fire(start=0.5, end=10.0, smoke_from=1.0, seed=3)), 5.0)
    times = flagged(reports, "smoke")
    assert times and times[0] <= 3.5


def test_covered_lens_is_tamper_only_while_covered() -> None:
    reports = run_student(scene(LensCover(start=2.0, end=4.0)), 6.0)
    assert flagged(reports, "tamper") == [2.0, 2.5, 3.0, 3.5]
    assert any("camera view covered or blank" in r.observations for r in reports)


def test_camera_moved_is_tamper() -> None:
    st = OfflineStudent(OfflineConfig(), [], ManualClock())
    room_a, room_b = Scene(room=Room(size=SIZE, seed=3)), Scene(room=Room(size=SIZE, seed=5, floor_y=0.35))
    before = [st.analyze(encoded(render_frame(room_a, t), t)) for t in (0.0, 0.5, 1.0)]
    # The camera was knocked over: the view is upside down and shifted.
    after = [st.analyze(encoded(np.ascontiguousarray(render_frame(room_b, t)[::-1]), t)) for t in (1.5, 2.0, 2.5, 3.0)]
    assert all(not r.flags for r in before)
    assert "tamper" in after[0].flags and "camera view changed suddenly" in after[0].observations
    # Once the new view has held for a frame it becomes the scene; the flag does not stick.
    assert not after[-1].flags


ZONE_RIGHT = Zone(name="loading bay", points=[(0.6, 0.6), (1.0, 0.6), (1.0, 1.0), (0.6, 1.0)])


def test_intrusion_when_feet_are_inside_a_zone_and_not_outside() -> None:
    inside = Walker(enter=0.0, exit=60.0, path=((0.0, 0.65), (5.0, 0.9)))
    outside = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (5.0, 0.4)))
    r_in = run_student(scene(inside), 5.0, zones=[ZONE_RIGHT])
    r_out = run_student(scene(outside), 5.0, zones=[ZONE_RIGHT])
    assert len(flagged(r_in, "intrusion")) >= 3
    assert any("person in zone loading bay" in r.observations for r in r_in)
    assert "intrusion" not in all_flags(r_out)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((180, 320, 3), np.uint8),
        np.full((180, 320, 3), 255, np.uint8),
        np.full((180, 320, 3), 128, np.uint8),
        np.zeros((1, 1, 3), np.uint8),
        np.full((180, 320), 90, np.uint8),
        np.zeros((180, 320, 4), np.uint8),
        np.zeros((0, 0, 3), np.uint8),
    ],
    ids=["black", "white", "grey", "1x1", "2d-grey", "bgra", "empty"],
)
def test_odd_images_never_raise(image: np.ndarray) -> None:
    st = OfflineStudent(OfflineConfig(), [], ManualClock())
    for i in range(3):
        report = st.analyze(encoded(image, i * 0.5, i))
        assert report.error is None, report.error
        assert 0.0 <= report.confidence <= 1.0
    if image.ndim >= 2 and min(image.shape[:2]) >= 8:
        assert "tamper" in report.flags  # a blank view is a covered/blinded camera


def test_internal_failure_is_a_failed_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(image: np.ndarray) -> None:
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(offline_module, "prepare", boom)
    clock = ManualClock()
    report = OfflineStudent(OfflineConfig(), [], clock).analyze(encoded(render_frame(scene(), 0.0), 0.0))
    assert report.flags == {MODEL_ERROR_FLAG} and report.confidence == 0.0
    assert report.error is not None and "synthetic failure" in report.error


def test_cameras_keep_separate_state() -> None:
    st = OfflineStudent(OfflineConfig(), [], ManualClock())
    fire = scene(Fire(start=0.0, end=10.0, seed=3))
    calm = scene()
    for i in range(6):
        t = i / FPS
        r_fire = st.analyze(encoded(render_frame(fire, t), t, i, camera="a"))
        r_calm = st.analyze(encoded(render_frame(calm, t), t, i, camera="b"))
    assert "fire" in r_fire.flags and not r_calm.flags


def test_without_hog_the_shape_rules_still_find_the_person() -> None:
    walker = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.7)))
    st = OfflineStudent(OfflineConfig(hog_people=False), [], ManualClock())
    reports = run_student(scene(walker), 4.0, student=st)
    assert any("person" in o for r in reports for o in r.observations)


# --- teacher -----------------------------------------------------------------------------

KEYTIMES = [0.5, 1.5, 2.5, 3.5, 4.5, 5.5]


def review(esc: Escalation, zones: list[Zone] | None = None):
    return OfflineTeacher(OfflineConfig(), zones or [], ManualClock()).review(esc)


def test_teacher_confirms_a_real_fall() -> None:
    verdict = review(escalation(scene(walker_falling_at(2.8)), KEYTIMES, {"fall"}))
    assert verdict.kind == VerdictKind.CONFIRMED, verdict.explanation
    assert "fall" in verdict.safety_flags and "upright" in verdict.explanation


def test_teacher_dismisses_a_fall_claim_on_a_walking_person() -> None:
    walker = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.7)))
    verdict = review(escalation(scene(walker), KEYTIMES, {"fall"}))
    assert verdict.kind == VerdictKind.DISMISSED, verdict.explanation


def test_teacher_confirms_flickering_fire_and_dismisses_the_steady_lamp() -> None:
    fire = review(escalation(scene(Fire(start=0.0, end=10.0, seed=3)), KEYTIMES, {"fire"}))
    assert fire.kind == VerdictKind.CONFIRMED and "fire" in fire.safety_flags, fire.explanation
    lamp = review(escalation(scene(SteadyLamp(on=0.0, off=10.0)), KEYTIMES, {"fire"}))
    assert lamp.kind == VerdictKind.DISMISSED, lamp.explanation
    assert "fire" not in lamp.safety_flags and "flicker" in lamp.explanation


def test_teacher_dismisses_a_single_frame_blip() -> None:
    blip = Fire(start=2.4, end=2.6, seed=3)  # one keyframe (2.5 s) only
    verdict = review(escalation(scene(blip), KEYTIMES, {"fire"}))
    assert verdict.kind == VerdictKind.DISMISSED, verdict.explanation
    cover_blip = LensCover(start=2.4, end=2.6, close_s=0.01)
    verdict = review(escalation(scene(cover_blip), KEYTIMES, {"tamper"}))
    assert verdict.kind == VerdictKind.DISMISSED, verdict.explanation


def test_teacher_confirms_a_covered_lens() -> None:
    verdict = review(escalation(scene(LensCover(start=2.0, end=9.0)), KEYTIMES, {"tamper"}))
    assert verdict.kind == VerdictKind.CONFIRMED and "tamper" in verdict.safety_flags


def test_teacher_audit_confirms_a_calm_sequence_and_adds_what_the_student_missed() -> None:
    calm = review(escalation(scene(), KEYTIMES, set(), reason="audit"))
    assert calm.kind == VerdictKind.CONFIRMED and calm.safety_flags == ()
    missed = review(escalation(scene(Fire(start=0.0, end=10.0, seed=3)), KEYTIMES, set(), reason="audit"))
    assert missed.kind == VerdictKind.CONFIRMED and "fire" in missed.safety_flags


def test_teacher_intrusion_needs_feet_in_the_zone() -> None:
    inside = Walker(enter=0.0, exit=60.0, path=((0.0, 0.65), (6.0, 0.9)))
    verdict = review(escalation(scene(inside), KEYTIMES, {"intrusion"}), zones=[ZONE_RIGHT])
    assert verdict.kind == VerdictKind.CONFIRMED, verdict.explanation
    outside = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.4)))
    verdict = review(escalation(scene(outside), KEYTIMES, {"intrusion"}), zones=[ZONE_RIGHT])
    assert verdict.kind == VerdictKind.DISMISSED, verdict.explanation


def test_teacher_without_keyframes_is_unverified_and_never_raises() -> None:
    esc = Escalation(id="e", camera="cam0", incident_id="i", reason="safety", priority=Priority.SAFETY,
                     created_at=0.0, flags=frozenset({"fire"}), keyframes=(), timeline=())
    assert review(esc).kind == VerdictKind.UNVERIFIED
    odd = Escalation(id="e2", camera="cam0", incident_id="i", reason="safety", priority=Priority.SAFETY,
                     created_at=0.0, flags=frozenset({"fire"}),
                     keyframes=(encoded(np.zeros((1, 1, 3), np.uint8), 0.0), encoded(np.zeros((90, 160), np.uint8), 0.5)),
                     timeline=())
    assert review(odd).kind in (VerdictKind.DISMISSED, VerdictKind.UNVERIFIED)


# --- precision-first rules (issue 16) ------------------------------------------------------


def test_a_bright_steady_screen_is_not_fire() -> None:
    st = OfflineStudent(OfflineConfig(), [], ManualClock())
    calm = scene()
    reports = []
    for i in range(12):
        t = i / FPS
        img = render_frame(calm, t).copy()
        if t >= 1.0:
            img[40:100, 200:290] = (40, 170, 255)  # a bright orange screen switched on, then steady
        reports.append(st.analyze(encoded(img, t, i)))
    assert "fire" not in all_flags(reports)
    assert not any("fire" in o for r in reports for o in r.observations)


def test_teacher_that_cannot_tell_says_unverified_not_dismissed() -> None:
    # Two keyframes of a calm room: too few to hold or rule out smoke.
    verdict = review(escalation(scene(), [0.5, 1.0], {"smoke"}))
    assert verdict.kind == VerdictKind.UNVERIFIED, verdict.explanation
    assert "smoke" in verdict.explanation


def test_a_tall_shape_cut_by_the_far_edge_of_the_view_is_not_called_a_person_by_its_shape() -> None:
    # Only its near end is in view, cut by the top of the frame (distant vehicles merging on
    # their way to the horizon look like this): its shape is no evidence of a person.  A figure
    # that spans the whole frame height is close to the camera and keeps its shape vote.
    cut = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.7)), height=0.9, feet_y=0.6)
    close = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.7)), height=1.3, feet_y=1.1)
    whole = Walker(enter=0.0, exit=60.0, path=((0.0, 0.1), (6.0, 0.7)))
    seen = {}
    for name, walker in (("cut", cut), ("close", close), ("whole", whole)):
        st = OfflineStudent(OfflineConfig(hog_people=False), [], ManualClock())
        reports = run_student(scene(walker), 4.0, student=st)
        seen[name] = any("person" in o for r in reports for o in r.observations)
    assert seen == {"cut": False, "close": True, "whole": True}
