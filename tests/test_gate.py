"""Change gate: static scenes cost no call, motion passes, lighting ramps do not, global changes re-baseline."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.config.gate import GateConfig
from pipeline.frames.gate import ChangeGate
from pipeline.records import GateReason
from tests.helpers_video import frame_of, textured_background

W, H = 640, 360


@pytest.fixture()
def scene() -> np.ndarray:
    return textured_background(W, H, seed=3)


class _Noise:
    """Deterministic sensor noise of +-3 levels, different on every frame."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, image: np.ndarray, offset: int = 0) -> np.ndarray:
        noisy = image.astype(np.int16) + self.rng.integers(-3, 4, image.shape) + offset
        return np.clip(noisy, 0, 255).astype(np.uint8)


def _with_square(image: np.ndarray, x: int, y: int = 160) -> np.ndarray:
    out = image.copy()
    cv2.rectangle(out, (x, y), (x + 19, y + 39), (30, 30, 30), -1)  # 20 x 40 px
    return out


def test_static_scene_passes_only_first_and_heartbeats(scene: np.ndarray) -> None:
    noise = _Noise()
    max_skip = 10.0
    gate = ChangeGate(GateConfig(max_skip_s=max_skip))
    stamps = [i * 0.5 for i in range(120)]  # 2 fps for 60 s
    decisions = [gate.check(frame_of(noise(scene), i, t)) for i, t in enumerate(stamps)]
    passed_at = [t for t, d in zip(stamps, decisions) if d.passed]

    # Expected from the heartbeat rule alone: first frame, then whenever max_skip_s elapsed since the last pass.
    expected, last = [], None
    for t in stamps:
        if last is None or t - last >= max_skip:
            expected.append(t)
            last = t
    assert passed_at == expected == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert decisions[0].reason is GateReason.FIRST
    assert {d.reason for d in decisions[1:] if d.passed} == {GateReason.HEARTBEAT}
    assert gate.counters == {"first": 1, "change": 0, "global_change": 0, "heartbeat": 5, "static": 114}
    assert gate.passed == 6 and gate.skipped == 114
    assert all(d.score < 3.0 for d in decisions)


def test_small_moving_square_passes(scene: np.ndarray) -> None:
    noise = _Noise(1)
    gate = ChangeGate(GateConfig())
    decisions = [gate.check(frame_of(noise(_with_square(scene, 20 + i * 12)), i, i * 0.5)) for i in range(30)]
    moving = decisions[1:]
    assert all(d.passed and d.reason is GateReason.CHANGE for d in moving)
    assert all(d.changed_fraction > 0 and d.region is not None for d in moving)
    assert gate.counters["change"] == 29


@pytest.mark.xfail(strict=True, reason="known limit of the region gate: a mover present while the block baselines "
                   "warm up (first ~4 s) is partly learned as normal, so its departure after a stop can be missed")
def test_square_that_stops_is_skipped_and_its_departure_passes(scene: np.ndarray) -> None:
    noise = _Noise(2)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    reasons = []
    for i in range(30):
        if i < 8:
            image = _with_square(scene, 100 + i * 12)  # walks in
        elif i < 20:
            image = _with_square(scene, 100 + 7 * 12)  # stands still
        else:
            image = scene  # gone
        reasons.append(gate.check(frame_of(noise(image), i, i * 0.5)).reason)
    assert reasons[0] is GateReason.FIRST
    assert all(r is GateReason.CHANGE for r in reasons[1:8])
    # Stopping is seen within the slow reference's lag (LONG_LAG_FACTOR * lag_s = 2 s = 4 frames here).
    assert all(r is GateReason.STATIC for r in reasons[12:20])
    # Leaving makes the frame look like the background, but the model last saw the square: it must pass.
    assert reasons[20] is GateReason.CHANGE
    assert all(r is GateReason.STATIC for r in reasons[21:])


def test_slow_small_mover_is_not_lost(scene: np.ndarray) -> None:
    """One thumbnail pixel per frame is below the threshold frame-to-frame, but accumulates against the last pass."""
    noise = _Noise(3)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    reasons = [gate.check(frame_of(noise(_with_square(scene, 20 + i * 4)), i, i * 0.5)).reason for i in range(40)]
    assert reasons.count(GateReason.CHANGE) >= 15


