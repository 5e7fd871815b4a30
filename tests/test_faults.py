"""The fault suite: each test starts its fault itself and checks that monitoring goes on.

* a full disk: ``--out`` on a 200 KiB tmpfs mounted here (root and mount(2) needed; under CI=true a
  machine that cannot mount fails the test rather than skipping it);
* a teacher that accepts a request and never answers, then SIGTERM: exit within 15 s, summary written;
* a stream that comes up 20 s after start: it is waited for, then monitored;
* hostile camera ids from the CLI, the YAML and the environment: one clear line, nothing outside --out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, require, run_cli
from ollama_server import RecordedRequest, Reply, Script, running_server
from servers import free_port, start_mjpeg

DEMO = ROOT / "fixtures" / "demo" / "demo.mp4"
CLI = [sys.executable, str(ROOT / "run_camera.py")]


def _popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def _wait_for(predicate, timeout_s: float, what: str) -> None:  # noqa: ANN001 - a callable returning bool
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------
# A full disk
# --------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 200 KiB tmpfs: the output folder fills up a few seconds into the demo."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True) if os.geteuid() == 0 else None
    require(proc is not None and proc.returncode == 0,
            f"a size-limited tmpfs (needs root and mount): {proc.stderr.strip() if proc else 'not root'}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_never_stops_monitoring(small_disk: Path) -> None:
    out = small_disk / "out"
    proc = run_cli("demo", "--out", str(out), "--student", "offline", "--teacher", "offline", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    # Events reached stdout to the end of the clip, and the summary was printed.
    assert "summary for" in proc.stdout
    event_lines = [line for line in proc.stdout.splitlines() if line.strip().startswith(("new", "update", "end"))]
    assert event_lines, proc.stdout
    summary_text = proc.stdout[proc.stdout.index("summary for"):]
    assert "s of video" in summary_text and "stopped early" not in summary_text
    # A clear warning names the folder; no temporary file is left; every line on disk is whole JSON.
    assert str(out) in proc.stderr
    assert not list(out.rglob("*.tmp"))
    for name in ("events.jsonl", "decisions.jsonl"):
        text = (out / name).read_text() if (out / name).exists() else ""
        assert not text or text.endswith("\n")
        for line in text.splitlines():
            json.loads(line)
    assert "disk low" in summary_text or "could not" in proc.stderr


# --------------------------------------------------------------------------------------
# A teacher that never answers, then SIGTERM
# --------------------------------------------------------------------------------------


def _calm_student_hung_teacher(request: RecordedRequest) -> Reply:
    if request.is_teacher:
        return Reply.hang(600.0)  # accepts the request, never answers
    # Every frame looks like fire to the student, so the teacher is asked at once.
    return Reply.answer({"observations": ["orange light, possibly flames"], "safetyFlags": ["fire"], "confidence": 0.9})


@pytest.mark.slow
def test_sigterm_with_a_hung_teacher_exits_within_15_s_with_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_server(Script(default=_calm_student_hung_teacher), max_hang_s=600.0) as server:
        proc = _popen("demo", "--out", str(out), "--ollama-host", server.url)
        try:
            _wait_for(lambda: server.requests_to("/api/chat") and any(r.is_teacher and r.images for r in server.requests_to("/api/chat")),
                      120, "the first teacher request")
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    assert took < 15.0, f"SIGTERM took {took:.1f} s"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] == "interrupted"
    assert summary["queue"]["cancelled_at_shutdown"] >= 1
    verdicts = [d for d in _lines(out / "decisions.jsonl") if d.get("kind") == "verdict"]
    assert verdicts and verdicts[-1]["kind"] == "verdict"
    assert any(v.get("verdict") == "unverified" and "grace" in json.dumps(v) for v in verdicts)
    assert "summary for" in stdout


# --------------------------------------------------------------------------------------
# A stream that comes up late
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_stream_that_comes_up_20_s_after_start_is_monitored(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out"
    # Short backoff so the test's wall time stays near the 20 s delay.
    proc = _popen(f"http://127.0.0.1:{port}/stream.mjpg", "--out", str(out), "--student", "offline", "--teacher", "offline",
                  env={"EDGEWATCH_LIVE__BACKOFF_MAX_S": "2"})
    server = None
    try:
        time.sleep(20.0)
        assert proc.poll() is None, proc.communicate()[1][-2000:]  # still waiting, not given up
        server = start_mjpeg(DEMO, port=port, fps=15.0)
        _wait_for(lambda: any(d.get("kind") == "decision" for d in _lines(out / "decisions.jsonl")), 60,
                  "the first analysed frame of the late stream")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        if server is not None:
            server.stop()
    assert proc.returncode == 0, stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_analysed"] > 0
    sources = [d for d in _lines(out / "decisions.jsonl") if d.get("kind") == "source"]
    assert [d["event"] for d in sources][:2] == ["source_lost", "source_restored"]


# --------------------------------------------------------------------------------------
# Hostile camera ids
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("camera_id", ["../../escape", "/tmp/abs-escape", "x" * 300, "a\x00b", "..", "cam 1"])
@pytest.mark.parametrize("where", ["cli", "yaml", "env"])
def test_a_hostile_camera_id_is_one_clear_line_and_writes_nothing(tmp_path: Path, camera_id: str, where: str) -> None:
    if where == "env" and "\x00" in camera_id:
        pytest.skip("an environment variable cannot hold a NUL byte")
    out = tmp_path / "deep" / "out"
    args = ["demo", "--out", str(out), "--max-frames", "2", "--student", "offline", "--teacher", "offline"]
    env = {}
    if where == "cli":
        args += ["--camera-id", camera_id]
    elif where == "yaml":
        cfg = tmp_path / "c.yaml"
        cfg.write_text(json.dumps({"camera_id": camera_id}))  # JSON is YAML
        args += ["--config", str(cfg)]
    else:
        env["EDGEWATCH_CAMERA_ID"] = camera_id
    if where == "cli" and "\x00" in camera_id:
        pytest.skip("argv cannot hold a NUL byte")
    proc = run_cli(*args, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "camera_id" in lines[0] and "Traceback" not in proc.stderr
    assert not out.exists()
    assert not Path("/tmp/abs-escape").exists()
    assert not (tmp_path / "escape").exists() and not (tmp_path.parent / "escape").exists()
