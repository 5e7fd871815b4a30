"""Escalations and verdicts as stream-entry fields (bytes keys and values).

A request entry holds:

* ``rid`` — the request id, unique across boxes and restarts (``<box>/<boot>/<escalation id>``);
* ``box`` — the edge box that waits for the answer (its reply stream);
* ``v`` — the wire version (``1``);
* ``meta`` — JSON: the escalation's fields, the student's timeline, each keyframe's frame
  index, time, size and gate decision, the thresholds in force and the camera's zones;
* ``kf0``, ``kf1``, ... — the keyframes' JPEG bytes, exactly as the box encoded them.

A reply entry is ``kind=verdict`` (``rid``, ``worker``, ``service_s`` and the verdict as JSON)
or ``kind=shed`` (``rid``, ``reason``, ``detail``).  A malformed entry raises `WireError`; the
worker answers it unverified rather than dropping it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np

from pipeline.errors import EdgewatchError
from pipeline.records import EncodedFrame, Escalation, Frame, FrameReport, GateDecision, GateReason, Priority, Verdict, VerdictKind

WIRE_VERSION = b"1"

Fields = dict[bytes, bytes]


class WireError(EdgewatchError):
    """A stream entry that is not a well-formed request or reply."""


@dataclass(frozen=True, slots=True)
class Request:
    """A decoded request: the escalation rebuilt from the wire, plus what came with it."""

    rid: str
    box: str
    escalation: Escalation
    thresholds: Mapping[str, Any]
    zones: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded reply: a verdict from a worker, or the bus shedding the request."""

    rid: str
    kind: str
    """'verdict' or 'shed'."""
    verdict: Verdict | None = None
    worker: str = ""
    service_s: float = 0.0
    reason: str = ""
    detail: str = ""


def _text(fields: Fields, key: str) -> str:
    raw = fields.get(key.encode())
    if raw is None:
        raise WireError(f"entry has no {key!r} field")
    return raw.decode("utf-8", errors="replace")


def _report_json(r: FrameReport) -> dict[str, Any]:
    return {"camera": r.camera, "frame": r.frame_index, "t": r.timestamp, "observations": list(r.observations),
            "flags": list(r.safety_flags), "confidence": r.confidence, "backend": r.backend, "model": r.model,
            "prompt_version": r.prompt_version, "latency_ms": r.latency_ms, "error": r.error}


def _report(d: Mapping[str, Any]) -> FrameReport:
    return FrameReport(camera=d["camera"], frame_index=int(d["frame"]), timestamp=float(d["t"]),
                       observations=tuple(d["observations"]), safety_flags=tuple(d["flags"]),
                       confidence=float(d["confidence"]), backend=d["backend"], model=d["model"],
                       prompt_version=d["prompt_version"], latency_ms=float(d["latency_ms"]), error=d.get("error"))


def _gate_json(g: GateDecision) -> dict[str, Any]:
    return {"passed": g.passed, "reason": g.reason.value, "score": g.score, "changed_fraction": g.changed_fraction,
            "salience": g.salience, "region": list(g.region) if g.region else None, "global_kind": g.global_kind}


def _gate(d: Mapping[str, Any]) -> GateDecision:
    region = d.get("region")
    return GateDecision(passed=bool(d["passed"]), reason=GateReason(d["reason"]), score=float(d["score"]),
                        changed_fraction=float(d["changed_fraction"]), salience=float(d["salience"]),
                        region=tuple(region) if region else None, global_kind=d.get("global_kind"))  # type: ignore[arg-type]


def encode_request(rid: str, box: str, esc: Escalation, *, thresholds: Mapping[str, Any] | None = None,
                   zones: list[Mapping[str, Any]] | None = None) -> Fields:
    meta = {
        "id": esc.id, "camera": esc.camera, "incident_id": esc.incident_id, "reason": esc.reason,
        "priority": esc.priority.name, "created_at": esc.created_at, "flags": sorted(esc.flags),
        "merged_ids": list(esc.merged_ids),
        "timeline": [_report_json(r) for r in esc.timeline],
        "keyframes": [{"source_id": k.frame.source_id, "index": k.frame.index, "t": k.frame.timestamp,
                       "width": k.width, "height": k.height, "gate": _gate_json(k.gate)} for k in esc.keyframes],
        "thresholds": dict(thresholds or {}),
        "zones": list(zones or []),
    }
    fields: Fields = {b"rid": rid.encode(), b"box": box.encode(), b"v": WIRE_VERSION,
                      b"meta": json.dumps(meta, default=_json_default).encode()}
    for i, k in enumerate(esc.keyframes):
        fields[f"kf{i}".encode()] = k.jpeg
    return fields


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if hasattr(value, "value"):
        return value.value
    return str(value)


