"""Frame sources: video files, image folders, webcams and network streams, plus sampling.

``open_source(spec, ...)`` turns a command-line source spec into a `FrameSource`, an
iterable of `pipeline.records.Frame`.  Every failure to open is a `SourceError` with one
line (credentials masked); failures while reading are logged and counted in
`FrameSource.stats`, never raised as tracebacks.

Sampling happens here, before the gate: ``source.frames(sampler=Sampler(2.0))`` grabs every
frame (cheap: demux + decode, no colour conversion or copy) and only *retrieves* (converts to
BGR) the frames the sampler keeps.  Image folders skip reading dropped files altogether.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

# Quiet OpenCV before it is imported: its FFmpeg/V4L probes otherwise write many lines to stderr.
os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET: damaged-packet chatter is counted, not printed

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.clock import Clock  # noqa: E402
from pipeline.config.capture import CaptureConfig  # noqa: E402
from pipeline.errors import SourceError  # noqa: E402
from pipeline.masking import mask_url  # noqa: E402
from pipeline.records import Frame  # noqa: E402

try:  # the Python binding of the log-level setter moved between OpenCV 4.x releases
    cv2.setLogLevel(0)  # 0 = SILENT
except Exception:  # pragma: no cover - depends on the OpenCV build
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except Exception:
        pass

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
FALLBACK_FPS = 25.0
#: Frame rates outside this range are treated as "the file does not know" (containers report 0, 1000, 90000...).
_SANE_FPS = (0.5, 500.0)
#: How many consecutive failed reads a live source tolerates before it is treated as ended.
_LIVE_MAX_FAILED_READS = 3

_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")
_DIGITS = re.compile(r"(\d+)")


#: A live stream's own timestamps are trusted while they stay this close to the clock (seconds).
_STREAM_DRIFT_S = 2.0


def mask_credentials(url: str) -> str:
    """Hide the password (and secret query values) of a URL: ``rtsp://user:***@host/...``.

    A userinfo without a colon (``rtsp://token@host``) is hidden entirely, because a bare
    token is a secret too.  Parsing rules: `pipeline.masking`.
    """
    return mask_url(url)


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``img2`` before ``img10`` (digit runs compare as numbers)."""
    parts = tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in _DIGITS.split(name) if part)
    return (parts, name)  # the exact name breaks ties (img01 vs img1, IMG vs img) deterministically


def _sane_fps(value: float) -> float | None:
    if math.isfinite(value) and _SANE_FPS[0] <= value <= _SANE_FPS[1]:
        return float(value)
    return None


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


class Sampler:
    """Keeps at most ``sample_fps`` frames per second of source time.

    The first frame is always kept; afterwards a frame is kept when its timestamp reaches
    ``next_due``, which is set to *the kept frame's timestamp* plus one period.  Kept frames
    are therefore at least one period apart whatever the jitter (never more than
    ``sample_fps`` per second); on a frame grid that does not divide the period, the kept
    rate is a little below ``sample_fps`` rather than above it.

    A timestamp that jumps back by more than ``max(1 s, 2 periods)`` means the source
    restarted (a stream reconnected, a clip looped): the sampler re-arms instead of
    waiting for time to catch up.
    """

    #: Tolerance for float timestamps such as 15/30 that should equal 0.5 exactly.
    _EPS = 1e-9

    def __init__(self, sample_fps: float) -> None:
        if not (math.isfinite(sample_fps) and sample_fps > 0):
            raise ValueError(f"sample_fps must be a positive number (got {sample_fps!r})")
        self.sample_fps = float(sample_fps)
        self.period = 1.0 / self.sample_fps
        self._next_due: float | None = None
        self._last_accepted: float | None = None
        self.accepted = 0
        self.dropped = 0

    def accept(self, frame_timestamp: float) -> bool:
        ts = float(frame_timestamp)
        if not math.isfinite(ts):
            self.dropped += 1
            return False
        restarted = self._last_accepted is not None and ts < self._last_accepted - max(1.0, 2 * self.period)
        if self._next_due is None or restarted or ts >= self._next_due - self._EPS:
            self._next_due = ts + self.period
            self._last_accepted = ts
            self.accepted += 1
            return True
        self.dropped += 1
        return False


# --------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------


