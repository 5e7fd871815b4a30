"""`mqtt:` publishing events and state to a broker."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pipeline.config.base import Section


class MqttConfig(Section):
    enabled: bool = Field(False, description="Publish events, state, availability and Home Assistant discovery over MQTT.")
    host: str = Field("127.0.0.1", description="MQTT broker host.")
    port: int = Field(1883, ge=1, le=65535, description="MQTT broker port.")
    username: str | None = Field(None, description="Broker username (optional).")
    password: str | None = Field(None, description="Broker password (optional; better set EDGEWATCH_MQTT__PASSWORD).")
    tls: bool = Field(False, description="Connect with TLS.")
    ca_certs: str | None = Field(None, description="CA bundle for TLS (default: the system's).")
    topic_prefix: str = Field("edgewatch", min_length=1, description="Topics are <prefix>/<camera>/events and <prefix>/<camera>/state.")
    discovery_prefix: str = Field("homeassistant", min_length=1, description="Home Assistant MQTT discovery prefix.")
    client_id: str = Field("edgewatch", min_length=1, description="MQTT client id.")
    buffer_dir: Path = Field(Path("./edgewatch-out/mqtt-buffer"), description="On-disk queue of events not yet delivered (survives broker outages and restarts).")
    buffer_max: int = Field(10000, ge=1, le=10_000_000, description="Events kept in the buffer at most; beyond it the oldest are dropped and counted.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keep-alive.")
