"""The review page, page by page (Starlette's TestClient), and its safety: traversal, loopback
default, token, CSRF, escaping of model text; the index's incremental refresh; a real server."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402

from pipeline.learning.agreement_store import AgreementStore, store_path_for  # noqa: E402
from pipeline.clock import ManualClock  # noqa: E402
from pipeline.config.loading import settings_from_dict  # noqa: E402
from pipeline.config.settings import Settings  # noqa: E402
from pipeline.errors import UsageError  # noqa: E402
from pipeline.records import Escalation, Priority, VerdictKind  # noqa: E402
from pipeline.sinks.keyframe_archive import KeyframeArchive, read_manifest  # noqa: E402
from pipeline.incidents.thresholds import ThresholdController  # noqa: E402
from pipeline.web.app import create_app  # noqa: E402
from pipeline.web.context import ReviewContext  # noqa: E402
from pipeline.web.index import EventFilter, RunIndex  # noqa: E402
from pipeline.web.security import CSRF_COOKIE, check_bind, safe_file  # noqa: E402
from pipeline.web.server import ReviewServer  # noqa: E402
from tests.web_run import SCRIPT, event_line, jpeg, many_events, small_run, write_lines  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def settings_for(out: Path, **web: Any) -> Settings:
    return settings_from_dict({"output": {"out_dir": str(out)}, "web": web})


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return small_run(tmp_path / "run")


def open_ctx(out: Path, **live: Any) -> ReviewContext:
    token = live.pop("token", None)
    return ReviewContext.open(out, settings_for(out, token=token), ManualClock(), **live)


@pytest.fixture
def client(run: Path) -> Iterator[TestClient]:
    ctx = open_ctx(run)
    with TestClient(create_app(ctx)) as c:
        yield c
    ctx.close()


def event_ids(html: str) -> list[str]:
    return re.findall(r'data-event="([^"]+)"', html)


def get_status(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> int:
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    return response.status


def csrf_of(c: TestClient) -> str:
    c.get("/")
    return c.cookies[CSRF_COOKIE]


# -- events list -------------------------------------------------------------------------------


def test_events_list_is_newest_first_with_thumbnails_and_filters(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert event_ids(page.text) == ["cam1-00004-smoke", "cam1-00003-person", "cam0-00002-fall", "cam0-00001-person"]
    assert '<img class="thumb" loading="lazy" src="/files/snapshots/cam0-00002-fall.jpg"' in page.text
    assert event_ids(client.get("/?camera=cam1").text) == ["cam1-00004-smoke", "cam1-00003-person"]
    assert event_ids(client.get("/?type=person").text) == ["cam1-00003-person", "cam0-00001-person"]
    assert event_ids(client.get("/?severity=alert").text) == ["cam1-00004-smoke", "cam0-00002-fall"]
    assert event_ids(client.get("/?status=confirmed").text) == ["cam0-00002-fall"]
    assert event_ids(client.get("/?from=3&to=12").text) == ["cam1-00003-person", "cam0-00002-fall"]
    assert event_ids(client.get("/?from=not-a-number").text) == event_ids(page.text)


def test_events_list_pages_and_rows_poll_only_while_a_run_writes(tmp_path: Path) -> None:
    out = many_events(tmp_path / "many", 120)
    ctx = open_ctx(out)
    with TestClient(create_app(ctx)) as c:
        first, third = c.get("/"), c.get("/?page=3")
        assert len(event_ids(first.text)) == 50 and event_ids(first.text)[0] == "cam3-00119-smoke"
        assert len(event_ids(third.text)) == 20 and event_ids(third.text)[-1] == "cam0-00000-person"
        assert "120 events · page 1 of 3" in first.text
        assert 'hx-trigger="every 3s"' in first.text             # no summary.json yet: a run is writing
        (out / "summary.json").write_text("{}")
        assert 'hx-trigger' not in c.get("/").text               # finished: no polling
        write_lines(out / "events.jsonl", [event_line(500, "cam9", "fire", "alert", "new", 1.0, out=out)])
        assert event_ids(c.get("/events/rows").text)[0] == "cam9-00500-fire"
    ctx.close()


# -- event page --------------------------------------------------------------------------------


def test_event_page_shows_keyframes_timeline_decision_and_the_teachers_explanation(client: TestClient) -> None:
    page = client.get("/events/cam0-00002-fall")
    assert page.status_code == 200
    text = page.text
    assert re.findall(r'src="(/files/keyframes/cam0-esc-00001/[^"]+)"', text) == [
        "/files/keyframes/cam0-esc-00001/00-f18.jpg", "/files/keyframes/cam0-esc-00001/01-f19.jpg",
        "/files/keyframes/cam0-esc-00001/02-f20.jpg"]
    assert "t=9.5 s · frame 19" in text
    assert "Confirmed fall." in text and "teacher-x" in text
    assert "Why it escalated</dt><dd>safety:fall" in text and "Queue depth</dt><dd>2</dd>" in text
    assert "<code>min_confidence=0.72</code>" in text
    assert "student/7" in text                                       # the prompt version
    assert text.count("person lying") == 5                           # the student's timeline
    assert "suspicious → alert" in text
    assert client.get(re.findall(r'src="(/files/keyframes/[^"]+)"', text)[0]).headers["content-type"] == "image/jpeg"
    assert client.get("/events/nope").status_code == 404


def test_model_text_is_escaped_and_no_inline_script_may_run(client: TestClient) -> None:
    page = client.get("/events/cam0-00002-fall")
    assert SCRIPT not in page.text
    assert "&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.text.count("<script") == 1                           # only /static/htmx.min.js
    assert client.get("/static/htmx.min.js").status_code == 200


# -- files: only images inside --out --------------------------------------------------------------


def test_files_are_served_only_from_inside_the_run_folder(client: TestClient, run: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(1))
    (run / "snapshots" / "link.jpg").symlink_to(secret)
    assert client.get("/snapshots/cam0-00002-fall.jpg").status_code == 200
    for url in ("/snapshots/%2e%2e/%2e%2e/etc/passwd", "/snapshots/..%2f..%2fetc%2fpasswd", "/files/%2e%2e/secret.jpg",
                "/snapshots/link.jpg", "/files/events.jsonl", "/files//etc/passwd", "/files/%2Fetc%2Fpasswd"):
        assert client.get(url).status_code == 404, url
    assert safe_file(run, "../secret.jpg") is None and safe_file(run / "snapshots", "../../etc/passwd") is None
    assert safe_file(run, "snapshots/cam0-00002-fall.jpg") == (run / "snapshots" / "cam0-00002-fall.jpg").resolve()


def test_a_raw_dot_dot_path_is_refused_by_the_real_server(run: Path) -> None:
    server = ReviewServer(open_ctx(run), "127.0.0.1", 0)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/snapshots/../../etc/passwd")           # sent as is: http.client does not normalise
        response = conn.getresponse()
        body = response.read()
        assert response.status == 404 and b"root:" not in body
        assert get_status(conn, "/") == 200
    finally:
        server.close()


# -- binding and the token ---------------------------------------------------------------------------


def test_loopback_by_default_and_other_addresses_need_a_token() -> None:
    assert Settings().web.host == "127.0.0.1"
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    with pytest.raises(UsageError, match="without a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "s3cret")


def test_serve_refuses_a_public_address_without_a_token(run: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWATCH_")}
    done = subprocess.run([sys.executable, str(ROOT / "run_camera.py"), "serve", "--out", str(run), "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert done.returncode == 2
    assert "without a token" in done.stderr and "Traceback" not in done.stderr


def test_serve_runs_in_the_foreground_and_ends_cleanly_on_sigterm(run: Path) -> None:
    env = {**os.environ, "EDGEWATCH_WEB__TOKEN": "tok-123", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_camera.py"), "serve", "--out", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))  # type: ignore[union-attr]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert get_status(conn, "/") == 401                          # the token applies on loopback too
        assert get_status(conn, "/", {"Authorization": "Bearer tok-123"}) == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "review page stopped" in out and "Traceback" not in err


def test_the_token_is_required_on_every_request_when_set(run: Path) -> None:
    ctx = open_ctx(run, token="s3cret")
    with TestClient(create_app(ctx)) as c:
        assert c.get("/").status_code == 401
        assert c.get("/snapshots/cam0-00002-fall.jpg").status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/?token=wrong").status_code == 401
        opened = c.get("/events/cam0-00002-fall?token=s3cret", follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/events/cam0-00002-fall"
        assert c.get("/events/cam0-00002-fall").status_code == 200     # the cookie now carries it
    ctx.close()


# -- feedback -------------------------------------------------------------------------------------


class RecordingMqtt:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def publish_event(self, event: Any) -> None:
        self.events.append(event)


def test_feedback_needs_a_matching_csrf_token_and_a_same_origin_post(client: TestClient) -> None:
    url = "/events/cam0-00002-fall/feedback"
    assert client.post(url, data={"verdict": "false_alarm"}).status_code == 403
    csrf_of(client)
    assert client.post(url, data={"verdict": "false_alarm", "csrf": "forged"}).status_code == 403
    good = {"verdict": "false_alarm", "csrf": client.cookies[CSRF_COOKIE]}
    assert client.post(url, data=good, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get(url).status_code == 405                                  # state changes only by POST
    assert client.post(url, data={**good, "verdict": "maybe"}).status_code == 400
    done = client.post(url, data=good, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/events/cam0-00002-fall"


def test_false_alarm_reaches_the_store_the_thresholds_and_mqtt(run: Path) -> None:
    mqtt = RecordingMqtt()
    ctx = open_ctx(run, mqtt=mqtt)
    with TestClient(create_app(ctx)) as c:
        csrf = csrf_of(c)
        answer = c.post("/events/cam0-00002-fall/feedback", headers={"HX-Request": "true"},
                        data={"verdict": "false_alarm", "note": f"a coat {SCRIPT}", "csrf": csrf})
        assert answer.status_code == 200 and 'class="status false_alarm"' in answer.text
        assert SCRIPT not in answer.text
        assert event_ids(c.get("/?status=false_alarm").text) == ["cam0-00002-fall"]
        assert "cam0-00002-fall" not in event_ids(c.get("/?status=needs_person").text)
    ctx.close()
    store = AgreementStore.open(store_path_for(Settings().learning, run), Settings().learning, ManualClock())
    human = store.human_verdicts()["cam0-00002-fall"]
    assert (human.verdict, human.flags, human.escalation_ids) == (VerdictKind.DISMISSED, frozenset(), ("cam0-esc-00001",))
    store.close()
    state = json.loads((run / "thresholds_state.json").read_text())
    fall = state["cameras"]["cam0"]["periods"]["default"]["fall"]
    assert (fall["verdicts"], fall["dismissal_rate"]) == (1, 1.0)
    [update] = mqtt.events
    assert (update.id, update.phase, update.review.value) == ("cam0-00002-fall", "update", "dismissed")
    assert "a person marked it a false alarm" in update.reasons[-1]


def test_inside_a_run_feedback_goes_to_the_runs_controller(run: Path) -> None:
    settings = settings_for(run)
    controller = ThresholdController(settings, "cam0", ManualClock(), run / "thresholds_state.json", live=True)
    controller.update(0.0)
    ctx = open_ctx(run, embedded=True, controllers={"cam0": controller})
    with TestClient(create_app(ctx)) as c:
        c.post("/events/cam0-00002-fall/feedback", data={"verdict": "confirmed", "csrf": csrf_of(c)})
    ctx.close()
    assert "fall" not in controller.feedback.get("default", {})     # not counted off the runner's thread
    controller.update(1.0)
    assert controller.feedback["default"]["fall"].verdicts == 1
    assert controller.feedback["default"]["fall"].dismissal_rate == 0.0


# -- cameras ----------------------------------------------------------------------------------------


def test_cameras_page_from_a_finished_folder(client: TestClient) -> None:
    page = client.get("/cameras")
    assert page.status_code == 200
    cards = re.findall(r'data-camera="([^"]+)"', page.text)
    assert cards == ["cam0", "cam1"]
    assert 'class="state alert">alert' in page.text
    assert '<a href="/events/cam1-00004-smoke">smoke</a>' in page.text


def test_cameras_page_inside_a_run_shows_the_newest_frame_annotated(run: Path) -> None:
    health = {"cameras": {"cam0": {"state": "observing", "analysed": 12, "source_t": 6.0, "connected": True,
                                   "last_frame_age_s": 0.2}}}
    ctx = open_ctx(run, embedded=True, health=lambda: health, latest_jpeg=lambda cam: jpeg(7) if cam == "cam0" else None)
    with TestClient(create_app(ctx)) as c:
        page = c.get("/cameras")
        assert 'src="/cameras/cam0/frame.jpg?n=12"' in page.text and 'hx-get="/cameras/cards"' in page.text
        frame = c.get("/cameras/cam0/frame.jpg")
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        assert frame.content != jpeg(7)                                # annotated
        assert c.get("/cameras/cam1/frame.jpg").status_code == 404
    ctx.close()


# -- the index ---------------------------------------------------------------------------------------


def test_index_refreshes_from_its_offset_waits_for_whole_lines_and_rebuilds_a_replaced_log(tmp_path: Path) -> None:
    out = many_events(tmp_path / "r", 10)
    index = RunIndex(out)
    index.refresh()
    assert index.events(EventFilter()).total == 10
    extra = json.dumps(event_line(99, "cam0", "fire", "alert", "new", 1.0, out=out))
    with (out / "events.jsonl").open("a") as fh:
        fh.write(extra[:20])                                          # a line being written
    index.refresh()
    assert index.events(EventFilter()).total == 10
    with (out / "events.jsonl").open("a") as fh:
        fh.write(extra[20:] + "\n" + "not json\n")
    index.refresh()
    assert index.events(EventFilter()).total == 11 and index.bad_lines == 1
    index.close()
    # A new run in the same folder: the index notices and starts again.
    (out / "events.jsonl").write_text(json.dumps(event_line(1, "camX", "smoke", "alert", "new", 0.0, out=out)) + "\n")
    reopened = RunIndex(out)
    reopened.refresh()
    assert [r.id for r in reopened.events(EventFilter()).rows] == ["camX-00001-smoke"]
    reopened.close()


# -- the keyframe archive --------------------------------------------------------------------------


def test_keyframe_archive_keeps_each_escalations_keyframes_and_is_bounded(tmp_path: Path) -> None:
    from pipeline.config.encode import EncodeConfig
    from pipeline.frames.encode import encode_frame
    from pipeline.records import Frame, GateDecision, GateReason

    import numpy as np

    gate = GateDecision(passed=True, reason=GateReason.CHANGE, score=1.0)
    frames = tuple(encode_frame(Frame("cam0", i, i * 0.5, np.full((32, 32, 3), i * 40, np.uint8)), gate,
                                EncodeConfig(max_side=64)) for i in range(3))
    archive = KeyframeArchive(tmp_path / "keyframes", keep=2)
    for n in range(3):
        archive.save(Escalation(id=f"cam0-esc-{n}", camera="cam0", incident_id="i", reason="safety:fall",
                                priority=Priority.SAFETY, created_at=1.0, flags=frozenset({"fall"}),
                                keyframes=frames, timeline=()))
    assert sorted(p.name for p in (tmp_path / "keyframes").iterdir()) == ["cam0-esc-1", "cam0-esc-2"]
    manifest = read_manifest(tmp_path / "keyframes", "cam0-esc-2")
    assert manifest is not None and [(k["frame"], k["t"]) for k in manifest["keyframes"]] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert (tmp_path / "keyframes" / "cam0-esc-2" / manifest["keyframes"][1]["file"]).read_bytes() == frames[1].jpeg
    assert read_manifest(tmp_path / "keyframes", "../../etc") is None
