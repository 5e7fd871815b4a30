"""``edgewatch doctor``: is everything the configuration names actually there and working?

`run_doctor` returns one `CheckRow` per check; the CLI prints `format_table(rows)` and exits 0
only when `all_ready(rows)`.  For each configured Ollama host (the student's and the teacher's
may differ) it checks ``/api/version`` and ``/api/tags``; for each model ``/api/show``
(present? vision capability where the server reports capabilities) and a timed call with a
small image; and, when a source is given, that the source opens.  Hosts are shown with
credentials masked.  Nothing here raises for a failed check: failures are rows with a fix.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.analyzers.model_failures import FailureKind, mask_host
from pipeline.analyzers.ollama_health import HostProbe, probe_host, show_model, timed_image_call
from pipeline.clock import Clock
from pipeline.config.encode import EncodeConfig
from pipeline.config.models import ModelEndpoint
from pipeline.config.settings import Settings

log = logging.getLogger("edgewatch.doctor")

Status = Literal["ready", "not ready", "skipped"]

#: Host checks (version, tags, show) are small requests; they get a short timeout of their own.
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class CheckRow:
    component: str
    target: str
    status: Status
    detail: str
    fix: str = ""


def _test_image_b64() -> str | None:
    """A 64x64 JPEG (a grey scene with a darker block) made by the project's own encoder."""
    try:
        from pipeline.frames.encode import encode_image
    except ImportError:
        return None
    image = np.full((64, 64, 3), 128, np.uint8)
    image[20:44, 24:40] = (40, 60, 90)
    jpeg, _, _ = encode_image(image, EncodeConfig(max_side=64, jpeg_quality=85))
    return base64.b64encode(jpeg).decode("ascii")


def _uses_ollama(endpoint: ModelEndpoint) -> bool:
    return endpoint.backend in ("auto", "ollama")


def _host_fix(probe: HostProbe, role_key: str) -> str:
    if probe.kind is FailureKind.DNS:
        return f"check the host name in {role_key}.host"
    if probe.kind is FailureKind.TIMEOUT:
        return f"the host answers too slowly; check the machine or {role_key}.host"
    return f"start Ollama there (`ollama serve`) or set {role_key}.host"


def _check_host(host: str, roles: list[str]) -> tuple[list[CheckRow], HostProbe]:
    probe = probe_host(host, PROBE_TIMEOUT_S)
    shown = mask_host(host)
    used_by = " and ".join(roles)
    if not probe.reachable:
        row = CheckRow("ollama", shown, "not ready", f"{used_by} host: {probe.error}", _host_fix(probe, roles[0]))
        return [row, CheckRow("models", shown, "skipped", "host not reachable")], probe
    rows = [
        CheckRow("ollama", shown, "ready", f"{used_by} host; version {probe.version or 'unknown'}"),
        CheckRow(
            "models", shown, "ready" if probe.models else "not ready",
            f"{len(probe.models)} installed: {', '.join(probe.models[:6])}{' ...' if len(probe.models) > 6 else ''}"
            if probe.models else "no models installed",
            "" if probe.models else "pull the configured models with `ollama pull <model>`",
        ),
    ]
    return rows, probe


def _installed(model: str, names: tuple[str, ...]) -> bool:
    want = model if ":" in model else f"{model}:latest"
    return want in names or model in names


def _check_model(role: str, endpoint: ModelEndpoint, probe: HostProbe, image_b64: str | None, clock: Clock) -> list[CheckRow]:
    target = f"{endpoint.model} @ {mask_host(endpoint.host)}"
    component = f"{role} model"
    if not probe.reachable:
        return [CheckRow(component, target, "skipped", "host not reachable"),
                CheckRow(f"{role} call", target, "skipped", "host not reachable")]
    rows: list[CheckRow] = []
    shown = show_model(endpoint.host, endpoint.model, PROBE_TIMEOUT_S)
    pull = f"`ollama pull {endpoint.model}`"
    if not shown.present:
        listed = "listed" if _installed(endpoint.model, probe.models) else "not listed"
        rows.append(CheckRow(component, target, "not ready", f"not installed ({listed} in /api/tags; {shown.error})",
                             f"run {pull} on that host, or set {role}.model"))
        rows.append(CheckRow(f"{role} call", target, "skipped", "model not installed"))
        return rows
    size = f" {shown.parameter_size}" if shown.parameter_size else ""
    if shown.vision is False:
        rows.append(CheckRow(component, target, "not ready",
                             f"installed{size}, but capabilities {list(shown.capabilities or ())} lack vision",
                             f"choose a vision model for {role}.model"))
        rows.append(CheckRow(f"{role} call", target, "skipped", "model cannot read images"))
        return rows
    caps = "vision" if shown.vision else "capabilities not reported"
    rows.append(CheckRow(component, target, "ready", f"installed{size}; {caps}"))
    if image_b64 is None:
        rows.append(CheckRow(f"{role} call", target, "skipped", "no encoder to make the test image (pipeline.frames.encode missing)"))
        return rows
    result = timed_image_call(endpoint, image_b64, clock)
    if result.ok:
        load = result.timings.get("load_ms")
        load_text = f", load {load:.0f} ms" if load is not None else ""
        rows.append(CheckRow(f"{role} call", target, "ready",
                             f"64x64 image answered in {result.latency_ms:.0f} ms{load_text}; answer matches the contract"))
    else:
        fix = {
            FailureKind.TIMEOUT: f"raise {role}.first_call_timeout_ms / {role}.timeout_ms or use a smaller model",
            FailureKind.MODEL_NOT_FOUND: f"run {pull} on that host",
            FailureKind.MALFORMED: "the model does not follow the JSON contract; try another model or prompt version",
            FailureKind.OVERLOADED: "the server is busy; lower max_concurrent or retry later",
        }.get(result.kind or FailureKind.SERVER_ERROR, "see the Ollama server log")
        rows.append(CheckRow(f"{role} call", target, "not ready", f"{result.error} (after {result.latency_ms:.0f} ms)", fix))
    return rows


