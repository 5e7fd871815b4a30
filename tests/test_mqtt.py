"""MqttSink against a real mosquitto on 127.0.0.1, checked by a real subscriber; DiskQueue on its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

import servers
from conftest import ROOT, require
from pipeline.records import Event, ReviewStatus
from pipeline.sinks.disk_queue import DiskQueue
from pipeline.sinks.mqtt import MqttSink

pytestmark = pytest.mark.timeout(60)

PASSWORD = "mq-Secr3t-77"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[servers.ServerProcess]:
    require(servers.mosquitto_available(), "mosquitto not installed (apt-get install mosquitto)")
    server = servers.start_mosquitto(tmp_path / "broker")
    yield server
    server.stop()


class Subscriber:
    """A real MQTT client subscribed to everything; re-subscribes after reconnecting."""

    def __init__(self, port: int, topic: str = "#", **auth: str) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{time.monotonic_ns()}")
        if auth:
            self.client.username_pw_set(auth["username"], auth["password"])
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self._topic = topic
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self._topic, qos=1)  # again after every reconnect: a restarted broker forgot it
        with self._cond:
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def on(self, topic: str) -> list[mqtt.MQTTMessage]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout_s)

    def wait_topic(self, topic: str, count: int = 1, timeout_s: float = 5.0) -> list[mqtt.MQTTMessage]:
        self.wait(lambda: sum(m.topic == topic for m in self.messages) >= count, timeout_s)
        return self.on(topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, topic: str = "#", **auth: str) -> Subscriber:
        made.append(Subscriber(port, topic, **auth))
        return made[-1]

    yield make
    for s in made:
        s.close()


def make_sink(port: int, tmp_path: Path, **kw: Any) -> MqttSink:
    kw.setdefault("buffer_dir", tmp_path / "mqtt-queue")
    kw.setdefault("reconnect_min_s", 1)
    kw.setdefault("reconnect_max_s", 1)
    return MqttSink("127.0.0.1", port, client_id=kw.pop("client_id", "edgewatch-test"), **kw)


def event(eid: str, phase: str, camera: str = "front door", **kw: Any) -> Event:
    fields: dict[str, Any] = dict(
        id=eid, camera=camera, type="fall", severity="alert", phase=phase, state="alert", start=12.5,
        end=20.0 if phase == "end" else None, flags=("fall",), peak_confidence=0.91, reasons=("fall in 2 of 3",),
    )
    fields.update(kw)
    return Event(**fields)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def payload(message: mqtt.MQTTMessage) -> Any:
    return json.loads(message.payload)


# --------------------------------------------------------------------------------------
# Broker round trips
# --------------------------------------------------------------------------------------


def test_events_state_availability_and_discovery_reach_a_subscriber(
    broker: servers.ServerProcess, tmp_path: Path, subscriber_factory: Callable[..., Subscriber]
) -> None:
    sink = make_sink(broker.port, tmp_path)
    try:
        assert sink.wait_connected(5.0)
        sink.announce(["front door", "yard"], ["fire", "fall"])
        sink.publish_state("front door", "alert", {"flags": ["fall"], "explanation": "A person fell near the door."})
        sink.publish_event(event("ev1", "new"))
        sink.publish_event(event("ev1", "update", review=ReviewStatus.CONFIRMED, explanation="confirmed fall", peak_confidence=0.95))
        sink.publish_event(event("ev1", "end"))
        sink.publish_event(event("ev2", "new", camera="yard", type="person", severity="activity", flags=()))

        # Subscribe only now: retained messages (availability, state, discovery) must still arrive.
        sub = subscriber_factory(broker.port)
        avail = sub.wait_topic("edgewatch/available")
        assert [m.payload for m in avail] == [b"online"] and avail[0].retain

        state = sub.wait_topic("edgewatch/front_door/state")
        assert state and state[0].retain
        body = payload(state[0])
        assert body == {"camera": "front door", "state": "alert", "flags": ["fall"], "explanation": "A person fell near the door."}

        topic = "homeassistant/binary_sensor/edgewatch_front_door_fall/config"
        cfg_msgs = sub.wait_topic(topic)
        assert cfg_msgs and cfg_msgs[0].retain
        cfg = payload(cfg_msgs[0])
        assert cfg["unique_id"] == "edgewatch_front_door_fall"
        assert cfg["state_topic"] == "edgewatch/front_door/state"
        assert "'fall' in" in cfg["value_template"] and "value_json.flags" in cfg["value_template"]
        assert (cfg["payload_on"], cfg["payload_off"]) == ("ON", "OFF")
        assert cfg["availability"] == [{"topic": "edgewatch/available", "payload_available": "online", "payload_not_available": "offline"}]
        assert cfg["device"]["identifiers"] == ["edgewatch_front_door"]
        sub.wait(lambda: len([m for m in sub.messages if m.topic.startswith("homeassistant/")]) >= 6)
        discovery = sorted(m.topic for m in sub.messages if m.topic.startswith("homeassistant/"))
        assert discovery == sorted(
            [f"homeassistant/binary_sensor/edgewatch_{c}_{f}/config" for c in ("front_door", "yard") for f in ("fire", "fall")]
            + [f"homeassistant/sensor/edgewatch_{c}_explanation/config" for c in ("front_door", "yard")]
        )
        expl = payload(sub.on("homeassistant/sensor/edgewatch_yard_explanation/config")[0])
        assert expl["state_topic"] == "edgewatch/yard/state" and "explanation" in expl["value_template"]
        assert expl["unique_id"] == "edgewatch_yard_explanation"

        # Events were published before the subscriber existed and are not retained: publish more now.
        sink.publish_event(event("ev3", "new"))
        sink.publish_event(event("ev3", "update", explanation="teacher says: a fall"))
        sink.publish_event(event("ev3", "end"))
        def ev3() -> list[mqtt.MQTTMessage]:
            return [m for m in sub.on("edgewatch/front_door/events") if payload(m)["after"]["id"] == "ev3"]

        sub.wait(lambda: len(ev3()) >= 3)
        msgs = ev3()
        assert [m.retain for m in msgs] == [False] * 3 and all(m.qos == 1 for m in msgs)
        new, update, end = (payload(m) for m in msgs)
        assert [new["type"], update["type"], end["type"]] == ["new", "update", "end"]
        assert new["before"] == new["after"] == event("ev3", "new").to_json()  # Frigate: new has before == after
        assert update["before"] == new["after"]  # before = the previous line of this event id
        assert update["after"]["explanation"] == "teacher says: a fall"
        assert end["before"] == update["after"] and end["after"]["end"] == 20.0
        # ev1/ev2 went out before the subscriber existed (not retained): at most a tail of them is seen.
        assert all(payload(m)["after"]["id"] == "ev2" for m in sub.on("edgewatch/yard/events"))
    finally:
        sink.close()
    offline = sub.wait(lambda: any(m.payload == b"offline" for m in sub.on("edgewatch/available")))
    assert offline, "close() must publish offline"
    assert sink.stats.events_delivered == 7 and len(sink.queue) == 0


def test_last_will_announces_a_killed_process(
    broker: servers.ServerProcess, tmp_path: Path, subscriber_factory: Callable[..., Subscriber]
) -> None:
    script = (
        "import sys, time\n"
        "from pipeline.sinks.mqtt import MqttSink\n"
        f"s = MqttSink('127.0.0.1', {broker.port}, client_id='edgewatch-child', buffer_dir={str(tmp_path / 'child-q')!r}, keepalive_s=30)\n"
        "assert s.wait_connected(5)\n"
        "s.announce(['cam'], ['fire'])\n"
        "print('READY 0', flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().startswith("READY")
        sub = subscriber_factory(broker.port, "edgewatch/available")
        assert [m.payload for m in sub.wait_topic("edgewatch/available")] == [b"online"]
        os.kill(child.pid, signal.SIGKILL)
        killed = time.monotonic()
        msgs = sub.wait_topic("edgewatch/available", count=2, timeout_s=5.0)
        assert [m.payload for m in msgs] == [b"online", b"offline"], "the broker did not send the last will"
        assert time.monotonic() - killed < 2.0  # the socket closes at once on SIGKILL
        # The will is retained: a newcomer learns the sink is down.
        late = subscriber_factory(broker.port, "edgewatch/available")
        retained = late.wait_topic("edgewatch/available")
        assert [(m.payload, m.retain) for m in retained] == [(b"offline", True)]
    finally:
        child.kill()
        child.communicate(timeout=5)


def test_events_buffered_while_the_broker_is_down_arrive_in_order(
    broker: servers.ServerProcess, tmp_path: Path, subscriber_factory: Callable[..., Subscriber]
) -> None:
    # The sink retries every 2 s, so a subscriber started right after the broker restart is
    # subscribed before the buffered events flow (a restarted broker keeps no subscriptions).
    sink = make_sink(broker.port, tmp_path, reconnect_min_s=2, reconnect_max_s=2)
    try:
        assert sink.wait_connected(5.0)
        sub = subscriber_factory(broker.port, "edgewatch/+/events")
        assert sub.wait(lambda: sub.client.is_connected(), 5.0)
        time.sleep(0.2)  # let the subscription settle
        sink.publish_event(event("before", "new"))
        assert len(sub.wait_topic("edgewatch/front_door/events")) == 1
        # The subscriber can see it a moment before the sink has the broker's ack and drops it
        # from the disk queue; only events published while the broker is down are under test.
        assert wait_until(lambda: len(sink.queue) == 0, 5.0)

        port = broker.port
        broker.kill()
        deadline = time.monotonic() + 5
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not sink.connected
        ids = [f"down-{i:02d}" for i in range(25)]
        for eid in ids:
            sink.publish_event(event(eid, "new"))
        assert len(sink.queue) == 25  # on disk, waiting
        time.sleep(0.3)
        assert len(sink.queue) == 25

        sub.close()
        restarted = servers.start_mosquitto(tmp_path / "broker", port=port)
        try:
            after = subscriber_factory(port, "edgewatch/+/events")
            assert after.wait(lambda: after.client.is_connected(), 5.0)
            time.sleep(0.2)  # let the subscription settle
            got = after.wait_topic("edgewatch/front_door/events", count=25, timeout_s=15.0)
            received = [payload(m)["after"]["id"] for m in got]
            assert received == ids, "buffered events lost or out of order"
            assert wait_until(lambda: len(sink.queue) == 0, 2.0), "delivered events must leave the disk queue"
            assert sink.queue.stats.dropped_oldest == 0
            assert sink.stats.disconnects >= 1 and sink.stats.connects >= 2
            # Retained availability was re-published after the broker (without persistence) came back.
            avail = subscriber_factory(port, "edgewatch/available").wait_topic("edgewatch/available")
            assert [m.payload for m in avail] == [b"online"]
        finally:
            sink.close()
            restarted.stop()
    finally:
        sink.close()


def test_queued_events_survive_a_sink_restart_and_overflow_is_counted(
    tmp_path: Path, subscriber_factory: Callable[..., Subscriber]
) -> None:
    require(servers.mosquitto_available(), "mosquitto not installed (apt-get install mosquitto)")
    port = servers.free_port()  # no broker yet
    sink = make_sink(port, tmp_path, buffer_max=5)
    for i in range(8):
        sink.publish_event(event(f"e{i}", "new"))
    assert len(sink.queue) == 5 and sink.queue.stats.dropped_oldest == 3
    t0 = time.monotonic()
    sink.close(timeout_s=1.0)
    assert time.monotonic() - t0 < 3.0, "close() must be bounded with the broker absent"

    broker = servers.start_mosquitto(tmp_path / "broker", port=port)
    try:
        sub = subscriber_factory(port, "edgewatch/+/events")
        assert sub.wait(lambda: sub.client.is_connected(), 5.0)
        time.sleep(0.2)
        again = make_sink(port, tmp_path, buffer_max=5)
        try:
            assert again.queue.stats.recovered == 5
            got = sub.wait_topic("edgewatch/front_door/events", count=5, timeout_s=10.0)
            assert [payload(m)["after"]["id"] for m in got] == ["e3", "e4", "e5", "e6", "e7"]  # oldest dropped
        finally:
            again.close()
        assert wait_until(lambda: len(again.queue) == 0, 2.0)
    finally:
        broker.stop()


def test_credentials_work_and_never_appear_in_output(
    tmp_path: Path, subscriber_factory: Callable[..., Subscriber]
) -> None:
    require(servers.mosquitto_available(), "mosquitto not installed (apt-get install mosquitto)")
    broker = servers.start_mosquitto(tmp_path / "broker", users={"edge": PASSWORD})
    try:
        script = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
            "from pipeline.sinks.mqtt import MqttSink\n"
            f"bad = MqttSink('127.0.0.1', {broker.port}, username='edge', password='wrong-{PASSWORD}', client_id='bad', buffer_dir={str(tmp_path / 'bq')!r})\n"
            "ok = MqttSink('127.0.0.1', %d, username='edge', password=%r, client_id='good', buffer_dir=%r)\n"
            "assert ok.wait_connected(5), 'could not log in'\n"
            "assert not bad.wait_connected(1.5), 'wrong password accepted'\n"
            "assert bad.stats.connect_failures >= 1\n"
            "ok.publish_state('cam', 'idle', {})\n"
            "ok.close(); bad.close(timeout_s=0.5)\n"
            "print('DONE', ok.stats.connects, flush=True)\n"
        ) % (broker.port, PASSWORD, str(tmp_path / "gq"))
        sub = subscriber_factory(broker.port, "edgewatch/cam/state", username="edge", password=PASSWORD)
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith("DONE 1")
        assert payload(sub.wait_topic("edgewatch/cam/state")[0])["state"] == "idle"
        assert "Not authorized" in done.stderr  # the refusal is logged...
        assert PASSWORD not in done.stdout + done.stderr  # ...without the password
    finally:
        broker.stop()


# --------------------------------------------------------------------------------------
# DiskQueue
# --------------------------------------------------------------------------------------


def test_disk_queue_is_fifo_bounded_and_durable(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", max_items=3)
    for i in range(5):
        q.append({"n": i})
    assert len(q) == 3 and q.stats.dropped_oldest == 2
    head = q.peek()
    assert head is not None and head[1] == {"n": 2}
    assert q.pop(head[0]) and not q.pop(head[0])  # popping twice does nothing
    q.append({"n": 5})
    reopened = DiskQueue(tmp_path / "q", max_items=3)
    assert reopened.stats.recovered == 3
    out = []
    while (item := reopened.peek()) is not None:
        out.append(item[1]["n"])
        reopened.pop(item[0])
    assert out == [3, 4, 5]
    assert reopened.append({"n": 6}) > head[0]  # numbering continues after a restart


def test_disk_queue_skips_corrupt_items_and_leftover_temp_files(tmp_path: Path) -> None:
    q = DiskQueue(tmp_path / "q", max_items=10)
    a, b, c = (q.append({"n": i}) for i in range(3))
    (tmp_path / "q" / f"{b:012d}.json").write_text("{not json")
    (tmp_path / "q" / "000000000099.tmp").write_text("half")
    again = DiskQueue(tmp_path / "q", max_items=2)  # the bound shrank: oldest dropped at start
    assert not (tmp_path / "q" / "000000000099.tmp").exists()
    first = again.peek()
    assert first is not None and first[1] == {"n": 2} and again.stats.corrupt == 1
    assert again.stats.dropped_oldest == 1
    with pytest.raises(ValueError):
        DiskQueue(tmp_path / "q2", max_items=0)
