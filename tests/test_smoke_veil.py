"""Smoke as a drifting veil next to flames (`pipeline.analyzers.offline_veil`), on generated frames."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.analyzers.offline import OfflineStudent
from pipeline.analyzers.offline_veil import VeilState, judge_veil
from pipeline.clock import ManualClock
from pipeline.config.offline import OfflineConfig
from pipeline.records import EncodedFrame, Frame, GateDecision, GateReason

W, H = 320, 240
FPS = 2.0


def _ground(seed: int = 5) -> np.ndarray:
    """A dark, finely textured ground (ash, gravel): detail a veil can hide."""
    rng = np.random.default_rng(seed)
    grain = rng.integers(0, 90, (H, W), dtype=np.uint8)
    grain = cv2.GaussianBlur(grain, (3, 3), 0)
    return cv2.cvtColor(grain + 30, cv2.COLOR_GRAY2BGR)


def _flames(image: np.ndarray, t: float) -> None:
    """Flickering flame tongues along a front in the upper middle: they re-shape every frame."""
    rng = np.random.default_rng(int(t * 1000) + 11)
    for x in range(70, 250, 12):
        height = int(rng.integers(15, 45))
        cv2.ellipse(image, (x + int(rng.integers(-4, 5)), 95), (7, height), 0, 0, 360, (40, 150, 255), -1)
        cv2.ellipse(image, (x, 100), (4, height // 2), 0, 0, 360, (120, 230, 255), -1)


def _veil(image: np.ndarray, centre: tuple[int, int], alpha: float = 0.55) -> np.ndarray:
    """Grey light over a soft round patch: brighter, greyer, less detail (smoke between camera and ground)."""
    mask = np.zeros((H, W), np.float32)
    cv2.circle(mask, centre, 38, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 9) * alpha
    grey = np.full_like(image, 190)
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    out = image.astype(np.float32) * (1 - mask[..., None]) + (0.5 * grey + 0.5 * blurred).astype(np.float32) * mask[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


def _frame(t: float, *, fire: bool, veil: str | None, veil_from: float = 3.0) -> np.ndarray:
    image = _ground()
    if fire:
        _flames(image, t)
    if veil is not None and t >= veil_from:
        age = t - veil_from
        # Drifting smoke moves on (here: across and up, below the flames); steady haze stays put.
        centre = (90 + int(40 * age), 190 - int(8 * age)) if veil == "drifting" else (150, 180)
        image = _veil(image, centre)
    return image


def _reports(duration_s: float, **kw: object) -> list:
    student = OfflineStudent(OfflineConfig(), [], ManualClock())
    out = []
    for i in range(int(duration_s * FPS)):
        t = i / FPS
        image = _frame(t, **kw)  # type: ignore[arg-type]
        item = EncodedFrame(Frame("cam0", i, t, image), b"", "", W, H, GateDecision(True, GateReason.CHANGE, 0.0))
        out.append(student.analyze(item))
    return out


def test_a_grey_veil_drifting_next_to_flames_is_smoke() -> None:
    reports = _reports(7.0, fire=True, veil="drifting")
    assert any("fire" in r.flags for r in reports if r.timestamp < 3.0)  # the fire came first
    smoke = [r.timestamp for r in reports if "smoke" in r.flags]
    assert smoke and 3.0 < smoke[0] <= 5.0
    assert any("smoke drifting" in o for r in reports for o in r.observations)


def test_a_steady_haze_next_to_flames_is_not_smoke() -> None:
    reports = _reports(7.0, fire=True, veil="steady")
    assert any("fire" in r.flags for r in reports)
    assert not any("smoke" in r.flags for r in reports)


def test_a_drifting_grey_veil_without_any_fire_is_not_smoke() -> None:
    reports = _reports(7.0, fire=False, veil="drifting")
    assert not any(r.flags & {"smoke", "fire"} for r in reports)


def test_the_veil_cue_needs_consecutive_frames_and_flames_nearby() -> None:
    flames = np.zeros((H, W), bool)
    flames[80:110, 70:250] = True
    hsv = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2HSV)  # noqa: E731
    grey = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)  # noqa: E731
    st = VeilState()
    base = _ground()
    judge_veil(st, 0.0, grey(base), hsv(base), flames)
    one = _veil(base, (100, 140))
    share, smoke = judge_veil(st, 0.5, grey(one), hsv(one), flames)
    assert share > 0.01 and not smoke  # one frame of veiling is not yet smoke
    two = _veil(base, (170, 140))
    share, smoke = judge_veil(st, 1.0, grey(two), hsv(two), flames)
    assert share > 0.01 and smoke
    # The same drift far from any flame veils nothing that counts.
    far = VeilState()
    nowhere = np.zeros((H, W), bool)
    nowhere[0:10, 0:10] = True
    for t, img in ((0.0, base), (0.5, one), (1.0, two)):
        share, smoke = judge_veil(far, t, grey(img), hsv(img), nowhere)
    assert share == 0.0 and not smoke
