"""Several live cameras through the real CLI: per-camera pipelines, shared models, metrics and health,
a camera that drops out (source_lost, /healthz 503) while the other keeps going, SIGTERM drains."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from servers import free_port, start_mjpeg

pytestmark = pytest.mark.timeout(120)
DEMO = ROOT / "fixtures" / "demo" / "demo.mp4"
SECRET = "Cam-pw-4417"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, ""


def _wait_for(predicate, timeout_s: float, what: str):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_two_live_cameras_metrics_health_dropout_and_drain(tmp_path: Path) -> None:
    metrics_port = free_port()
    with start_mjpeg(DEMO, fps=10.0) as cam_a, start_mjpeg(DEMO, fps=10.0) as cam_b:
        config = tmp_path / "cameras.yaml"
        config.write_text(
            "cameras:\n"
            f"  - {{id: front, source: 'http://viewer:{SECRET}@127.0.0.1:{cam_a.port}/stream.mjpg'}}\n"
            f"  - {{id: yard, source: 'http://127.0.0.1:{cam_b.port}/stream.mjpg', sample_fps: 1.0}}\n"
            "live: {stale_after_s: 2.0, backoff_initial_s: 0.2, backoff_max_s: 1.0}\n"
            f"metrics: {{enabled: true, port: {metrics_port}}}\n"
            "capture: {open_timeout_ms: 1000, read_timeout_ms: 1000}\n"
        )
        out = tmp_path / "out"
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_camera.py"), "--config", str(config), "--out", str(out),
             "--ollama-host", "http://127.0.0.1:9", "--quiet"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            base = f"http://127.0.0.1:{metrics_port}"

            def both_analysing() -> dict | None:
                status, body = _get(base + "/healthz")
                if status != 200:
                    return None
                cams = json.loads(body)["cameras"]
                ok = set(cams) == {"front", "yard"} and all(c["analysed"] > 2 for c in cams.values())
                return cams if ok else None

            cams = _wait_for(both_analysing, 60, "both cameras analysing")
            assert all(c["backend"] == "offline" and not c["stale"] for c in cams.values())
            status, text = _get(base + "/metrics")
            assert status == 200
            assert 'edgewatch_frames_total{camera="front",outcome="analysed"}' in text
            assert 'edgewatch_frames_total{camera="yard",outcome="analysed"}' in text
            assert 'edgewatch_student_latency_seconds_count' in text

            cam_b.kill()  # the yard camera drops out; the front one must keep going

            def yard_stale() -> bool:
                status, body = _get(base + "/healthz")
                return status == 503 and json.loads(body)["cameras"]["yard"]["stale"]

            _wait_for(yard_stale, 20, "/healthz to report the yard camera stale")
            front_before = json.loads(_get(base + "/healthz")[1])["cameras"]["front"]["analysed"]
            _wait_for(lambda: json.loads(_get(base + "/healthz")[1])["cameras"]["front"]["analysed"] > front_before,
                      20, "the front camera to keep analysing")
            health_text = _get(base + "/healthz")[1]

            # SIGHUP: new thresholds take effect without dropping the cameras.
            config.write_text(config.read_text() + "escalation: {min_confidence: 0.5}\n")
            proc.send_signal(signal.SIGHUP)

            def reloaded() -> bool:
                lines = (out / "decisions.jsonl").read_text().splitlines()
                return any('"kind":"reload"' in line for line in lines)

            _wait_for(reloaded, 20, "the reload to be logged")
            assert proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stdout.count("summary for") == 2
    decisions = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    lost = [d for d in decisions if d.get("kind") == "source" and d.get("camera") == "yard" and d["event"] == "source_lost"]
    assert lost, [d for d in decisions if d.get("kind") == "source"]
    reports = [d for d in decisions if d.get("kind") == "decision"]
    assert {d["camera"] for d in reports} == {"front", "yard"}
    reload = [d for d in decisions if d.get("kind") == "reload"]
    assert {d["camera"] for d in reload} == {"front", "yard"}
    assert all(d["thresholds"]["min_confidence"] == 0.5 for d in reload)
    # Not a terminal: logs are JSON lines (journald-friendly); the NOTICE line is the program's own.
    log_lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("edgewatch: ")]
    assert log_lines and all(json.loads(line)["level"] for line in log_lines)
    # The camera password appears nowhere: output, logs, files, health.
    files = "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".jsonl", ".json"))
    assert SECRET not in stdout + stderr + files + health_text
    assert "viewer:***@" in files
    summary = json.loads((out / "summary.json").read_text())
    assert {c["camera"] for c in summary["cameras"]} == {"front", "yard"}
    assert all(c["stopped_early"] == "interrupted" for c in summary["cameras"])
