"""Bad input, run as a user would (a subprocess): one clear line on stderr, the right exit code, no traceback."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


from conftest import ROOT, run_cli

CLOSED_OLLAMA = ["--ollama-host", "http://127.0.0.1:9"]  # discard port: nothing answers, fallback is immediate


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("edgewatch: error:")]
    assert len(error_lines) == 1, proc.stderr
    for needle in needles:
        assert needle in error_lines[0], error_lines[0]


def test_missing_file(tmp_path: Path) -> None:
    proc = run_cli(str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 1, "no such file", "nope.mp4")


def test_directory_without_images(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    proc = run_cli(str(tmp_path / "empty"), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 1, "no images")


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    proc = run_cli(str(empty), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 1, "empty.mp4")


def test_text_file_renamed_mp4(tmp_path: Path) -> None:
    fake = tmp_path / "fake.mp4"
    fake.write_text("this is not a video\n" * 100)
    proc = run_cli(str(fake), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 1, "fake.mp4")


def test_absent_webcam_index(tmp_path: Path) -> None:
    proc = run_cli("97", "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 1, "97")


def test_invalid_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("gate: {width: [\n")
    proc = run_cli("demo", "--config", str(cfg), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 2, "not valid YAML")


def test_invalid_config_value(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("escalation:\n  min_confidence: 7\n")
    proc = run_cli("demo", "--config", str(cfg), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 2, "escalation.min_confidence", ">= 0.0 and <= 1.0")


def test_unknown_config_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("gate:\n  treshold: 7\n")
    proc = run_cli("demo", "--config", str(cfg), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 2, "unknown key 'gate.treshold'")


def test_unwritable_out(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run_cli("demo", "--out", str(blocker / "out"), *CLOSED_OLLAMA)
    _assert_one_line_error(proc, 1, "cannot write to output folder")


def test_bad_arguments() -> None:
    proc = run_cli()
    _assert_one_line_error(proc, 2, "no SOURCE")
    proc = run_cli("demo", "--max-frames", "0")
    _assert_one_line_error(proc, 2, "--max-frames")
    proc = run_cli("demo", "--zone", "door")
    _assert_one_line_error(proc, 2, "--zone")
    proc = run_cli("demo", "--no-such-flag")
    _assert_one_line_error(proc, 2, "unrecognized arguments")


def test_truncated_video_runs_to_the_end(tmp_path: Path) -> None:
    demo = ROOT / "fixtures" / "demo" / "demo.mp4"
    truncated = tmp_path / "truncated.mp4"
    data = demo.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    proc = run_cli(str(truncated), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    # A truncated mp4 may lose its index (moov atom) and be unreadable, or play its first part:
    # either way one clear line or a clean summary, never a traceback.
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:
        assert "summary for" in proc.stdout
    else:
        _assert_one_line_error(proc, 1, "truncated.mp4")


def test_truncated_avi_plays_its_first_part(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (160, 120))
    rng = np.random.default_rng(1)
    for _ in range(60):
        writer.write(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 5000)
    proc = run_cli(str(path), "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 0 < summary["frames_read"] < 60


def test_offline_fallback_is_announced_once(tmp_path: Path) -> None:
    proc = run_cli("demo", "--max-frames", "5", "--out", str(tmp_path / "out"), *CLOSED_OLLAMA)
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stderr.splitlines() if line.startswith("edgewatch: NOTICE:")]
    assert len(notices) == 1, proc.stderr  # one line for both roles
    assert "offline analyzer" in notices[0] and "gemma4:e2b" in notices[0] and "gemma4:26b" in notices[0]
    assert "stopped early: --max-frames 5" in proc.stdout


def test_sigint_flushes_and_exits_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run_camera.py"), "demo", "--realtime", "--out", str(out), *CLOSED_OLLAMA],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "decisions.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopped early: interrupted" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] == "interrupted"
    assert summary["source_seconds"] < 30
    for line in (out / "decisions.jsonl").read_text().splitlines():
        json.loads(line)  # every line complete
