"""Resize, JPEG-encode and base64 a frame — once per analysed frame, reused by every consumer."""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import replace

os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.config.encode import EncodeConfig  # noqa: E402
from pipeline.errors import EdgewatchError  # noqa: E402
from pipeline.records import EncodedFrame, Frame, GateDecision  # noqa: E402


class EncodeError(EdgewatchError):
    """A frame could not be encoded (empty or malformed image)."""


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) with the longest side at most ``max_side``; never upscales; keeps the aspect."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


_buffers = threading.local()


def _scratch(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A per-thread scratch image reused across calls (fresh multi-MB allocations cost page faults)."""
    buffer = getattr(_buffers, name, None)
    if buffer is None or buffer.shape != shape:
        buffer = np.empty(shape, dtype=np.uint8)
        setattr(_buffers, name, buffer)
    return buffer


def downscale(image: np.ndarray, size: tuple[int, int], *, scratch: bool = False) -> np.ndarray:
    """Anti-aliased downscale to ``size`` (width, height).

    INTER_AREA is an exact box average but OpenCV only has a fast path for *integer*
    factors: 1920x1080 -> 896x504 directly costs ~12 ms on one core.  So the integer part of
    the reduction is done with INTER_AREA (fast path, ~0.6 ms for 1/2) and the remaining
    factor, always below 2, with INTER_LINEAR, which does not alias below 2x (~1 ms).
    """
    h, w = image.shape[:2]
    tw, th = size
    if (tw, th) == (w, h):
        return image
    channels = image.shape[2:]
    factor = int(min(w / tw, h / th))
    if factor >= 2:
        mid = (h // factor, w // factor, *channels)
        dst = _scratch("mid", mid) if scratch else None
        image = cv2.resize(image, (w // factor, h // factor), dst=dst, interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    if (tw, th) == (w, h):
        return image
    dst = _scratch("out", (th, tw, *channels)) if scratch else None
    return cv2.resize(image, (tw, th), dst=dst, interpolation=cv2.INTER_LINEAR if w < 2 * tw else cv2.INTER_AREA)


def encode_image(image: np.ndarray, cfg: EncodeConfig) -> tuple[bytes, int, int]:
    """JPEG bytes and (width, height) of ``image`` resized for the models."""
    if image is None or image.size == 0 or image.ndim not in (2, 3):
        raise EncodeError(f"cannot encode an empty or malformed image (shape {getattr(image, 'shape', None)})")
    h, w = image.shape[:2]
    tw, th = target_size(w, h, cfg.max_side)
    small = downscale(image, (tw, th), scratch=True)  # consumed by imencode right away
    ok, buffer = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)])
    if not ok:
        raise EncodeError(f"JPEG encoding failed for a {w}x{h} image")
    return buffer.tobytes(), tw, th


def encode_frame(frame: Frame, gate: GateDecision, cfg: EncodeConfig) -> EncodedFrame:
    """Resize so the longest side <= ``cfg.max_side`` (never upscale), JPEG at ``cfg.jpeg_quality``, base64."""
    jpeg, width, height = encode_image(frame.image, cfg)
    return EncodedFrame(
        frame=frame,
        jpeg=jpeg,
        b64=base64.b64encode(jpeg).decode("ascii"),
        width=width,
        height=height,
        gate=gate,
    )


def slim_encoded(item: EncodedFrame) -> EncodedFrame:
    """The same encoded frame with ``frame.image`` replaced by the resized copy the model saw.

    What outlives the analysis of one frame (the sliding window, keyframes of an escalation, the
    agreement store) keeps this small copy, never the full-resolution decode: 20 frames of 1080p are
    about 120 MB per camera, of 896 px about 27 MB.  ``item.frame.image`` still works for every reader.
    """
    image = item.frame.image
    if image.shape[1] == item.width and image.shape[0] == item.height:
        return item
    small = downscale(image, (item.width, item.height))
    small.flags.writeable = False
    return replace(item, frame=replace(item.frame, image=small))
