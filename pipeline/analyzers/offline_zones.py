"""Intrusion zones of the offline analyzers: a default list and per-camera lists."""

from __future__ import annotations

from pipeline.config.zones import Zone


class ZoneBook:
    """Intrusion zones: the default list, and per-camera lists where a camera has its own."""

    def __init__(self, zones: list[Zone]) -> None:
        self._default = list(zones)
        self._by_camera: dict[str, list[Zone]] = {}

    def set_zones(self, camera: str, zones: list[Zone]) -> None:
        self._by_camera[camera] = list(zones)

    def set_default(self, zones: list[Zone]) -> None:
        self._default = list(zones)

    def for_camera(self, camera: str) -> list[Zone]:
        return self._by_camera.get(camera, self._default)
