"""The progress line for files on a terminal (the one module that uses tqdm).

Frames per second, video time done of the total, events so far and the ETA, on stderr; silent
when stderr is not a terminal or with ``--quiet``, and for live sources (they have no end).
"""

from __future__ import annotations

import sys
from typing import IO

from tqdm import tqdm


class FileProgress:
    """Called once per decoded frame with (index, frame count, timestamp, fps); `done()` at the end."""

    def __init__(self, *, enabled: bool, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self.enabled = enabled
        self._bar: tqdm | None = None
        self.events = 0
        self._shown = -1

    def event_started(self) -> None:
        self.events += 1

    def __call__(self, index: int, total: int | None, timestamp: float = 0.0, fps: float = 0.0) -> None:
        if not self.enabled or not total:
            return
        if self._bar is None:
            self._bar = tqdm(total=total, unit="frame", file=self._stream, leave=True, dynamic_ncols=True,
                             mininterval=0.5, smoothing=0.1)
        step = index + 1 - self._bar.n
        if step > 0:
            duration = f"/{total / fps:.0f}" if fps > 0 else ""
            if int(timestamp) != self._shown:  # the text changes once per video second, not per frame
                self._shown = int(timestamp)
                self._bar.set_postfix_str(f"video {timestamp:.0f}{duration} s, events {self.events}", refresh=False)
            self._bar.update(step)

    def clear(self) -> None:
        """Take the bar off the terminal before a line goes to stdout (it comes back at the next frame)."""
        if self._bar is not None:
            self._bar.clear()

    def done(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
