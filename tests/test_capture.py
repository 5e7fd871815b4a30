"""Capture: sources, timestamps, errors, truncated files, sampling, pacing, credential masking."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.sources.capture import FALLBACK_FPS, Sampler, mask_credentials, natural_key, open_source
from pipeline.clock import ManualClock
from pipeline.config.capture import CaptureConfig
from pipeline.errors import SourceError
from tests.helpers_video import make_clip, numbered_frame, write_video


def _open(spec: str | Path, **cfg: object) -> object:
    return open_source(str(spec), camera_id="cam-t", cfg=CaptureConfig(**cfg), clock=ManualClock())


def _bar_x(image: np.ndarray) -> int:
    """Left edge of the white bar `numbered_frame` draws (row 80)."""
    row = image[80, :, :].min(axis=1)
    bright = np.flatnonzero(row > 230)
    return int(bright[0])


# -- files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("fourcc", "suffix", "fps"), [("MJPG", ".avi", 30.0), ("mp4v", ".mp4", 25.0)])
def test_file_frames_have_index_timestamp_and_content_in_order(tmp_path: Path, fourcc: str, suffix: str, fps: float) -> None:
    clip = make_clip(tmp_path / f"clip{suffix}", n_frames=40, fps=fps, fourcc=fourcc)
    with _open(clip) as src:
        assert src.fps == pytest.approx(fps)
        assert src.frame_count == 40
        assert not src.is_live
        frames = list(src)
        assert src.stats.frames_read == 40
        assert src.stats.bad_frames == 0
    assert [f.index for f in frames] == list(range(40))
    for f in frames:
        assert f.source_id == "cam-t"
        assert f.timestamp == pytest.approx(f.index / fps, abs=1e-6)
        assert f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8
        assert abs(_bar_x(f.image) - (f.index * 7) % 300) <= 2  # the decoded content is that frame's


def test_nonsense_fps_falls_back_to_25(tmp_path: Path) -> None:
    # The MJPEG writer stores 100000 fps as a 600 fps time base: nonsense for a camera clip.
    clip = write_video(tmp_path / "fast.avi", (numbered_frame(i) for i in range(5)), fps=100000)
    with _open(clip) as src:
        assert src.fps == FALLBACK_FPS
        stamps = [f.timestamp for f in src]
    assert stamps == pytest.approx([i / FALLBACK_FPS for i in range(5)])


def test_iterating_twice_is_a_clear_error(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.avi", n_frames=3, fps=10)
    with _open(clip) as src:
        assert len(list(src)) == 3
        with pytest.raises(SourceError):
            list(src)


def test_truncated_video_yields_frames_then_ends_and_counts_bad_frames(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.avi", n_frames=60, fps=30)
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with _open(cut) as src:
        frames = list(src)  # must not raise
        stats = src.stats
    assert 10 < len(frames) < 60
    assert [f.index for f in frames] == list(range(len(frames)))
    # The AVI header still says 60 frames: each failed read is a lost frame, counted.
    assert stats.bad_frames == 60 - len(frames)
    assert stats.ended_early


def test_truncated_video_stops_after_max_bad_frames(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.avi", n_frames=60, fps=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with _open(cut, max_bad_frames=3) as src:
        frames = list(src)
        assert src.stats.bad_frames == 3
        assert src.stats.ended_early
        assert "3" in src.stats.end_reason
    assert frames


def test_truncated_mp4_without_index_is_a_source_error_not_a_traceback(tmp_path: Path) -> None:
    full = make_clip(tmp_path / "full.mp4", n_frames=30, fps=30, fourcc="mp4v")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    # OpenCV's mp4 writer puts the index (moov) at the end: half a file cannot be opened.
    with pytest.raises(SourceError, match="not a video"):
        _open(cut)


# -- bad input -----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^no such file: .*nope\.mp4$"):
        _open(tmp_path / "nope.mp4")


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match="empty file"):
        _open(empty)


def test_text_renamed_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError, match="not a video") as info:
        _open(fake)
    assert "\n" not in str(info.value)


def test_directory_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(SourceError, match="no images in folder"):
        _open(tmp_path)


def test_absent_webcam_index() -> None:
    with pytest.raises(SourceError, match=r"^camera 97 could not be opened$"):
        _open("97")


def test_unreachable_stream_message_masks_password() -> None:
    with pytest.raises(SourceError) as info:
        _open("rtsp://admin:hunter2@127.0.0.1:1/live", open_timeout_ms=500, read_timeout_ms=500)
    message = str(info.value)
    assert "hunter2" not in message
    assert "rtsp://admin:***@127.0.0.1:1/live" in message


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://user:pass@10.0.0.5:554/stream1", "rtsp://user:***@10.0.0.5:554/stream1"),
        ("http://admin:p%40ss:word@cam.local/video.mjpg", "http://admin:***@cam.local/video.mjpg"),
        ("rtsp://token123@host/x", "rtsp://***@host/x"),
        ("rtsp://host:554/stream", "rtsp://host:554/stream"),
        ("https://cam/api?user=bob&password=s3cret&x=1", "https://cam/api?user=bob&password=***&x=1"),
        ("/videos/a@b.mp4", "/videos/a@b.mp4"),
    ],
)
def test_mask_credentials(url: str, masked: str) -> None:
    assert mask_credentials(url) == masked


# -- image folders ---------------------------------------------------------------------------


def test_image_folder_in_natural_order_with_timestamps(tmp_path: Path) -> None:
    in_natural_order = ["img1.png", "img2.jpg", "IMG3.bmp", "img10.png", "img20.webp"]
    for i, name in enumerate(in_natural_order):
        assert cv2.imwrite(str(tmp_path / name), numbered_frame(i * 5))
    (tmp_path / "notes.txt").write_text("ignored")
    with _open(tmp_path) as src:
        frames = list(src)
        assert src.frame_count == 5
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp for f in frames] == [0.0, 1.0, 2.0, 3.0, 4.0]
    # img1, img2, IMG3, img10, img20 — the bars were drawn in that order
    assert [abs(_bar_x(f.image) - (i * 5 * 7) % 300) <= 3 for i, f in enumerate(frames)] == [True] * 5
    assert sorted(reversed(in_natural_order), key=natural_key) == in_natural_order


def test_image_folder_fps_and_unreadable_image_skipped(tmp_path: Path) -> None:
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), numbered_frame(i))
    (tmp_path / "f2.png").write_bytes(b"not a png")
    src = open_source(str(tmp_path), camera_id="c", cfg=CaptureConfig(), clock=ManualClock(), folder_fps=4.0)
    with src:
        frames = list(src)
        assert src.stats.bad_frames == 1
    assert [f.index for f in frames] == [0, 1, 3]
    assert [f.timestamp for f in frames] == [0.0, 0.25, 0.75]


# -- sampling ----------------------------------------------------------------------------------


def test_sampled_file_decodes_only_kept_frames(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.avi", n_frames=90, fps=30)
    with _open(clip) as src:
        kept = list(src.frames(sampler=Sampler(2.0)))
        assert src.stats.frames_read == len(kept)
        assert src.stats.frames_sampled_out == 90 - len(kept)
        assert src.stats.frames_grabbed == 90
        assert src.stats.last_timestamp == pytest.approx(89 / 30)
    assert [f.index for f in kept] == [0, 15, 30, 45, 60, 75]
    for f in kept:
        assert abs(_bar_x(f.image) - (f.index * 7) % 300) <= 2  # retrieve() returns the grabbed frame


def test_sampled_image_folder(tmp_path: Path) -> None:
    for i in range(10):
        cv2.imwrite(str(tmp_path / f"{i}.png"), numbered_frame(i))
    with _open(tmp_path) as src:
        kept = list(src.frames(sampler=Sampler(0.5)))
    assert [f.index for f in kept] == [0, 2, 4, 6, 8]


@pytest.mark.parametrize(("fps", "sample_fps", "expected"), [(30.0, 2.0, 20), (25.0, 2.0, None), (30.0, 30.0, 300)])
def test_sampler_on_regular_grids(fps: float, sample_fps: float, expected: int | None) -> None:
    sampler = Sampler(sample_fps)
    stamps = [i / fps for i in range(300)]  # 10 s (30 fps) or 12 s (25 fps)
    kept = [t for t in stamps if sampler.accept(t)]
    duration = stamps[-1] - stamps[0]
    assert kept[0] == 0.0
    assert len(kept) <= math.floor(duration * sample_fps + 1e-6) + 1  # 1e-6: float error in duration
    if expected is not None:
        assert len(kept) == expected
    else:
        # 25 fps / 2 fps = 12.5 frames: every 13th frame is kept, 1.92 per second, never more than 2.
        assert all(b - a >= 0.5 - 1e-9 for a, b in zip(kept, kept[1:]))
        assert len(kept) >= math.floor(duration / (0.5 + 1 / fps))


@settings(max_examples=200, deadline=None)
@given(
    fps=st.sampled_from([25.0, 30.0, 29.97, 15.0, 60.0]),
    sample_fps=st.floats(min_value=0.2, max_value=15.0),
    jitter=st.floats(min_value=0.0, max_value=0.4),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_sampler_never_exceeds_sample_fps_on_jittery_timestamps(fps: float, sample_fps: float, jitter: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    dt = 1.0 / fps
    # jitter is a share of the frame interval, so timestamps stay increasing, as sources deliver them
    stamps = np.arange(400) * dt + rng.uniform(-jitter, jitter, 400) * dt
    sampler = Sampler(sample_fps)
    kept = [float(t) for t in stamps if sampler.accept(float(t))]
    period = 1.0 / sample_fps
    assert kept[0] == float(stamps[0])
    assert all(b - a >= period - 1e-9 for a, b in zip(kept, kept[1:]))
    duration = float(stamps[-1] - stamps[0])
    assert len(kept) <= math.floor(duration * sample_fps + 1e-6) + 1  # 1e-6: float error in duration
    # ...and it is not stingy: a kept frame follows within one period plus one (jittered) frame interval
    assert all(b - a <= period + dt * (1 + 2 * jitter) + 1e-9 for a, b in zip(kept, kept[1:]))


def test_sampler_rearms_when_source_time_restarts() -> None:
    sampler = Sampler(1.0)
    assert [sampler.accept(t) for t in (0.0, 0.5, 1.0, 100.0, 100.5)] == [True, False, True, True, False]
    assert sampler.accept(0.0)  # the stream restarted from zero
    assert not sampler.accept(0.4)


def test_sampler_rejects_bad_rate() -> None:
    with pytest.raises(ValueError):
        Sampler(0.0)


# -- realtime pacing ---------------------------------------------------------------------------


def test_realtime_paces_a_file_on_the_injected_clock(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.avi", n_frames=10, fps=10)
    clock = ManualClock(start=100.0)
    seen: list[tuple[float, float]] = []
    with open_source(str(clip), camera_id="c", cfg=CaptureConfig(realtime=True), clock=clock) as src:
        for f in src:
            seen.append((f.timestamp, clock.monotonic() - 100.0))
    # each frame is released when the clock reaches its source time
    assert [round(t, 6) for t, _ in seen] == [round(c, 6) for _, c in seen]
    assert clock.monotonic() == pytest.approx(100.9)


def test_not_realtime_does_not_sleep(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.avi", n_frames=10, fps=10)
    clock = ManualClock()
    with open_source(str(clip), camera_id="c", cfg=CaptureConfig(realtime=False), clock=clock) as src:
        assert len(list(src)) == 10
    assert clock.monotonic() == 0.0


# -- live stream (MJPEG over HTTP on 127.0.0.1) -------------------------------------------------


class _MjpegServer:
    """Serves ``n_frames`` JPEG frames as multipart MJPEG, then closes the connection."""

    def __init__(self, n_frames: int) -> None:
        import http.server
        import threading

        jpegs = [cv2.imencode(".jpg", numbered_frame(i))[1].tobytes() for i in range(n_frames)]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for jpeg in jpegs:
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                    self.wfile.write(f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_live_stream_frames_are_stamped_by_the_injected_clock() -> None:
    server = _MjpegServer(6)
    clock = ManualClock(start=50.0)
    try:
        source = open_source(
            f"http://viewer:pw@127.0.0.1:{server.port}/stream",
            camera_id="door", cfg=CaptureConfig(open_timeout_ms=2000, read_timeout_ms=2000), clock=clock,
        )
        with source:
            assert source.is_live and source.frame_count is None
            assert "pw" not in source.description and "viewer:***@" in source.description
            frames = []
            for frame in source:
                frames.append(frame)
                clock.advance(0.25)
            assert source.stats.ended_early  # the server hung up: a lost stream, logged, no exception
    finally:
        server.close()
    assert len(frames) >= 5
    assert [f.index for f in frames] == list(range(len(frames)))
    # the first frame is read while opening (t=0); each later read happens after the test advanced the clock
    assert [f.timestamp for f in frames] == pytest.approx([0.0] + [0.25 * i for i in range(1, len(frames))])
    assert all(f.source_id == "door" for f in frames)
