"""MQTT sink for Home Assistant and friends (the only module that imports paho-mqtt).

Topics (``<p>`` is ``topic_prefix``, default ``edgewatch``; ``<cam>`` a topic-safe camera id):

* ``<p>/available`` — ``online`` / ``offline``, retained; ``offline`` is also the last will,
  so a killed process is reported by the broker.
* ``<p>/<cam>/events`` — one JSON message per event line, QoS 1, not retained, shaped like
  Frigate's: ``{"type": "new"|"update"|"end", "before": {...}, "after": {...}}`` where
  ``after`` is this line (`Event.to_json`) and ``before`` the previous line of the same event
  id (for ``new``, and after a restart, ``before`` equals ``after``, as Frigate does).
* ``<p>/<cam>/state`` — ``{"state": ..., "flags": [...], "explanation": ..., ...}``, retained.
* ``homeassistant/binary_sensor/edgewatch_<cam>_<flag>/config`` and
  ``homeassistant/sensor/edgewatch_<cam>_explanation/config`` — MQTT discovery, retained.

Delivery of events: every event is first appended to a bounded on-disk queue
(`DiskQueue`), and one publisher thread sends the queue head, waits for the broker's PUBACK,
then removes it.  So events go out in order, survive a broker outage and a restart of this
process, and nothing is lost within ``buffer_max`` (overflow drops the oldest, counted).
Delivery is at least once: a message in flight when the connection drops may arrive twice.
State, availability and discovery are "latest wins" and re-sent on every (re)connect.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from pipeline.clock import Clock, SystemClock
from pipeline.errors import OutputError
from pipeline.records import Event
from pipeline.sinks.disk_queue import DiskQueue

log = logging.getLogger("edgewatch.sinks.mqtt")

ONLINE = "online"
OFFLINE = "offline"
_TOPIC_UNSAFE = re.compile(r"[+#/\s\x00]+")
_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")
#: Home Assistant binary_sensor device classes for the safety flags (others: "safety").
_FLAG_DEVICE_CLASS = {"smoke": "smoke", "fire": "heat", "tamper": "tamper", "intrusion": "occupancy"}
#: Event ids whose last line is remembered for ``before``; bounded so ids that never "end" cannot leak.
_MAX_OPEN_EVENTS = 1000


def topic_safe(camera: str) -> str:
    """A camera id usable as one MQTT topic level (no wildcards, separators or spaces)."""
    return _TOPIC_UNSAFE.sub("_", camera.strip()) or "_"


def object_id(*parts: str) -> str:
    """A Home Assistant object/unique id: letters, digits, ``_`` and ``-`` only."""
    return _ID_UNSAFE.sub("_", "_".join(parts)).strip("_")


@dataclass
class MqttStats:
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    """CONNACKs that refused us (bad credentials, not authorised...)."""
    events_enqueued: int = 0
    events_delivered: int = 0
    republished: int = 0
    """Queue heads sent again because no PUBACK came after a reconnect."""
    enqueue_errors: int = 0
    """Events that could not even be written to the disk queue (disk full, folder gone)."""


class MqttSink:
    """Publishes events, per-camera state, availability and Home Assistant discovery.

    Never raises into the pipeline once constructed: a broker that is down or refuses us is
    logged and retried in the background (``reconnect_delay_set``); events wait on disk.
    """

    def __init__(
        self,
        host: str,
        port: int = 1883,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_certs: str | None = None,
        topic_prefix: str = "edgewatch",
        discovery_prefix: str = "homeassistant",
        client_id: str = "edgewatch",
        buffer_dir: Path | str,
        buffer_max: int = 10000,
        keepalive_s: int = 30,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        ack_timeout_s: float = 10.0,
        clock: Clock | None = None,
        availability: bool = True,
    ) -> None:
        self.host = host
        # False for a second client (the review page's): only the run says whether edgewatch is available.
        self.availability = availability
        self.port = int(port)
        self.topic_prefix = topic_prefix.strip("/") or "edgewatch"
        self.discovery_prefix = discovery_prefix.strip("/") or "homeassistant"
        self.availability_topic = f"{self.topic_prefix}/available"
        self.stats = MqttStats()
        self.queue = DiskQueue(buffer_dir, buffer_max)
        self._clock: Clock = clock or SystemClock()
        self._ack_timeout_s = float(ack_timeout_s)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._closing = False
        self._generation = 0  # bumped on every successful connect
        self._last_line: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._states: dict[str, str] = {}  # camera -> retained state payload
        self._discovery: dict[str, str] = {}  # config topic -> payload

        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(ca_certs=ca_certs)
        if availability:
            self._client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=max(1, int(reconnect_min_s)), max_delay=max(1, int(reconnect_max_s)))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        try:
            # connect_async: a broker that is not up yet is retried by the loop, not an error.
            self._client.connect_async(host, self.port, keepalive=int(keepalive_s))
        except (OSError, ValueError) as exc:
            raise OutputError(f"invalid MQTT broker address {host}:{port}: {exc}") from None
        self._client.loop_start()
        self._publisher = threading.Thread(target=self._publish_loop, name="mqtt-publisher", daemon=True)
        self._publisher.start()
        log.info("MQTT sink for %s:%d (tls=%s, user=%s), %d queued events from before", host, self.port, tls, username or "-", len(self.queue))

    @classmethod
    def from_config(cls, cfg: Any, *, clock: Clock | None = None, availability: bool = True) -> "MqttSink":
        """Build from a config section with the same field names as the constructor's keywords."""
        names = ("port", "username", "password", "tls", "ca_certs", "topic_prefix", "discovery_prefix",
                 "client_id", "buffer_dir", "buffer_max", "keepalive_s")
        kwargs = {n: getattr(cfg, n) for n in names if getattr(cfg, n, None) is not None}
        return cls(cfg.host, clock=clock, availability=availability, **kwargs)

    # -- public API --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def events_topic(self, camera: str) -> str:
        return f"{self.topic_prefix}/{topic_safe(camera)}/events"

    def state_topic(self, camera: str) -> str:
        return f"{self.topic_prefix}/{topic_safe(camera)}/state"

    def publish_event(self, event: Event, line: dict[str, Any] | None = None) -> None:
        """Queue one event line (durably) for in-order QoS 1 delivery (``line``: the event's JSON when
        the caller already made it for the event log)."""
        after = line if line is not None else event.to_json()
        with self._lock:
            before = self._last_line.get(event.id, after)
            if event.phase == "end":
                self._last_line.pop(event.id, None)
            else:
                self._last_line[event.id] = after
                self._last_line.move_to_end(event.id)
                while len(self._last_line) > _MAX_OPEN_EVENTS:
                    self._last_line.popitem(last=False)
        message = {"type": event.phase, "before": before, "after": after}
        item = {"topic": self.events_topic(event.camera), "payload": json.dumps(message, ensure_ascii=False, separators=(",", ":"))}
        try:
            self.queue.append(item)
        except OutputError as exc:
            self.stats.enqueue_errors += 1
            log.error("MQTT event %s (%s) lost: %s", event.id, event.phase, exc)
            return
        self.stats.events_enqueued += 1
        self._wake.set()

    def publish_state(self, camera: str, state: str, extra: Mapping[str, Any] | None = None) -> None:
        """Publish the camera's current state (retained; re-sent on reconnect).

        ``extra`` typically holds ``flags`` (active safety flags, read by the binary sensors)
        and ``explanation`` (the latest teacher explanation, read by the explanation sensor).
        """
        body: dict[str, Any] = {"camera": camera, "state": state, "flags": [], "explanation": ""}
        body.update(dict(extra or {}))
        body["flags"] = list(body.get("flags") or [])
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)
        with self._lock:
            self._states[camera] = payload
        if self.connected:
            self._client.publish(self.state_topic(camera), payload, qos=1, retain=True)

    def announce(self, cameras: Iterable[str], flags: Iterable[str]) -> None:
        """Publish Home Assistant discovery: a binary sensor per camera and flag, and an explanation sensor per camera."""
        flags = list(dict.fromkeys(flags))
        configs: dict[str, str] = {}
        for camera in cameras:
            for flag in flags:
                topic, payload = self._binary_sensor_config(camera, flag)
                configs[topic] = payload
            topic, payload = self._explanation_sensor_config(camera)
            configs[topic] = payload
        with self._lock:
            self._discovery.update(configs)
        if self.connected:
            for topic, payload in configs.items():
                self._client.publish(topic, payload, qos=1, retain=True)

    def close(self, timeout_s: float = 5.0) -> None:
        """Deliver queued events (up to ``timeout_s``), publish ``offline``, disconnect.  Bounded."""
        if self._closing:
            return
        self._closing = True
        deadline = self._clock.monotonic() + max(0.0, timeout_s)
        while len(self.queue) and self.connected and self._clock.monotonic() < deadline:
            self._wake.set()
            self._stop.wait(0.05)
        left = len(self.queue)
        if left:
            log.warning("MQTT sink closing with %d undelivered events kept in %s for the next start", left, self.queue.directory)
        self._stop.set()
        self._wake.set()
        self._publisher.join(timeout=max(0.5, deadline - self._clock.monotonic()))
        if self.connected and self.availability:
            info = self._client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.2, min(2.0, deadline - self._clock.monotonic())))
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        log.info("MQTT sink closed: %d events delivered, %d left queued, %d dropped by overflow",
                 self.stats.events_delivered, left, self.queue.stats.dropped_oldest)

    # -- discovery payloads ------------------------------------------------------------

    def _device(self, camera: str) -> dict[str, Any]:
        return {
            "identifiers": [object_id("edgewatch", camera)],
            "name": f"edgewatch {camera}",
            "manufacturer": "edgewatch",
            "model": "edgewatch camera monitor",
        }

    def _availability(self) -> list[dict[str, str]]:
        return [{"topic": self.availability_topic, "payload_available": ONLINE, "payload_not_available": OFFLINE}]

    def _binary_sensor_config(self, camera: str, flag: str) -> tuple[str, str]:
        uid = object_id("edgewatch", camera, flag)
        config = {
            "name": flag.replace("_", " ").capitalize(),
            "unique_id": uid,
            "object_id": uid,
            "state_topic": self.state_topic(camera),
            "value_template": "{{ 'ON' if '%s' in (value_json.flags | default([])) else 'OFF' }}" % flag,
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": _FLAG_DEVICE_CLASS.get(flag, "safety"),
            "availability": self._availability(),
            "device": self._device(camera),
        }
        return f"{self.discovery_prefix}/binary_sensor/{uid}/config", json.dumps(config, separators=(",", ":"))

    def _explanation_sensor_config(self, camera: str) -> tuple[str, str]:
        uid = object_id("edgewatch", camera, "explanation")
        config = {
            "name": "Explanation",
            "unique_id": uid,
            "object_id": uid,
            "state_topic": self.state_topic(camera),
            # HA keeps at most 255 characters of state; the full text is an attribute.
            "value_template": "{{ (value_json.explanation | default(''))[:255] }}",
            "json_attributes_topic": self.state_topic(camera),
            "icon": "mdi:text-box-search",
            "availability": self._availability(),
            "device": self._device(camera),
        }
        return f"{self.discovery_prefix}/sensor/{uid}/config", json.dumps(config, separators=(",", ":"))

    # -- paho callbacks (network thread) ----------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if getattr(reason_code, "is_failure", False):
            self.stats.connect_failures += 1
            log.error("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        self.stats.connects += 1
        with self._lock:
            self._generation += 1
            retained = list(self._discovery.items()) + [(self.state_topic(c), p) for c, p in self._states.items()]
        if self.availability:
            client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        for topic, payload in retained:  # a broker restarted without persistence forgot them
            client.publish(topic, payload, qos=1, retain=True)
        client.subscribe(f"{self.discovery_prefix}/status", qos=1)
        log.info("MQTT connected to %s:%d", self.host, self.port)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected:
            self.stats.disconnects += 1
            if not self._closing:
                log.warning("MQTT disconnected from %s:%d (%s); events queue on disk until it is back", self.host, self.port, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Home Assistant's birth message: it restarted and wants discovery again.
        if message.topic == f"{self.discovery_prefix}/status" and message.payload == b"online":
            with self._lock:
                retained = list(self._discovery.items()) + [(self.state_topic(c), p) for c, p in self._states.items()]
            for topic, payload in retained:
                client.publish(topic, payload, qos=1, retain=True)

    # -- publisher thread --------------------------------------------------------------

    def _publish_loop(self) -> None:
        # The head in flight: [seq, message info, connection generation, waiting since].
        inflight: list[Any] | None = None
        while not self._stop.is_set():
            if not self._connected.is_set():
                self._wake.wait(0.2)
                self._wake.clear()
                continue
            head = self.queue.peek()
            if head is None:
                inflight = None
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            seq, item = head
            with self._lock:
                generation = self._generation
            now = self._clock.monotonic()
            if inflight is not None and inflight[0] == seq and inflight[2] != generation:
                # Reconnected: paho re-sends its in-flight messages itself; give it ack_timeout_s.
                inflight[2], inflight[3] = generation, now
            resend = inflight is not None and inflight[0] == seq and now - inflight[3] > self._ack_timeout_s
            if inflight is None or inflight[0] != seq or resend:
                info = self._client.publish(str(item.get("topic")), str(item.get("payload")), qos=1, retain=False)
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    inflight = None  # not queued by paho (disconnected meanwhile): send again once connected
                    self._stop.wait(0.1)
                    continue
                if resend:
                    self.stats.republished += 1
                inflight = [seq, info, generation, now]
            info = inflight[1]
            try:
                info.wait_for_publish(timeout=0.2)
                published = info.is_published()
            except (RuntimeError, ValueError):
                published, inflight = False, None
            if published:
                self.queue.pop(seq)
                self.stats.events_delivered += 1
                inflight = None
