"""Encoding: size bounds, aspect, JPEG/base64 round trip, quality."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest

from pipeline.config.encode import EncodeConfig
from pipeline.frames.encode import EncodeError, encode_frame, target_size
from pipeline.records import GateDecision, GateReason
from tests.helpers_video import frame_of, textured_background

GATE = GateDecision(passed=True, reason=GateReason.CHANGE, score=12.0, changed_fraction=0.02)


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((1920, 1080), 896, (896, 504)),
        ((1080, 1920), 896, (504, 896)),  # portrait: the longest side is the height
        ((3840, 2160), 896, (896, 504)),
        ((640, 360), 896, (640, 360)),  # never upscale
        ((1000, 1000), 500, (500, 500)),
        ((4000, 10), 200, (200, 1)),  # extreme aspect keeps at least one pixel
    ],
)
def test_encoded_size_is_bounded_and_keeps_aspect(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    w, h = size
    assert target_size(w, h, max_side) == expected
    frame = frame_of(textured_background(w, h, seed=2), 7, 0.28)
    encoded = encode_frame(frame, GATE, EncodeConfig(max_side=max_side))
    decoded = _decode(encoded.jpeg)
    assert (encoded.width, encoded.height) == expected
    assert decoded.shape[:2] == (expected[1], expected[0])
    assert max(decoded.shape[:2]) <= max_side
    if min(expected) > 10:
        assert decoded.shape[1] / decoded.shape[0] == pytest.approx(w / h, rel=0.01)
    assert encoded.frame is frame and encoded.gate == GATE and encoded.timestamp == 0.28


def test_base64_round_trips_to_the_jpeg() -> None:
    frame = frame_of(textured_background(1280, 720, seed=4), 0, 0.0)
    encoded = encode_frame(frame, GATE, EncodeConfig())
    assert isinstance(encoded.b64, str) and encoded.b64.isascii()
    assert base64.b64decode(encoded.b64, validate=True) == encoded.jpeg
    assert encoded.jpeg[:2] == b"\xff\xd8" and encoded.jpeg[-2:] == b"\xff\xd9"


def test_decoded_image_resembles_the_source() -> None:
    source = textured_background(1920, 1080, seed=5)
    encoded = encode_frame(frame_of(source, 0, 0.0), GATE, EncodeConfig(max_side=896, jpeg_quality=90))
    reference = cv2.resize(source, (encoded.width, encoded.height), interpolation=cv2.INTER_AREA)
    # Luma only: JPEG's 4:2:0 chroma subsampling alone costs ~5 levels on this saturated random-colour texture.
    decoded_luma = cv2.cvtColor(_decode(encoded.jpeg), cv2.COLOR_BGR2GRAY).astype(np.int16)
    reference_luma = cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY).astype(np.int16)
    assert np.abs(decoded_luma - reference_luma).mean() < 2.0


def test_quality_changes_size() -> None:
    rng = np.random.default_rng(6)
    busy = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 1.5)
    frame = frame_of(busy, 0, 0.0)
    sizes = [len(encode_frame(frame, GATE, EncodeConfig(jpeg_quality=q)).jpeg) for q in (20, 60, 95)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_grey_image_is_encoded() -> None:
    grey = textured_background(400, 300, seed=7)[:, :, 0].copy()
    encoded = encode_frame(frame_of(grey, 0, 0.0), GATE, EncodeConfig(max_side=200))
    assert (encoded.width, encoded.height) == (200, 150)


def test_empty_image_is_a_clear_error() -> None:
    with pytest.raises(EncodeError, match="empty"):
        encode_frame(frame_of(np.zeros((0, 0, 3), np.uint8), 0, 0.0), GATE, EncodeConfig())