def request_ids(fields: Fields) -> tuple[str, str]:
    """(rid, box) of a request entry — enough to answer even one whose body is unreadable."""
    return _text(fields, "rid"), _text(fields, "box")


def decode_jpeg(jpeg: bytes) -> np.ndarray:
    """The BGR image of a keyframe's JPEG bytes (what the box's teacher would have seen, resized)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise WireError("keyframe is not a decodable JPEG")
    return image


def decode_request(fields: Fields) -> Request:
    rid, box = request_ids(fields)
    if fields.get(b"v") != WIRE_VERSION:
        raise WireError(f"request {rid}: wire version {fields.get(b'v')!r}, this worker speaks {WIRE_VERSION!r}")
    try:
        meta = json.loads(_text(fields, "meta"))
        keyframes = []
        for i, k in enumerate(meta["keyframes"]):
            jpeg = fields.get(f"kf{i}".encode())
            if jpeg is None:
                raise WireError(f"request {rid}: keyframe {i} missing")
            image = decode_jpeg(jpeg)
            frame = Frame(source_id=k["source_id"], index=int(k["index"]), timestamp=float(k["t"]), image=image)
            keyframes.append(EncodedFrame(frame=frame, jpeg=jpeg, b64=base64.b64encode(jpeg).decode("ascii"),
                                          width=int(k["width"]), height=int(k["height"]), gate=_gate(k["gate"])))
        esc = Escalation(
            id=meta["id"], camera=meta["camera"], incident_id=meta["incident_id"], reason=meta["reason"],
            priority=Priority[meta["priority"]], created_at=float(meta["created_at"]), flags=frozenset(meta["flags"]),
            keyframes=tuple(keyframes), timeline=tuple(_report(r) for r in meta["timeline"]),
            merged_ids=tuple(meta["merged_ids"]),
        )
        return Request(rid, box, esc, meta.get("thresholds") or {}, tuple(meta.get("zones") or ()))
    except WireError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise WireError(f"request {rid}: malformed body ({type(exc).__name__}: {exc})") from None


def encode_verdict(rid: str, verdict: Verdict, *, worker: str, service_s: float) -> Fields:
    body = {"escalation_id": verdict.escalation_id, "camera": verdict.camera, "incident_id": verdict.incident_id,
            "kind": verdict.kind.value, "observations": list(verdict.observations),
            "flags": list(verdict.safety_flags), "confidence": verdict.confidence, "explanation": verdict.explanation,
            "backend": verdict.backend, "model": verdict.model, "latency_ms": verdict.latency_ms,
            "timings": dict(verdict.timings)}
    return {b"kind": b"verdict", b"rid": rid.encode(), b"worker": worker.encode(),
            b"service_s": repr(float(service_s)).encode(), b"verdict": json.dumps(body).encode()}


def decode_reply(fields: Fields) -> Reply:
    rid = _text(fields, "rid")
    kind = _text(fields, "kind")
    if kind == "shed":
        return Reply(rid, "shed", reason=_text(fields, "reason"), detail=_text(fields, "detail"))
    if kind != "verdict":
        raise WireError(f"reply {rid}: unknown kind {kind!r}")
    try:
        d = json.loads(_text(fields, "verdict"))
        verdict = Verdict(
            escalation_id=d["escalation_id"], camera=d["camera"], incident_id=d["incident_id"],
            kind=VerdictKind(d["kind"]), observations=tuple(d["observations"]), safety_flags=tuple(d["flags"]),
            confidence=float(d["confidence"]), explanation=d["explanation"], backend=d["backend"], model=d["model"],
            latency_ms=float(d["latency_ms"]), timings={k: float(v) for k, v in (d.get("timings") or {}).items()},
        )
        return Reply(rid, "verdict", verdict=verdict, worker=_text(fields, "worker"),
                     service_s=float(_text(fields, "service_s")))
    except (KeyError, ValueError, TypeError) as exc:
        raise WireError(f"reply {rid}: malformed verdict ({type(exc).__name__}: {exc})") from None

