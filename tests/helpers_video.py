"""Deterministic synthetic frames and clips for the capture/gate/encode tests (generated, never downloaded)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from fixtures.demo import Walker
from pipeline.records import Frame


def textured_background(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth, textured BGR scene (so compression and the gate see structure, not flat colour)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    scene = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(scene.astype(np.int16) // 2 + 64, 0, 255).astype(np.uint8)


def numbered_frame(index: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A frame whose content encodes its index (a bar whose position and brightness move)."""
    image = textured_background(width, height, seed=1)
    x = (index * 7) % (width - 20)
    cv2.rectangle(image, (x, 40), (x + 20, 120), (255, 255, 255), -1)
    cv2.putText(image, str(index), (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
    return image


def write_video(path: Path, images: Iterable[np.ndarray], fps: float, fourcc: str = "MJPG") -> Path:
    images = list(images)
    h, w = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"VideoWriter could not open {path} with {fourcc}"
    for image in images:
        writer.write(image)
    writer.release()
    return path


def make_clip(path: Path, n_frames: int, fps: float, fourcc: str = "MJPG", size: tuple[int, int] = (320, 240)) -> Path:
    return write_video(path, (numbered_frame(i, *size) for i in range(n_frames)), fps, fourcc)


def frame_of(image: np.ndarray, index: int, timestamp: float, source_id: str = "cam-test") -> Frame:
    return Frame(source_id=source_id, index=index, timestamp=timestamp, image=image)


def pacing_then_falling(fall_t: float) -> Walker:
    """Walks to and fro for ``fall_t`` seconds (turning, slowing), then falls over in 0.6 s and lies there."""
    path, x, t = [], 0.2, 0.0
    while t < fall_t:
        path.append((t, x))
        x = 0.75 if x < 0.5 else 0.2
        t += 3.0
    path += [(fall_t, 0.45), (60.0, 0.45)]
    return Walker(enter=0.0, exit=60.0, path=tuple(path), tilt=((fall_t, 0.0), (fall_t + 0.6, 90.0)))
