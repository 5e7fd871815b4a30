"""``--display``: annotated frames in a window, where a display exists (cv2 GUI lives here only)."""

from __future__ import annotations

import logging
import os
import sys

import cv2

from pipeline.records import Frame, WindowStats

log = logging.getLogger("edgewatch.display")

_STATE_COLOURS = {"idle": (0, 160, 0), "observing": (0, 200, 200), "suspicious": (0, 140, 255),
                  "escalated": (255, 0, 255), "alert": (0, 0, 255), "cooldown": (200, 200, 0)}


class Display:
    def __init__(self, title: str = "edgewatch") -> None:
        self.title = title

    def show(self, frame: Frame, state: str, stats: WindowStats | None) -> None:
        image = frame.image.copy()
        colour = _STATE_COLOURS.get(state, (255, 255, 255))
        cv2.rectangle(image, (0, 0), (image.shape[1] - 1, image.shape[0] - 1), colour, 4)
        text = f"{frame.source_id} t={frame.timestamp:.1f}s {state}"
        if stats is not None:
            text += f" conf={stats.confidence_last:.2f} flags={','.join(sorted(stats.active_flags)) or '-'}"
        cv2.putText(image, text, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2, cv2.LINE_AA)
        cv2.imshow(self.title, image)
        cv2.waitKey(1)

    def close(self) -> None:
        try:
            cv2.destroyAllWindows()
        except cv2.error:
            pass


def open_display() -> Display | None:
    """A window when there is a display to show it on; otherwise a warning and headless operation."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        log.warning("--display: no display found (DISPLAY is not set); running headless")
        return None
    try:
        cv2.namedWindow("edgewatch", cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        log.warning("--display: cannot open a window (%s); running headless", str(exc).splitlines()[0])
        return None
    return Display()
