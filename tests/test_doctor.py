"""`edgewatch doctor` checks against the Ollama-protocol test server (and a closed port)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ollama_server import ORANGE, OllamaTestServer, Reply, Script, closed_port_url, image_facts, solid_jpeg

from pipeline.clock import SystemClock
from pipeline.config.settings import Settings
from tools.doctor import CheckRow, all_ready, format_table, run_doctor

pytestmark = pytest.mark.timeout(30)


def settings(student_host: str, teacher_host: str | None = None, **extra: dict) -> Settings:
    data: dict = {
        "student": {"host": student_host, "first_call_timeout_ms": 3000, "timeout_ms": 3000},
        "teacher": {"host": teacher_host or student_host, "first_call_timeout_ms": 3000, "timeout_ms": 3000},
    }
    for section, values in extra.items():
        data[section] = {**data.get(section, {}), **values}
    return Settings.model_validate(data)


def by_component(rows: list[CheckRow]) -> dict[str, CheckRow]:
    return {r.component: r for r in rows}


def test_doctor_against_a_healthy_server_is_all_ready() -> None:
    with OllamaTestServer() as srv:
        rows = run_doctor(settings(srv.url), None, SystemClock())
        chats = srv.requests_to("/api/chat")
        shows = srv.requests_to("/api/show")
    table = format_table(rows)
    assert all_ready(rows), table
    comp = by_component(rows)
    assert set(comp) == {"ollama", "models", "student model", "student call", "teacher model", "teacher call"}
    assert "0.12.6-test" in comp["ollama"].detail and "student and teacher" in comp["ollama"].detail
    assert "vision" in comp["student model"].detail
    assert "ms" in comp["student call"].detail and "matches the contract" in comp["student call"].detail
    assert all(r.status == "ready" for r in rows) and table.endswith("6 ready, 0 not ready, 0 skipped")
    assert {r.body["model"] for r in shows} == {"gemma4:e2b", "gemma4:26b"}
    # One timed call per model, each with a 64x64 JPEG.
    assert sorted(r.body["model"] for r in chats) == ["gemma4:26b", "gemma4:e2b"]
    for req in chats:
        facts = image_facts(req.images[0])
        assert (facts.width, facts.height) == (64, 64)


def test_doctor_against_a_closed_port_is_not_ready_with_a_fix() -> None:
    rows = run_doctor(settings(closed_port_url()), None, SystemClock())
    assert not all_ready(rows)
    comp = by_component(rows)
    assert comp["ollama"].status == "not ready"
    assert "ollama serve" in comp["ollama"].fix
    assert comp["student call"].status == "skipped"
    table = format_table(rows)
    assert "fix: start Ollama there" in table and "not ready" in table


def test_student_and_teacher_on_different_hosts_are_checked_separately() -> None:
    with OllamaTestServer() as srv:
        rows = run_doctor(settings(srv.url, closed_port_url()), None, SystemClock())
    hosts = [r for r in rows if r.component == "ollama"]
    assert [r.status for r in hosts] == ["ready", "not ready"]
    comp = {(r.component, r.status) for r in rows}
    assert ("student call", "ready") in comp and ("teacher call", "skipped") in comp
    assert not all_ready(rows)


def test_missing_model_says_ollama_pull() -> None:
    with OllamaTestServer(models={"gemma4:e2b": ("completion", "vision")}) as srv:
        rows = run_doctor(settings(srv.url), None, SystemClock())
    comp = by_component(rows)
    assert comp["student model"].status == "ready"
    assert comp["teacher model"].status == "not ready"
    assert "ollama pull gemma4:26b" in comp["teacher model"].fix
    assert comp["teacher call"].status == "skipped"


def test_vision_capability_is_checked_where_reported() -> None:
    with OllamaTestServer(models={"gemma4:e2b": ("completion",), "gemma4:26b": None}) as srv:
        rows = run_doctor(settings(srv.url), None, SystemClock())
    comp = by_component(rows)
    assert comp["student model"].status == "not ready" and "vision" in comp["student model"].detail
    assert comp["teacher model"].status == "ready" and "not reported" in comp["teacher model"].detail


def test_a_model_that_breaks_the_contract_is_not_ready() -> None:
    with OllamaTestServer(Script(default=Reply.wrong_schema())) as srv:
        rows = run_doctor(settings(srv.url), None, SystemClock())
    comp = by_component(rows)
    assert comp["student call"].status == "not ready" and "malformed" in comp["student call"].detail
    assert "contract" in comp["student call"].fix


def test_offline_backends_skip_ollama_entirely() -> None:
    with OllamaTestServer() as srv:
        rows = run_doctor(settings(srv.url, student={"backend": "offline"}, teacher={"backend": "offline"}), None, SystemClock())
        assert srv.requests == []
    assert all(r.status == "skipped" for r in rows) and all_ready(rows)


def test_credentials_in_hosts_are_masked() -> None:
    with OllamaTestServer() as srv:
        host = srv.url.replace("http://", "http://alice:hunter2@")
        rows = run_doctor(settings(host), None, SystemClock())
    table = format_table(rows)
    assert "alice:***@" in table and "hunter2" not in table


def test_source_check(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "0001.jpg").write_bytes(solid_jpeg(ORANGE))
    base = settings(closed_port_url(), student={"backend": "offline"}, teacher={"backend": "offline"})
    good = by_component(run_doctor(base, str(folder), SystemClock()))["source"]
    assert good.status == "ready"
    bad = by_component(run_doctor(base, str(tmp_path / "missing.mp4"), SystemClock()))["source"]
    assert bad.status == "not ready" and "missing.mp4" in bad.detail and bad.fix
    stream = by_component(run_doctor(base, "rtsp://bob:pw@127.0.0.1:1/stream", SystemClock()))["source"]
    assert "pw" not in stream.target and "bob:***@" in stream.target


def test_doctor_command_as_a_user_runs_it(tmp_path: Path) -> None:
    """`edgewatch doctor` through the real CLI: ready (exit 0) against the test server, a not-ready
    table and exit 1 against a closed port, with a source check and a masked password."""
    from conftest import ROOT, run_cli

    demo = str(ROOT / "fixtures" / "demo" / "demo.mp4")
    with OllamaTestServer().start() as server:
        ready = run_cli("doctor", "--ollama-host", server.url, "--source", demo)
    assert ready.returncode == 0, ready.stdout + ready.stderr
    assert " 0 not ready" in ready.stdout and "demo.mp4" in ready.stdout
    closed = run_cli("doctor", "--ollama-host", closed_port_url().replace("http://", "http://admin:Pw-doctor-1@"),
                     "--source", str(tmp_path / "missing.mp4"))
    assert closed.returncode == 1
    assert "not ready" in closed.stdout and "ollama serve" in closed.stdout
    assert "Pw-doctor-1" not in closed.stdout + closed.stderr and "admin:***@" in closed.stdout
    assert "Traceback" not in closed.stderr
