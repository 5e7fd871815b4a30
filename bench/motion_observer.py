"""What the dense motion observer costs per frame, and what decoding the frames between samples costs.

Generated frames (the demo's room with a walking figure) at 640x360 and 1280x720:

* ``observe``: `MotionObserver.observe` on one frame (downscale, grey, MOG2, blobs, tracking);
* ``retrieve``: what capture pays per frame once it must hand every decoded frame over
  (``cv2.VideoCapture.retrieve``, the colour conversion that sampling before decode skipped),
  measured on an MJPG file of the same frames.

    .venv/bin/python bench/motion_observer.py [--frames 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.demo import Lighting, Room, Scene, Walker, render_frame  # noqa: E402
from pipeline.frames.motion import MotionObserver  # noqa: E402


def frames(size: tuple[int, int], n: int, fps: float) -> list:
    walker = Walker(enter=0.0, exit=1e9, path=((0.0, 0.1), (n / fps, 0.9)))
    scene = Scene(room=Room(size=size, seed=3), actors=(walker,), lighting=Lighting())
    return [render_frame(scene, i / fps) for i in range(n)]


def observe_ms(images: list, fps: float) -> list[float]:
    observer = MotionObserver()
    out = []
    for i, image in enumerate(images):
        started = time.perf_counter()
        observer.observe(image, i / fps)
        out.append((time.perf_counter() - started) * 1000.0)
    return out[5:]  # the first frames set the background up


def retrieve_ms(images: list, fps: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.avi"
        h, w = images[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
        for image in images:
            writer.write(image)
        writer.release()
        cap = cv2.VideoCapture(str(path))
        out = []
        while cap.grab():
            started = time.perf_counter()
            cap.retrieve()
            out.append((time.perf_counter() - started) * 1000.0)
        cap.release()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    fps = 25.0
    print(f"{'size':>10} {'observe ms (median / p95)':>28} {'retrieve ms (median / p95)':>28}")
    for size in ((640, 360), (1280, 720)):
        images = frames(size, args.frames, fps)
        obs = sorted(observe_ms(images, fps))
        ret = sorted(retrieve_ms(images, fps))
        print(f"{size[0]}x{size[1]:<5} {statistics.median(obs):>17.2f} / {obs[int(0.95 * len(obs))]:<8.2f}"
              f" {statistics.median(ret):>17.2f} / {ret[int(0.95 * len(ret))]:<8.2f}")
    print("The observer runs at most motion.fps (12.5) frames a second; retrieve is paid on every decoded frame.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
