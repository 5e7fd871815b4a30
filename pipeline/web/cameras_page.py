"""Cameras: per camera the newest analysed frame (annotated with its state), the state machine's
state, frames/s, lag and the last event.  Inside a run the figures are live; `serve` on a
finished folder shows what the logs and summary.json say."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.sinks.decision_log import StateTransition
from pipeline.web.context import ReviewContext
from pipeline.web.events_page import snapshot_url

Render = Callable[..., Response]
_STATE_COLOURS = {"idle": (0, 160, 0), "observing": (0, 200, 200), "suspicious": (0, 140, 255),
                  "escalated": (255, 0, 255), "alert": (0, 0, 255), "cooldown": (200, 200, 0)}


def annotate(jpeg: bytes, camera: str, state: str) -> bytes:
    """The frame with a state-coloured border and a caption (drawn here, not in the runner)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return jpeg
    colour = _STATE_COLOURS.get(state, (255, 255, 255))
    cv2.rectangle(image, (0, 0), (image.shape[1] - 1, image.shape[0] - 1), colour, 4)
    cv2.putText(image, f"{camera} {state}", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
    ok, out = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return out.tobytes() if ok else jpeg


def _summaries(ctx: ReviewContext) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((ctx.out_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    items = data.get("cameras", [data]) if isinstance(data, dict) else []
    return {str(s.get("camera")): s for s in items if isinstance(s, dict)}


class CameraFigures:
    """Frames/s from the difference of the run's analysed counters between two looks at least a second apart."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, int, float | None]] = {}

    def rate(self, camera: str, analysed: int) -> float | None:
        now = time.monotonic()
        last = self._last.get(camera)
        if last is None:
            self._last[camera] = (now, analysed, None)
            return None
        then, count, rate = last
        if now - then >= 1.0:
            rate = (analysed - count) / (now - then)
            self._last[camera] = (now, analysed, rate)
        return rate


def cameras_view(ctx: ReviewContext, figures: CameraFigures) -> list[dict[str, Any]]:
    ctx.refresh()
    live = (ctx.health() if ctx.health is not None else {}).get("cameras", {})
    summaries = _summaries(ctx)
    names = sorted(set(ctx.index.distinct("camera")) | set(live) | set(summaries))
    out = []
    for camera in names:
        last_event = ctx.index.latest_event(camera)
        h = live.get(camera)
        if h is not None:
            view = {"state": h.get("state"), "fps": figures.rate(camera, int(h.get("analysed", 0))),
                    "lag_s": h.get("last_frame_age_s"), "source_t": h.get("source_t"), "connected": h.get("connected"),
                    "frame": f"/cameras/{camera}/frame.jpg?n={h.get('analysed', 0)}", "live": True}
        else:
            transition = ctx.index.last_decision(camera, "transition")
            summary = summaries.get(camera, {})
            view = {"state": transition.dest if isinstance(transition, StateTransition) else None, "fps": summary.get("frames_per_second"),
                    "lag_s": (summary.get("lag_s") or {}).get("p50"), "source_t": summary.get("source_seconds"),
                    "connected": None, "live": False,
                    "frame": snapshot_url(ctx.out_dir, str(last_event["id"]), last_event.get("snapshot")) if last_event else None}
        out.append({"camera": camera, "last_event": last_event, **view})
    return out


def routes(ctx: ReviewContext, render: Render) -> list[Route]:
    figures = CameraFigures()

    def cameras(request: Request) -> Response:
        return render(request, "cameras.html", cameras=cameras_view(ctx, figures))

    def cards(request: Request) -> Response:
        return render(request, "_cameras.html", cameras=cameras_view(ctx, figures))

    def frame(request: Request) -> Response:
        camera = request.path_params["camera"]
        jpeg = ctx.latest_jpeg(camera) if ctx.latest_jpeg is not None else None
        if jpeg is None:
            raise HTTPException(404, f"no live frame for camera {camera}")
        state = ((ctx.health() if ctx.health is not None else {}).get("cameras", {}).get(camera) or {}).get("state", "")
        return Response(annotate(jpeg, camera, str(state)), media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    return [Route("/cameras", cameras, name="cameras"), Route("/cameras/cards", cards, name="camera_cards"),
            Route("/cameras/{camera}/frame.jpg", frame, name="camera_frame")]