def test_uniform_brightness_ramp_does_not_pass(scene: np.ndarray) -> None:
    noise = _Noise(4)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    dark = (scene // 3).astype(np.uint8)  # room for a ramp of 150 levels
    decisions = [gate.check(frame_of(noise(dark, offset=i), i, i * 0.5)) for i in range(150)]
    assert decisions[0].reason is GateReason.FIRST
    assert not any(d.passed for d in decisions[1:])
    assert decisions[-1].score > 100  # the raw difference is large; normalisation is what keeps it out


def test_slow_non_uniform_ramp_is_absorbed_by_the_background(scene: np.ndarray) -> None:
    noise = _Noise(5)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    passed = 0
    for i in range(150):
        image = scene.astype(np.int16)
        image[:, : W // 2] += i // 2  # left half brightens by 75 levels over the run
        passed += gate.check(frame_of(noise(np.clip(image, 0, 255).astype(np.uint8)), i, i * 0.5)).passed
    assert passed == 1  # only the first frame


@pytest.mark.parametrize("kind", ["new_scene", "lights_off", "covered"])
def test_sudden_big_change_is_global_and_rebaselines(scene: np.ndarray, kind: str) -> None:
    noise = _Noise(6)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    for i in range(5):
        gate.check(frame_of(noise(scene), i, i * 0.5))
    if kind == "new_scene":
        # another place: a high-contrast texture with different structure (a real cut changes 55-82% of pixels)
        blobs = np.random.default_rng(99).integers(0, 256, (H // 16, W // 16, 3), dtype=np.uint8)
        changed = cv2.resize(blobs, (W, H), interpolation=cv2.INTER_NEAREST)
    elif kind == "lights_off":
        changed = (scene * 0.25).astype(np.uint8)
    else:
        changed = np.full_like(scene, 12)
    decision = gate.check(frame_of(noise(changed), 5, 2.5))
    assert decision.passed and decision.reason is GateReason.GLOBAL_CHANGE
    # Re-baselined at once: the new scene, held still, is static straight away.
    after = [gate.check(frame_of(noise(changed), i, i * 0.5)).reason for i in range(6, 12)]
    assert after == [GateReason.STATIC] * 6
    assert gate.counters["global_change"] == 1


def test_resolution_change_is_a_global_change(scene: np.ndarray) -> None:
    gate = ChangeGate(GateConfig())
    gate.check(frame_of(scene, 0, 0.0))
    decision = gate.check(frame_of(cv2.resize(scene, (320, 240)), 1, 0.5))
    assert decision.reason is GateReason.GLOBAL_CHANGE


def test_counters_add_up_and_are_a_copy(scene: np.ndarray) -> None:
    noise = _Noise(7)
    gate = ChangeGate(GateConfig(max_skip_s=3.0))
    n = 0
    for i in range(40):
        image = _with_square(scene, 50 + i * 15) if 10 <= i < 20 else scene
        gate.check(frame_of(noise(image), i, i * 0.5))
        n += 1
    counters = gate.counters
    assert sum(counters.values()) == n
    assert counters["first"] == 1 and counters["change"] >= 10 and counters["heartbeat"] >= 3
    counters["static"] = -1
    assert gate.counters["static"] != -1


def test_disabled_gate_passes_every_frame(scene: np.ndarray) -> None:
    gate = ChangeGate(GateConfig(enabled=False))
    decisions = [gate.check(frame_of(scene, i, i * 0.5)) for i in range(10)]
    assert all(d.passed for d in decisions)
    assert gate.skipped == 0


def test_score_is_mean_abs_difference_against_last_pass(scene: np.ndarray) -> None:
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    gate.check(frame_of(scene, 0, 0.0))
    brighter = np.clip(scene.astype(np.int16) + 10, 0, 255).astype(np.uint8)
    decision = gate.check(frame_of(brighter, 1, 0.5))
    assert decision.score == pytest.approx(10.0, abs=0.6)
    assert decision.reason is GateReason.STATIC  # uniform +10: no change after normalisation


# -- region-aware rules at native frame rate (25 fps) ------------------------------------------------

FPS = 25.0


def _swaying(scene: np.ndarray, i: int, rng: np.random.Generator) -> np.ndarray:
    """The left third 'foliage': a texture shifting back and forth by a few pixels, plus flicker of +-6 levels."""
    out = scene.astype(np.int16)
    shift = int(round(4 * np.sin(i / 3.0)))
    out[:, : W // 3] = np.roll(scene[:, : W // 3], shift, axis=1).astype(np.int16) + int(rng.integers(-6, 7))
    return np.clip(out, 0, 255).astype(np.uint8)


def test_swaying_texture_and_flicker_alone_stop_passing_once_learned_but_a_small_mover_elsewhere_passes(scene: np.ndarray) -> None:
    noise, rng = _Noise(11), np.random.default_rng(11)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    n_learn, n_quiet = int(20 * FPS), int(10 * FPS)
    for i in range(n_learn):
        gate.check(frame_of(noise(_swaying(scene, i, rng)), i, i / FPS))
    quiet = [gate.check(frame_of(noise(_swaying(scene, i, rng)), i, i / FPS)) for i in range(n_learn, n_learn + n_quiet)]
    assert sum(d.reason is GateReason.CHANGE for d in quiet) <= 0.02 * n_quiet  # the sway is learned as normal
    start = n_learn + n_quiet
    mover = [gate.check(frame_of(noise(_with_square(_swaying(scene, i, rng), 400 + (i - start) * 3)), i, i / FPS))
             for i in range(start, start + 50)]
    changed = [d for d in mover if d.reason is GateReason.CHANGE]
    assert len(changed) >= 40
    assert all(d.region is not None and d.region[0] >= 0.5 for d in changed)  # located on the right, not in the foliage


def test_a_small_mover_passes_at_native_rate_and_a_static_scene_does_not(scene: np.ndarray) -> None:
    noise = _Noise(12)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    static = [gate.check(frame_of(noise(scene), i, i / FPS)) for i in range(100)]
    assert [d.passed for d in static].count(True) == 1  # the first frame only
    moving = [gate.check(frame_of(noise(_with_square(scene, 100 + i * 2)), i, i / FPS)) for i in range(100, 150)]
    assert sum(d.reason is GateReason.CHANGE for d in moving) >= 45
    assert all(d.salience > 0 for d in moving if d.reason is GateReason.CHANGE)


@pytest.mark.parametrize("factor", [0.4, 2.2])
def test_brightness_step_is_a_lighting_change_and_rebaselines_within_a_second(scene: np.ndarray, factor: float) -> None:
    noise = _Noise(13)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    for i in range(50):
        gate.check(frame_of(noise(scene), i, i / FPS))
    stepped = np.clip(scene.astype(np.float32) * factor, 0, 255).astype(np.uint8)
    after = [gate.check(frame_of(noise(stepped), i, i / FPS)) for i in range(50, 50 + int(2 * FPS))]
    globals_ = [d for d in after if d.reason is GateReason.GLOBAL_CHANGE]
    assert after[0].reason is GateReason.GLOBAL_CHANGE and after[0].global_kind == "lighting_change"
    assert len(globals_) == 1  # reported once, never swallowed, never repeated
    assert not any(d.passed for d in after[int(FPS):])  # re-baselined: the new brightness is static within 1 s
    # ...and not blind: a mover after the step passes.
    moving = [gate.check(frame_of(noise(_with_square(stepped, 100 + k * 3)), 100 + k, (100 + k) / FPS)) for k in range(20)]
    # (Darkened to 0.4 the dark square has a third of its former contrast, so not every frame stands out.)
    assert sum(d.reason is GateReason.CHANGE for d in moving) >= 10


def test_covered_lens_is_tamper(scene: np.ndarray) -> None:
    noise = _Noise(14)
    gate = ChangeGate(GateConfig(max_skip_s=1000))
    for i in range(50):
        gate.check(frame_of(noise(scene), i, i / FPS))
    covered = np.full_like(scene, 70)  # a hand over the lens: nearly uniform, similar mean brightness
    decisions = [gate.check(frame_of(noise(covered), i, i / FPS)) for i in range(50, 75)]
    assert decisions[0].reason is GateReason.GLOBAL_CHANGE and decisions[0].global_kind == "tamper"
    assert not any(d.passed for d in decisions[1:])


def test_a_blank_first_frame_is_flagged_as_tamper() -> None:
    gate = ChangeGate(GateConfig())
    decision = gate.check(frame_of(np.zeros((240, 320, 3), np.uint8), 0, 0.0))
    assert decision.reason is GateReason.FIRST and decision.global_kind == "tamper"


def test_gate_counters_cover_only_the_reasons_it_decides(scene: np.ndarray) -> None:
    gate = ChangeGate(GateConfig())
    gate.check(frame_of(scene, 0, 0.0))
    assert set(gate.counters) == {"first", "change", "global_change", "heartbeat", "static"}