@dataclass
class CaptureStats:
    """Counters of one source (mutable, owned by the source; copy with ``dataclasses.replace`` to snapshot)."""

    frames_grabbed: int = 0
    """Frames demuxed/decoded (files, cameras) or listed (image folders)."""
    frames_read: int = 0
    """Frames converted to BGR and yielded."""
    frames_sampled_out: int = 0
    """Frames dropped by the sampler before colour conversion (or before reading the image file)."""
    bad_frames: int = 0
    """Reads that failed before the source's end (corrupt/truncated data, unreadable images)."""
    last_timestamp: float = 0.0
    """Source time of the newest frame grabbed (sampled out or not): where the source ended."""
    ended_early: bool = False
    """The source stopped because of ``max_bad_frames`` consecutive failures (or a lost live stream)."""
    end_reason: str = ""


class FrameSource:
    """An iterable of `Frame`; use as a context manager or call `close()`.

    Iterating yields every frame; ``frames(sampler=...)`` yields only the sampled ones and
    skips the decode work of the rest where the backend allows it.
    """

    fps: float
    frame_count: int | None
    is_live: bool
    description: str
    stats: CaptureStats

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[Frame]:
        return self.frames()

    def close(self) -> None:  # pragma: no cover - overridden
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


class _Pacer:
    """Paces yielded frames to their source timestamps on an injected clock (``realtime``)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._origin: tuple[float, float] | None = None  # (clock time, source time) of the first frame

    def wait_for(self, timestamp: float) -> None:
        now = self._clock.monotonic()
        if self._origin is None:
            self._origin = (now, timestamp)
            return
        due = self._origin[0] + (timestamp - self._origin[1])
        if due > now:
            self._clock.sleep(due - now)


class VideoCaptureSource(FrameSource):
    """A file, webcam or network stream read through ``cv2.VideoCapture``."""

    def __init__(
        self,
        capture: "cv2.VideoCapture",
        *,
        camera_id: str,
        cfg: CaptureConfig,
        clock: Clock,
        description: str,
        is_live: bool,
        stream_timed: bool = False,
    ) -> None:
        self._cap = capture
        # RTSP carries real presentation times (RTP); an HTTP MJPEG stream's POS_MSEC is a
        # frame count at a guessed rate, and a webcam's is driver-dependent: both use the clock.
        self._use_stream_time = is_live and stream_timed
        self._camera_id = camera_id
        self._cfg = cfg
        self._clock = clock
        self.description = description
        self.is_live = is_live
        self.stats = CaptureStats()
        reported_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        sane = _sane_fps(reported_fps)
        if sane is None and not is_live:
            log.info("%s reports %.3g fps; assuming %.0f fps", description, reported_fps, FALLBACK_FPS)
        self.fps = sane if sane is not None else FALLBACK_FPS
        # When the frame rate is nonsense, the container's time base (and POS_MSEC) is too.
        self._trust_pos_msec = sane is not None
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if (not is_live and math.isfinite(count) and count > 0) else None
        self._opened_at = clock.monotonic()
        self._stream_anchor: tuple[float, float] | None = None
        self.stream_timed = 0
        """Live frames stamped from the stream's own presentation time (rather than the clock)."""
        self._index = -1  # decoded frame number of the last grabbed frame
        self._last_ts = -math.inf
        self._closed = False
        self._started = False
        # Probe the first frame now so "opens but is not a video" fails at open time, not mid-run.
        self._pending: tuple[int, float] | None = None
        if not self._grab_with_retries(first=True):
            self.close()
            what = "stream" if is_live else "file"
            raise SourceError(f"{what} opened but no frame could be read: {description}")
        self._pending = (self._index, self._last_ts)

    # -- reading -----------------------------------------------------------------------

    def _timestamp(self, index: int) -> float:
        if self.is_live:
            clock_ts = self._clock.monotonic() - self._opened_at
            ts = clock_ts
            pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC) if self._use_stream_time else math.nan
            # A stream that carries presentation times (RTSP, HLS) gives frame-accurate time;
            # it is anchored to the clock at its first frame and dropped (re-anchored) when it
            # stalls, jumps back, or drifts more than _STREAM_DRIFT_S from the clock.
            if self._use_stream_time and math.isfinite(pos_ms) and pos_ms > 0:
                if self._stream_anchor is None:
                    self._stream_anchor = (clock_ts, pos_ms)
                stream_ts = self._stream_anchor[0] + (pos_ms - self._stream_anchor[1]) / 1000.0
                if stream_ts > self._last_ts and abs(stream_ts - clock_ts) <= _STREAM_DRIFT_S:
                    ts = stream_ts
                    self.stream_timed += 1
                else:
                    self._stream_anchor = (clock_ts, pos_ms)
        else:
            by_index = index / self.fps
            pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            # POS_MSEC is the decoder's presentation time (right for variable frame rate); some
            # containers report 0 or garbage, so it is used only when finite and moving forward.
            if (
                self._trust_pos_msec
                and math.isfinite(pos_ms)
                and pos_ms >= 0
                and (index == 0 or pos_ms / 1000.0 > self._last_ts)
            ):
                ts = pos_ms / 1000.0
            else:
                ts = by_index
        return max(ts, self._last_ts if math.isfinite(self._last_ts) else ts)

    def _grab_with_retries(self, *, first: bool = False) -> bool:
        """Grab the next frame, skipping (and counting) unreadable ones.  False at the end."""
        failures = 0
        limit = 1 if first else (_LIVE_MAX_FAILED_READS if self.is_live else self._cfg.max_bad_frames)
        while True:
            try:
                ok = bool(self._cap.grab())
            except cv2.error as exc:  # a broken stream can throw from inside the backend
                log.debug("grab raised on %s: %s", self.description, exc)
                ok = False
            if ok:
                self._index += 1
                self.stats.frames_grabbed += 1
                self._last_ts = self._timestamp(self._index)
                self.stats.last_timestamp = self._last_ts
                return True
            if first:
                return False
            if not self.is_live:
                # Each failed grab stands for one lost frame of the count the container reports;
                # once those are used up (or the count is unknown) this is the end of the file.
                remaining = None if self.frame_count is None else self.frame_count - (self._index + 1) - failures
                if remaining is None or remaining <= 0:
                    if 0 < failures <= max(2, self.frame_count // 100 if self.frame_count else 0):
                        # Containers often over-report their length by a frame or two: not damage.
                        self.stats.bad_frames -= failures
                        self.stats.end_reason = f"end of file ({failures} fewer frames than the container reported)"
                        log.info("%s: %s", self.description, self.stats.end_reason)
                    elif failures:
                        self.stats.ended_early = True
                        self.stats.end_reason = f"end of file after {failures} unreadable frames"
                        log.warning("%s: the last %d frames could not be read (truncated?)", self.description, failures)
                    else:
                        self.stats.end_reason = "end of file"
                    return False
            failures += 1
            self.stats.bad_frames += 1
            if failures >= limit:
                self.stats.ended_early = True
                if self.is_live:
                    self.stats.end_reason = f"stream lost after {failures} failed reads"
                    log.warning("%s: %d reads failed in a row; treating the stream as ended", self.description, failures)
                else:
                    self.stats.end_reason = f"{failures} unreadable frames in a row"
                    log.warning(
                        "%s: %d unreadable frames in a row after frame %d of %s; treating the file as ended",
                        self.description, failures, self._index, self.frame_count,
                    )
                return False

    def _retrieve(self) -> np.ndarray | None:
        try:
            ok, image = self._cap.retrieve()
        except cv2.error:
            return None
        if not ok or image is None or image.size == 0:
            return None
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        image.flags.writeable = False
        return image

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:
        if self._started:
            raise SourceError(f"{self.description} can be iterated only once")
        self._started = True
        pacer = _Pacer(self._clock) if (self._cfg.realtime and not self.is_live) else None
        consecutive_bad = 0
        try:
            while not self._closed:
                if self._pending is not None:
                    index, ts = self._pending
                    self._pending = None
                elif self._grab_with_retries():
                    index, ts = self._index, self._last_ts
                else:
                    return
                if sampler is not None and not sampler.accept(ts):
                    self.stats.frames_sampled_out += 1
                    continue
                image = self._retrieve()
                if image is None:
                    self.stats.bad_frames += 1
                    consecutive_bad += 1
                    if consecutive_bad >= self._cfg.max_bad_frames:
                        self.stats.ended_early = True
                        self.stats.end_reason = f"{consecutive_bad} undecodable frames in a row"
                        log.warning("%s: %d undecodable frames in a row; treating it as ended", self.description, consecutive_bad)
                        return
                    continue
                consecutive_bad = 0
                if pacer is not None:
                    pacer.wait_for(ts)
                self.stats.frames_read += 1
                yield Frame(source_id=self._camera_id, index=index, timestamp=ts, image=image)
        finally:
            if not self.stats.end_reason and self._closed:
                self.stats.end_reason = "closed"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cap.release()


class ImageFolderSource(FrameSource):
    """The images of a folder in natural name order; ``index`` is the position in that order."""

    def __init__(
        self, folder: Path, files: list[Path], *, camera_id: str, cfg: CaptureConfig, clock: Clock, fps: float | None
    ) -> None:
        self._files = files
        self._camera_id = camera_id
        self._cfg = cfg
        self._clock = clock
        self.fps = float(fps) if fps else 1.0
        self.frame_count = len(files)
        self.is_live = False
        self.description = f"image folder {folder} ({len(files)} images)"
        self.stats = CaptureStats()
        self._closed = False

    def frames(self, sampler: Sampler | None = None) -> Iterator[Frame]:
        pacer = _Pacer(self._clock) if self._cfg.realtime else None
        consecutive_bad = 0
        for index, path in enumerate(self._files):
            if self._closed:
                self.stats.end_reason = "closed"
                return
            self.stats.frames_grabbed += 1
            ts = index / self.fps
            self.stats.last_timestamp = ts
            if sampler is not None and not sampler.accept(ts):
                self.stats.frames_sampled_out += 1
                continue
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.size == 0:
                self.stats.bad_frames += 1
                consecutive_bad += 1
                log.warning("skipping unreadable image %s", path)
                if consecutive_bad >= self._cfg.max_bad_frames:
                    self.stats.ended_early = True
                    self.stats.end_reason = f"{consecutive_bad} unreadable images in a row"
                    log.warning("%s: %d unreadable images in a row; stopping", self.description, consecutive_bad)
                    return
                continue
            consecutive_bad = 0
            image.flags.writeable = False
            if pacer is not None:
                pacer.wait_for(ts)
            self.stats.frames_read += 1
            yield Frame(source_id=self._camera_id, index=index, timestamp=ts, image=image)
        self.stats.end_reason = "end of folder"

    def close(self) -> None:
        self._closed = True


# --------------------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------------------


def _open_capture(target: str | int, api: int, params: list[int]) -> "cv2.VideoCapture":
    try:
        return cv2.VideoCapture(target, api, params) if params else cv2.VideoCapture(target, api)
    except (cv2.error, SystemError, TypeError):
        cap = cv2.VideoCapture()
        return cap


def open_source(
    spec: str, *, camera_id: str, cfg: CaptureConfig, clock: Clock, folder_fps: float | None = None
) -> FrameSource:
    """Open ``spec``: a video file, a folder of images, a webcam index ("0") or a stream URL.

    ``folder_fps`` sets the frame rate of an image folder (default 1 image per second).
    Raises `SourceError` with one line (credentials masked) when the source cannot be opened.
    """
    spec = spec.strip()
    if not spec:
        raise SourceError("empty source: give a video file, an image folder, a camera index or a URL")

    if re.fullmatch(r"\d+", spec):
        index = int(spec)
        cap = _open_capture(index, cv2.CAP_ANY, [])
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {index} could not be opened")
        return VideoCaptureSource(cap, camera_id=camera_id, cfg=cfg, clock=clock, description=f"camera {index}", is_live=True)

    if spec.lower().startswith("file://"):
        spec = spec[len("file://"):]
    elif _URL_SCHEME.match(spec):
        shown = mask_credentials(spec)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_ms),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_ms),
        ]
        cap = _open_capture(spec, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"stream could not be opened: {shown}")
        return VideoCaptureSource(cap, camera_id=camera_id, cfg=cfg, clock=clock, description=f"stream {shown}", is_live=True,
                                  stream_timed=spec.lower().startswith(("rtsp://", "rtsps://")))

    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"no such file: {path}")
    if path.is_dir():
        try:
            files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        except OSError as exc:
            raise SourceError(f"cannot list folder {path}: {exc.strerror or exc}") from None
        if not files:
            raise SourceError(
                f"no images in folder: {path} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        files.sort(key=lambda p: natural_key(p.name))
        return ImageFolderSource(path, files, camera_id=camera_id, cfg=cfg, clock=clock, fps=folder_fps)
    if not path.is_file():
        raise SourceError(f"not a regular file: {path}")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise SourceError(f"empty file (0 bytes): {path}")
    cap = _open_capture(str(path), cv2.CAP_FFMPEG, [])
    if not cap.isOpened():
        cap.release()
        # Without FFmpeg (or for image-sequence patterns) another backend may still manage.
        cap = _open_capture(str(path), cv2.CAP_ANY, [])
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"not a video OpenCV can read: {path}")
    try:
        return VideoCaptureSource(cap, camera_id=camera_id, cfg=cfg, clock=clock, description=f"file {path}", is_live=False)
    except SourceError:
        raise SourceError(f"not a video OpenCV can read (no frame decodes): {path}") from None
