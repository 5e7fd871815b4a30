"""Output files at the edge: partial lines, a full disk, snapshots that never overwrite, paths inside --out,
run ids and --append, URL masking, the disk watermark, retention, and the breaker's re-probe in a replay."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from pipeline.analyzers.fallback import BreakerState, CircuitBreaker
from pipeline.clock import ManualClock
from pipeline.errors import OutputError
from pipeline.masking import mask_url, url_secrets
from pipeline.sinks.disk_guard import DiskGuard, prune_folder
from pipeline.sinks.files import JsonlWriter, earlier_run, inside, write_json_atomically


def test_a_partial_last_line_of_a_killed_run_is_cut_before_the_next_line(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    log.write_bytes(b'{"id":"a"}\n{"id":"b","ty')  # killed mid-line
    writer = JsonlWriter(log)
    writer.write({"id": "c"})
    writer.close()
    assert [json.loads(line)["id"] for line in log.read_text().splitlines()] == ["a", "c"]


def test_lines_are_held_while_the_disk_is_full_and_written_when_it_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "events.jsonl"
    writer = JsonlWriter(log, max_buffered=3)
    writer.write({"n": 0})
    real_write = os.write
    full = {"on": True}

    def write(fd: int, data: bytes) -> int:
        if full["on"] and fd == writer._fd:
            real_write(fd, data[:5])  # a short write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    for n in range(1, 6):
        writer.write({"n": n})
    assert writer.buffered == 3 and writer.dropped == 2
    assert log.read_text() == '{"n":0}\n'  # no half line left behind
    full["on"] = False
    writer.write({"n": 6})
    writer.close()
    assert [json.loads(line)["n"] for line in log.read_text().splitlines()] == [0, 4, 5, 6]


def test_the_summary_file_on_a_full_disk_leaves_no_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(self: Path, *a: object, **k: object) -> None:
        self.write_bytes(b"{")  # half written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    assert write_json_atomically(tmp_path / "summary.json", {"a": 1}) is False
    assert list(tmp_path.iterdir()) == []


def test_paths_outside_the_output_folder_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    assert inside(root, root / "snapshots" / "cam0-1.jpg").is_relative_to(root.resolve())
    for escape in (root / ".." / "x.jpg", Path("/etc/x.jpg")):
        with pytest.raises(OutputError):
            inside(root, escape)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError):
        inside(root, root / "link" / "x.jpg")


def test_the_disk_guard_stops_optional_writes_below_the_watermark_and_counts_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    free = {"bytes": 500 * 2**20}
    guard = DiskGuard(tmp_path, 100.0, clock, free=lambda _p: free["bytes"])
    assert guard.allow("snapshot")
    free["bytes"] = 10 * 2**20
    assert guard.allow("snapshot")  # read at most once per second
    clock.advance(1.0)
    assert not guard.allow("snapshot") and not guard.allow("agreement_store")
    assert guard.skipped == {"snapshot": 1, "agreement_store": 1}
    assert sum(str(tmp_path) in r.getMessage() for r in caplog.records) == 1  # warned once, naming the folder
    free["bytes"] = 500 * 2**20
    clock.advance(1.0)
    assert guard.allow("snapshot") and guard.low_periods == 1


def test_retention_deletes_the_oldest_snapshots_by_size_and_age(tmp_path: Path) -> None:
    for i in range(5):
        path = tmp_path / f"s{i}.jpg"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (1000.0 + i, 1000.0 + i))
    assert prune_folder(tmp_path, max_bytes=3000, max_age_s=1e9, now_wall=2000.0) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s2.jpg", "s3.jpg", "s4.jpg"]
    assert prune_folder(tmp_path, max_bytes=10**9, max_age_s=997.5, now_wall=2000.0) == 1  # s2 is 998 s old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3.jpg", "s4.jpg"]


@pytest.mark.parametrize("password", ["pa/ss", "p#ss", "p@ss", "p%41ss", "a/b#c@d%e"])
def test_passwords_with_url_delimiters_are_masked(password: str) -> None:
    url = f"rtsp://admin:{password}@192.168.1.5:554/Streaming/101?token=t0ken&channel=1"
    shown = mask_url(url)
    assert shown == "rtsp://admin:***@192.168.1.5:554/Streaming/101?token=***&channel=1"
    assert password in url_secrets(url) and "t0ken" in url_secrets(url)


def test_a_token_in_an_ollama_host_url_is_masked() -> None:
    from pipeline.analyzers.model_failures import mask_host

    assert mask_host("https://gpu.example:443/?token=s3cret") == "https://gpu.example:443/?token=***"


def test_the_breaker_re_probes_after_reset_after_s_of_video_in_a_fast_replay() -> None:
    clock = ManualClock()  # wall time does not move: a replay faster than real time
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30.0, clock=clock)
    breaker.record_failure(source_t=10.0)
    assert not breaker.allow(source_t=39.0)
    assert breaker.allow(source_t=40.0) and breaker.state is BreakerState.HALF_OPEN


def test_a_second_run_into_the_same_out_is_refused_unless_appended(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("demo", "--out", str(out), "--max-frames", "4", "--student", "offline", "--teacher", "offline", "--quiet")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert earlier_run(out) is not None
    second = run_cli(*args)
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0 and "--append" in second.stderr and "earlier run" in second.stderr
    third = run_cli(*args, "--append")
    assert third.returncode == 0, third.stderr
    runs = [json.loads(line)["run_id"] for line in (out / "decisions.jsonl").read_text().splitlines()
            if json.loads(line).get("kind") == "run"]
    assert len(runs) == 2 and len(set(runs)) == 2
    assert json.loads((out / "summary.json").read_text())["run_id"] == runs[-1]


def test_an_image_folder_of_only_corrupt_images_exits_1(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.jpg").write_bytes(b"not a jpeg")
    proc = run_cli(str(folder), "--out", str(tmp_path / "out"), "--student", "offline", "--teacher", "offline")
    assert proc.returncode == 1 and "no readable frame" in proc.stderr and "Traceback" not in proc.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import ROOT

    cmd = f"{sys.executable} {ROOT / 'run_camera.py'} demo --out {tmp_path / 'out'} --student offline --teacher offline | head -1"
    proc = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "BrokenPipe" not in proc.stderr and "internal error" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_the_summary_counts_reports_by_the_backend_that_made_them() -> None:
    from pipeline.sinks.run_summary import _render_backend_counts

    assert _render_backend_counts({"ollama": 6, "offline": 59}) == " — reports: ollama 6, offline 59 after the breaker opened"
    assert _render_backend_counts({"offline": 65}) == " — 65 reports"


def test_the_window_keeps_the_model_size_copy_not_the_full_decode() -> None:
    from pipeline.config.encode import EncodeConfig
    from pipeline.frames.encode import encode_frame, slim_encoded
    from pipeline.records import Frame, GateDecision, GateReason

    image = np.zeros((1080, 1920, 3), np.uint8)
    item = encode_frame(Frame("cam0", 0, 0.0, image), GateDecision(True, GateReason.FIRST, 0.0), EncodeConfig(max_side=896))
    slim = slim_encoded(item)
    assert slim.frame.image.shape == (504, 896, 3) and slim.jpeg is item.jpeg and slim.frame.timestamp == 0.0


def test_a_truncated_file_is_flagged_in_the_summary(tmp_path: Path) -> None:
    from helpers_video import make_clip

    full = make_clip(tmp_path / "full.avi", n_frames=60, fps=30)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    proc = run_cli(str(cut), "--out", str(tmp_path / "out"), "--student", "offline", "--teacher", "offline", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["source_truncated"] and "unreadable" in summary["source_truncated"]
    assert "source ended early" in proc.stdout
    whole = run_cli(str(full), "--out", str(tmp_path / "out2"), "--student", "offline", "--teacher", "offline", "--quiet")
    assert whole.returncode == 0, whole.stderr
    assert json.loads((tmp_path / "out2" / "summary.json").read_text())["source_truncated"] is None