def _check_source(source: str, settings: Settings, clock: Clock) -> CheckRow:
    try:
        from pipeline.sources.capture import mask_credentials, open_source
    except ImportError as exc:
        return CheckRow("source", source, "skipped", f"capture module not available ({exc})")
    shown = mask_credentials(source)
    try:
        opened = open_source(source, camera_id=settings.camera_id, cfg=settings.capture, clock=clock)
    except Exception as exc:  # SourceError carries the one-line reason; anything else is reported the same way
        return CheckRow("source", shown, "not ready", str(exc), "check the path, camera index or URL (and credentials)")
    try:
        described = repr(opened)
    finally:
        try:
            opened.close()
        except Exception:
            log.debug("closing source failed", exc_info=True)
    return CheckRow("source", shown, "ready", f"opens: {described}")


def _check_redis(settings: Settings) -> CheckRow:
    """The escalation bus (fleet.redis_url): reachable, persistent, and what waits on it."""
    from pipeline.fleet.bus import BusError, RedisBus, mask_url

    fleet = settings.fleet
    shown = mask_url(fleet.redis_url)
    fix = "start redis-server there (docs/redis-edgewatch.conf) or correct fleet.redis_url"
    try:
        bus = RedisBus(fleet.redis_url, fleet.stream_prefix, socket_timeout_s=min(fleet.socket_timeout_s, PROBE_TIMEOUT_S))
    except BusError as exc:
        return CheckRow("redis", shown, "not ready", str(exc), "correct fleet.redis_url (redis://[:password@]host:6379/0)")
    try:
        bus.ping()
        info = bus.server_info()
        figures = bus.figures()
    except BusError as exc:
        return CheckRow("redis", shown, "not ready", str(exc), fix)
    finally:
        bus.close()
    waiting = ", ".join(f"{p.name.lower()} {f.length}" for p, f in figures.items() if f.length)
    aof = "AOF on" if info["aof"] == "on" else "AOF OFF: a restart can lose queued requests (appendonly yes)"
    return CheckRow("redis", shown, "ready", f"escalation bus; Redis {info['version']}, {aof}; waiting: {waiting or 'none'}")


def run_doctor(settings: Settings, source: str | None, clock: Clock) -> list[CheckRow]:
    rows: list[CheckRow] = []
    roles: list[tuple[str, ModelEndpoint]] = [("student", settings.student), ("teacher", settings.teacher)]
    active = [(role, ep) for role, ep in roles if _uses_ollama(ep)]
    for role, ep in roles:
        if not _uses_ollama(ep):
            rows.append(CheckRow(f"{role} model", ep.model, "skipped", f"{role}.backend is '{ep.backend}': Ollama not used"))

    hosts: dict[str, list[str]] = {}
    for role, ep in active:
        hosts.setdefault(ep.host, []).append(role)
    probes: dict[str, HostProbe] = {}
    for host, host_roles in hosts.items():
        host_rows, probes[host] = _check_host(host, host_roles)
        rows.extend(host_rows)

    image_b64 = _test_image_b64() if active else None
    for role, ep in active:
        rows.extend(_check_model(role, ep, probes[ep.host], image_b64, clock))

    if settings.fleet.redis_url:
        rows.append(_check_redis(settings))
    if source is not None:
        rows.append(_check_source(source, settings, clock))
    return rows


def all_ready(rows: list[CheckRow]) -> bool:
    """True when no check is "not ready" (skipped checks do not count against)."""
    return all(row.status != "not ready" for row in rows)


def format_table(rows: list[CheckRow]) -> str:
    """A plain-text table: component, target, status, detail; a fix line under each failure."""
    headers = ("COMPONENT", "TARGET", "STATUS", "DETAIL")
    table = [(r.component, r.target, r.status, r.detail) for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) if table else len(h) for i, h in enumerate(headers[:3])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers[:3], widths)) + "  " + headers[3]]
    for row, cells in zip(rows, table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells[:3], widths)) + "  " + cells[3])
        if row.status == "not ready" and row.fix:
            lines.append(" " * (sum(widths) + 6) + f"fix: {row.fix}")
    ready = sum(r.status == "ready" for r in rows)
    failed = sum(r.status == "not ready" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    lines.append(f"{ready} ready, {failed} not ready, {skipped} skipped")
    return "\n".join(lines)
