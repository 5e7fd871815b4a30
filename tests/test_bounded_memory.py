"""Every per-frame structure is bounded: after a warm-up, three times as many frames leave every container
reachable from a camera's pipeline (window, monitor, policy, gate, thresholds, student state, teacher queue,
outputs) no larger than a small constant more.  The figures over real time are bench/soak.py's."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from helpers_video import frame_of, textured_background
from pipeline.clock import ManualClock
from pipeline.config.loading import settings_from_dict
from pipeline.incidents.escalation import EscalationPolicy, Thresholds
from pipeline.camera_pipeline import CameraPipeline
from pipeline.sinks.outputs import Outputs
from pipeline.analyzers.backends import select_backends
from pipeline.teacher.queue import TeacherQueue

_SIZED = (list, dict, deque, set, frozenset, tuple)


def _containers(root: Any, path: str, depth: int, seen: set[int]) -> Iterator[tuple[str, int]]:
    """(attribute path, length) of every container reachable through attributes and string-keyed dicts."""
    if depth < 0 or id(root) in seen or isinstance(root, (str, bytes, int, float, np.ndarray, type)) or callable(root) and not hasattr(root, "__dict__"):
        return
    seen.add(id(root))
    if isinstance(root, deque) and root.maxlen is not None:
        return  # bounded by construction (the figures kept for medians, the lag samples)
    if isinstance(root, _SIZED):
        yield path, len(root)
        if isinstance(root, dict):
            for key, value in list(root.items()):
                if isinstance(key, str):
                    yield from _containers(value, f"{path}[{key}]", depth - 1, seen)
        return
    fields: dict[str, Any] = {}
    if hasattr(root, "__dict__"):
        fields.update(vars(root))
    for cls in type(root).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if hasattr(root, name):
                fields[name] = getattr(root, name)
    for name, value in fields.items():
        if name.startswith("__") or "lock" in name or isinstance(value, type(root).__mro__[-1].__class__):
            continue
        yield from _containers(value, f"{path}.{name}", depth - 1, seen)


def _sizes(*roots: tuple[str, Any]) -> dict[str, int]:
    seen: set[int] = set()
    out: dict[str, int] = {}
    for name, root in roots:
        for path, size in _containers(root, name, 6, seen):
            out[path] = max(out.get(path, 0), size)
    return out


def _frames(start: int, count: int, rng: np.random.Generator) -> Iterator[Any]:
    background = textured_background(320, 240, seed=3)
    for index in range(start, start + count):
        image = background.copy()
        x = int(40 + 200 * abs(np.sin(index / 25.0)))
        image[80:200, x:x + 40] = (40, 40, 200)  # a mover crossing the view, back and forth
        if index % 97 < 6:
            image[:] = 0  # now and then the lens is covered: tamper events open and close
        image = np.clip(image.astype(np.int16) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
        yield frame_of(image, index, index / 2.0, source_id="cam0")


def test_no_per_frame_structure_grows_with_the_number_of_frames(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = settings_from_dict({
        "output": {"out_dir": str(tmp_path)}, "student": {"backend": "offline"}, "teacher": {"backend": "offline"},
        "adaptive": {"enabled": True, "state_file": str(tmp_path / "state.json")},
    })
    backends = select_backends(settings, clock)
    queue = TeacherQueue(backends.teacher, settings.teacher, clock)
    outputs = Outputs(tmp_path, run_id="t")
    outputs.keyframes.keep = 5  # capped structures are held to a small cap, so the walk sees the cap work
    pipelines: dict[str, CameraPipeline] = {}

    def settle() -> None:
        for result in queue.poll():
            pipelines["cam0"].apply_result(result)

    pipe = CameraPipeline("cam0", settings, backends, queue, outputs, replay=True, description="synthetic",
                          policy=EscalationPolicy(Thresholds.from_config(settings.escalation)), settle_verdicts=settle, clock=clock)
    pipelines["cam0"] = pipe
    rng = np.random.default_rng(5)
    roots = (("pipe", pipe), ("student", backends.student), ("teacher", backends.teacher), ("queue", queue), ("outputs", outputs))
    try:
        for frame in _frames(0, 150, rng):
            pipe.process(frame)
            clock.advance(0.5)
        settle()
        warm = _sizes(*roots)
        for frame in _frames(150, 450, rng):
            pipe.process(frame)
            clock.advance(0.5)
        settle()
        later = _sizes(*roots)
    finally:
        queue.close(drain=False, timeout_s=1.0)
        outputs.close()
    assert pipe.summary.frames_analysed > 100 and pipe.summary.events_by_type  # the run did real work
    assert len(warm) > 20  # the walk reached the stages' containers
    grown = {path: (warm.get(path, 0), size) for path, size in later.items() if size > 1.5 * warm.get(path, 0) + 10}
    assert not grown, f"containers that grow with the number of frames (after 150 -> 600 frames): {grown}"
