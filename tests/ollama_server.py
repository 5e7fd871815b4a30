"""An Ollama-protocol HTTP server for tests: real sockets on 127.0.0.1, scripted model behaviour.

No Ollama or model weights exist on the test machines, so the real client code
(`pipeline.analyzers.ollama_client`) is exercised against this server.  It speaks the parts of
the API edgewatch uses, with the documented field names and error bodies:

* ``POST /api/chat`` (streamed NDJSON or one object; an empty ``messages`` list loads the model),
  ``POST /api/generate`` (minimal), ``GET /api/tags``, ``POST /api/show``, ``GET /api/version``,
  ``GET /api/ps``, ``POST /api/embed`` (deterministic vectors from the text);
* an unknown model answers 404 ``{"error": "model 'x' not found"}`` like the real server;
* each chat/generate request takes its behaviour from a `Script`: a queue of `Reply` objects
  and a default (a `Reply` or a function of the request).  The default answer is derived from
  the image: mostly orange → ``fire``; almost black → ``tamper``; otherwise calm.

Every request is recorded (`RecordedRequest`), and the server tracks the most chat/generate
requests it had in flight at once.  Hangs and delays wait on an event that `close()` sets, so
the server always shuts down promptly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "gemma4:e2b": ("completion", "vision"),
    "gemma4:26b": ("completion", "vision"),
}
SERVER_VERSION = "0.12.6-test"


# --------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------


def solid_jpeg(bgr: tuple[int, int, int], width: int = 64, height: int = 64, quality: int = 85) -> bytes:
    """A JPEG of one colour (BGR), e.g. ``(0, 140, 255)`` orange for fire, ``(0, 0, 0)`` for a covered lens."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = bgr
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


ORANGE = (0, 140, 255)
BLACK = (0, 0, 0)
GREY = (128, 128, 128)


@dataclass(frozen=True)
class ImageFacts:
    width: int
    height: int
    mean_brightness: float
    orange_fraction: float


def decode_b64_image(b64: str) -> np.ndarray | None:
    """A base64 JPEG/PNG as a BGR image; None when it is not a decodable image."""
    try:
        data = base64.b64decode(b64, validate=True)
    except Exception:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def orange_mask(image: np.ndarray) -> np.ndarray:
    """Pixels a scripted model calls fire-coloured."""
    b, g, r = (image[..., i].astype(np.int16) for i in range(3))
    return (r > 180) & (g > 60) & (g < 190) & (b < 110)


def image_facts(b64: str) -> ImageFacts | None:
    """Decode a base64 image and measure it; None when it is not a decodable image."""
    image = decode_b64_image(b64)
    if image is None:
        return None
    orange = orange_mask(image)
    return ImageFacts(
        width=int(image.shape[1]),
        height=int(image.shape[0]),
        mean_brightness=float(image.mean()),
        orange_fraction=float(orange.mean()),
    )


# --------------------------------------------------------------------------------------
# Requests and scripted replies
# --------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    body: dict[str, Any] | None
    started: float
    ended: float = 0.0

    @property
    def images(self) -> list[str]:
        """Base64 images of a chat (all messages) or generate request."""
        if not self.body:
            return []
        if self.path == "/api/chat":
            return [img for m in self.body.get("messages") or [] for img in m.get("images") or []]
        return list(self.body.get("images") or [])

    @property
    def format_kind(self) -> str:
        """What the ``format`` asks for: 'teacher', 'student', 'judge', 'array' (skill synthesis) or 'none'."""
        fmt = (self.body or {}).get("format")
        if not isinstance(fmt, dict):
            return "none"
        if fmt.get("type") == "array":
            return "array"
        props = fmt.get("properties") or {}
        if "verdict" in props:
            return "teacher"
        if "score" in props:
            return "judge"
        return "student" if "safetyFlags" in props else "none"

    @property
    def system_text(self) -> str:
        if not self.body:
            return ""
        return "\n".join(str(m.get("content") or "") for m in self.body.get("messages") or [] if m.get("role") == "system")

    @property
    def user_text(self) -> str:
        if not self.body:
            return ""
        if self.path == "/api/generate":
            return str(self.body.get("prompt") or "")
        return "\n".join(str(m.get("content") or "") for m in self.body.get("messages") or [] if m.get("role") == "user")

    @property
    def is_teacher(self) -> bool:
        fmt = (self.body or {}).get("format")
        return isinstance(fmt, dict) and "verdict" in (fmt.get("properties") or {})


@dataclass(frozen=True)
class Reply:
    """What the scripted model does for one chat/generate request.

    ``content`` is the model's answer text (None: derive it from the image); ``status`` != 200
    sends ``{"error": error}``; ``cut`` sends part of the body and closes the connection;
    ``hang_s`` waits that long before answering (the client should time out first);
    ``delay_s`` is ordinary model latency; ``body`` replaces the whole HTTP body.
    """

    content: str | None = None
    status: int = 200
    error: str = ""
    delay_s: float = 0.0
    hang_s: float = 0.0
    cut: bool = False
    body: bytes | None = None
    done_reason: str = "stop"
    load_ms: float = 1.0

    @classmethod
    def answer(cls, obj: dict[str, Any], **kw: Any) -> "Reply":
        return cls(content=json.dumps(obj), **kw)

    @classmethod
    def fenced(cls, obj: dict[str, Any], **kw: Any) -> "Reply":
        return cls(content="Here is the report:\n```json\n" + json.dumps(obj, indent=2) + "\n```\n", **kw)

    @classmethod
    def malformed(cls, **kw: Any) -> "Reply":
        return cls(content='{"observations": ["person", "safetyFlags": [fire', **kw)

    @classmethod
    def wrong_schema(cls, **kw: Any) -> "Reply":
        return cls(content=json.dumps({"objects": ["person"], "danger": True}), **kw)

    @classmethod
    def overloaded(cls) -> "Reply":
        return cls(status=503, error="server busy, please try again.  maximum pending requests exceeded")

    @classmethod
    def server_error(cls, message: str = "llama runner process has terminated: exit status 2") -> "Reply":
        return cls(status=500, error=message)

    @classmethod
    def truncated(cls) -> "Reply":
        return cls(cut=True)

    @classmethod
    def hang(cls, seconds: float = 5.0) -> "Reply":
        return cls(hang_s=seconds)

    @classmethod
    def not_json_body(cls) -> "Reply":
        """A complete HTTP body that is cut JSON (the framing is right, the object is not)."""
        return cls(body=b'{"model": "x", "message": {"role": "assistant", "content": "{\\"obs')


ReplyFn = Callable[[RecordedRequest], Reply]


def student_answer_for(facts: ImageFacts | None) -> dict[str, Any]:
    """What a sensible student would say about the image, from its measured colours."""
    if facts is None:
        return {"observations": ["no image"], "safetyFlags": [], "confidence": 0.2}
    if facts.orange_fraction > 0.5:
        return {"observations": ["bright orange flames fill the frame"], "safetyFlags": ["fire"], "confidence": 0.9}
    if facts.mean_brightness < 20:
        return {"observations": ["image almost black"], "safetyFlags": ["tamper"], "confidence": 0.85}
    return {"observations": ["scene calm"], "safetyFlags": [], "confidence": 0.8}


def teacher_answer_for(all_facts: list[ImageFacts | None]) -> dict[str, Any]:
    fire = [i for i, f in enumerate(all_facts, start=1) if f is not None and f.orange_fraction > 0.5]
    if fire:
        return {
            "verdict": "confirmed",
            "observations": [f"flames in image {i}" for i in fire],
            "safetyFlags": ["fire"],
            "confidence": 0.92,
            "explanation": f"Images {', '.join(map(str, fire))} show bright orange flames.",
        }
    return {
        "verdict": "dismissed",
        "observations": ["nothing unusual"],
        "safetyFlags": [],
        "confidence": 0.8,
        "explanation": "No image shows the escalated concern.",
    }


def image_derived_reply(request: RecordedRequest) -> Reply:
    """The default behaviour: answer from the images' content, student or teacher contract by ``format``."""
    facts = [image_facts(b64) for b64 in request.images]
    if request.is_teacher:
        return Reply.answer(teacher_answer_for(facts))
    return Reply.answer(student_answer_for(facts[0] if facts else None))


class Script:
    """Per-request behaviour: queued replies first (in order), then ``default``.

    ``default`` may be a `Reply` (always the same) or a function of the request.  ``latency_s``
    is added to every reply's delay (a scripted model speed)."""

    def __init__(self, replies: list[Reply] | None = None, default: Reply | ReplyFn | None = None, latency_s: float = 0.0,
                 teacher_latency_s: float | None = None) -> None:
        self._queue: deque[Reply] = deque(replies or [])
        self._default: Reply | ReplyFn = default or image_derived_reply
        self._lock = threading.Lock()
        self.latency_s = latency_s
        self.teacher_latency_s = latency_s if teacher_latency_s is None else teacher_latency_s

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            reply = self._queue.popleft() if self._queue else None
        if reply is None:
            reply = self._default(request) if callable(self._default) else self._default
        if reply.content is None and reply.status == 200 and reply.body is None and not reply.cut:
            derived = image_derived_reply(request)
            reply = replace(reply, content=derived.content)
        extra = self.teacher_latency_s if request.is_teacher else self.latency_s
        if extra:
            reply = replace(reply, delay_s=reply.delay_s + extra)
        return reply


# --------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _normalise_model(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def embedding_for(text: str, dims: int = 16) -> list[float]:
    """A deterministic unit vector from the text (same text → same vector)."""
    raw = hashlib.sha256(text.encode("utf-8")).digest()
    while len(raw) < dims:
        raw += hashlib.sha256(raw).digest()
    vec = [(b - 127.5) / 127.5 for b in raw[:dims]]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def word_embedding_for(text: str, dims: int = 16) -> list[float]:
    """A bag-of-words unit vector: texts sharing words are similar (a crude stand-in for a real embedding model)."""
    dims = max(dims, 64)
    vec = [0.0] * dims
    for word in "".join(ch if ch.isalnum() else " " for ch in text.lower()).split():
        vec[int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:4], "big") % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add ~40 ms per
    # keep-alive request (Ollama's Go server sets TCP_NODELAY too).
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        return

    # ---- plumbing ----
    def _read_json(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            return None
        raw = self.rfile.read(length)
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def _send_json(self, status: int, obj: Any) -> None:
        body = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error_json(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _record(self, body: dict[str, Any] | None) -> RecordedRequest:
        rec = RecordedRequest(method=self.command, path=self.path.split("?")[0], body=body, started=time.monotonic())
        with self.server.lock:
            self.server.recorded.append(rec)
        return rec

    # ---- routes ----
    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        rec = self._record(None)
        try:
            if rec.path == "/api/version":
                self._send_json(200, {"version": self.server.version})
            elif rec.path == "/api/tags":
                self._send_json(200, {"models": [self.server.model_entry(m) for m in self.server.models]})
            elif rec.path == "/api/ps":
                loaded = sorted(self.server.loaded)
                self._send_json(200, {"models": [self.server.model_entry(m) | {"expires_at": _now_iso(), "size_vram": 0}
                                                 for m in loaded]})
            elif rec.path == "/":
                body = b"Ollama is running"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                self._send_error_json(404, "404 page not found")
        finally:
            rec.ended = time.monotonic()

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_json()
        rec = self._record(body)
        try:
            if body is None:
                self._send_error_json(400, "invalid JSON body")
            elif rec.path == "/api/show":
                self._show(body)
            elif rec.path == "/api/embed":
                self._embed(body)
            elif rec.path in ("/api/chat", "/api/generate"):
                self._generate(rec, body)
            else:
                self._send_error_json(404, "404 page not found")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        finally:
            rec.ended = time.monotonic()

    def _show(self, body: dict[str, Any]) -> None:
        name = _normalise_model(str(body.get("model") or body.get("name") or ""))
        if name not in self.server.models:
            self._send_error_json(404, f"model '{name}' not found")
            return
        family = name.split(":")[0]
        show: dict[str, Any] = {
            "modelfile": f"FROM {name}\n",
            "parameters": "temperature 1",
            "template": "{{ .Prompt }}",
            "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                        "parameter_size": name.split(":")[-1].upper(), "quantization_level": "Q4_K_M"},
            "model_info": {"general.architecture": family},
            "modified_at": _now_iso(),
        }
        caps = self.server.models[name]
        if caps is not None:
            show["capabilities"] = list(caps)
        self._send_json(200, show)

    def _embed(self, body: dict[str, Any]) -> None:
        name = _normalise_model(str(body.get("model") or ""))
        if name not in self.server.models:
            self._send_error_json(404, f"model '{name}' not found")
            return
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else list(texts or [])
        dims = int(body.get("dimensions") or 16)
        vector = word_embedding_for if self.server.embeddings == "words" else embedding_for
        self._send_json(200, {"model": name, "embeddings": [vector(str(t), dims) for t in texts],
                              "total_duration": 1_000_000, "load_duration": 0, "prompt_eval_count": len(texts)})

    def _generate(self, rec: RecordedRequest, body: dict[str, Any]) -> None:
        name = _normalise_model(str(body.get("model") or ""))
        if name not in self.server.models:
            self._send_error_json(404, f"model '{name}' not found")
            return
        is_chat = rec.path == "/api/chat"
        if is_chat and not body.get("messages"):
            # Documented: an empty messages list only loads the model.
            self.server.loaded.add(name)
            self._send_json(200, {"model": name, "created_at": _now_iso(),
                                  "message": {"role": "assistant", "content": ""}, "done_reason": "load", "done": True})
            return
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            self._scripted(rec, body, name, is_chat)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _scripted(self, rec: RecordedRequest, body: dict[str, Any], name: str, is_chat: bool) -> None:
        start = time.monotonic()
        reply = self.server.script.next(rec)
        stopping = self.server.stopping
        if reply.hang_s:
            stopping.wait(min(reply.hang_s, self.server.max_hang_s))
        if reply.delay_s:
            stopping.wait(reply.delay_s)
        if stopping.is_set():
            self.close_connection = True
            return
        if reply.status != 200:
            self._send_error_json(reply.status, reply.error or "error")
            return
        if reply.body is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.server.loaded.add(name)
        content = reply.content or ""
        elapsed_ns = int((time.monotonic() - start) * 1e9)
        load_ns = int(reply.load_ms * 1e6)
        n_images = len(rec.images)
        final = {
            "model": name,
            "created_at": _now_iso(),
            "done": True,
            "done_reason": reply.done_reason,
            "total_duration": elapsed_ns + load_ns,
            "load_duration": load_ns,
            "prompt_eval_count": 40 + 256 * n_images,
            "prompt_eval_duration": elapsed_ns // 4,
            "eval_count": max(1, len(content) // 4),
            "eval_duration": elapsed_ns - elapsed_ns // 4,
        }
        if body.get("stream", True):
            self._stream(final, content, is_chat, cut=reply.cut)
            return
        whole = {**final, **({"message": {"role": "assistant", "content": content}} if is_chat else {"response": content})}
        data = json.dumps(whole).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if reply.cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def _stream(self, final: dict[str, Any], content: str, is_chat: bool, *, cut: bool) -> None:
        """NDJSON over chunked transfer, as Ollama streams: pieces with done=false, then the final object."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj: dict[str, Any]) -> None:
            line = (json.dumps(obj) + "\n").encode("utf-8")
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        pieces = [content[i : i + 8] for i in range(0, len(content), 8)] or [""]
        if cut:
            pieces = pieces[: max(1, len(pieces) // 2)]
        for piece in pieces:
            part = {"model": final["model"], "created_at": _now_iso(), "done": False}
            part |= {"message": {"role": "assistant", "content": piece}} if is_chat else {"response": piece}
            chunk(part)
        if cut:
            # Half a line, then the connection drops without the terminating chunk.
            self.wfile.write(b"20\r\n{\"model\": \"x\", \"cre")
            self.wfile.flush()
            self.close_connection = True
            return
        last = {**final, **({"message": {"role": "assistant", "content": ""}} if is_chat else {"response": ""})}
        chunk(last)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, script: Script, models: dict[str, tuple[str, ...] | None], version: str, max_hang_s: float,
                 port: int = 0, embeddings: str = "hash") -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.embeddings = embeddings
        self.script = script
        self.models = {_normalise_model(k): v for k, v in models.items()}
        self.version = version
        self.max_hang_s = max_hang_s
        self.lock = threading.Lock()
        self.recorded: list[RecordedRequest] = []
        self.loaded: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()

    def model_entry(self, name: str) -> dict[str, Any]:
        family = name.split(":")[0]
        return {
            "name": name,
            "model": name,
            "modified_at": _now_iso(),
            "size": 1_000_000,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                        "parameter_size": name.split(":")[-1].upper(), "quantization_level": "Q4_K_M"},
        }


class OllamaTestServer:
    """Start with ``with OllamaTestServer(script) as srv:``; ``srv.url`` is the host to configure.

    ``models`` maps model names to the capabilities ``/api/show`` reports (None: not reported).
    ``max_hang_s`` bounds every scripted hang so shutdown is never stuck."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        models: dict[str, tuple[str, ...] | None] | None = None,
        version: str = SERVER_VERSION,
        max_hang_s: float = 10.0,
        port: int = 0,
        embeddings: str = "hash",
    ) -> None:
        self.script = script or Script()
        self._server = _Server(self.script, DEFAULT_MODELS if models is None else models, version, max_hang_s,
                               port=port, embeddings=embeddings)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="ollama-test-server", daemon=True)
        self._started = False

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._server.lock:
            return list(self._server.recorded)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    @property
    def max_in_flight(self) -> int:
        return self._server.max_in_flight

    @property
    def loaded(self) -> set[str]:
        return set(self._server.loaded)

    def start(self) -> "OllamaTestServer":
        if not self._started:
            self._thread.start()
            self._started = True
        return self

    def close(self) -> None:
        self._server.stopping.set()
        if self._started:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> "OllamaTestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def running_server(script: Script | None = None, **kw: Any) -> Iterator[OllamaTestServer]:
    with OllamaTestServer(script, **kw) as srv:
        yield srv


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (bound, then released)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------------
# The "skills-demo" script: a student whose quality depends on its system prompt
# --------------------------------------------------------------------------------------
#
# For the skills loop (synthesise, score, promote) to mean anything against a scripted server,
# the scripted student must answer better with a better prompt.  It "sees" with colour rules
# (dark frame, orange area, the blue-teal shirt of `fixtures.demo.Walker` and its posture) and
# follows two rules only when its system prompt states them: FALL_RULE (a lying person is a
# fall) and LAMP_RULE (a small steady orange light is not fire).  CAUTIOUS_RULE makes it drop
# flags it is unsure of, which loses safety recall.  The scripted teacher writes candidates
# from these rules, grades answers on the rubric from the flags, and reviews sequences.

FALL_RULE = "A person lying on the floor or the ground has fallen: raise the flag fall."
LAMP_RULE = "A small steady orange lamp or light is not fire: raise fire only for flames."
CAUTIOUS_RULE = "Raise a flag only when completely certain; when in doubt leave safetyFlags empty."
BRIEF_RULE = "Keep every observation under six words."
#: The extra rules of the candidates the scripted teacher writes, in order (cycled past five).
CANDIDATE_RULES: tuple[tuple[str, ...], ...] = (
    (BRIEF_RULE,),
    (FALL_RULE,),
    (CAUTIOUS_RULE, FALL_RULE, LAMP_RULE),
    (LAMP_RULE,),
    (FALL_RULE, LAMP_RULE),
)


@dataclass(frozen=True)
class SceneFacts:
    mean_brightness: float
    orange_fraction: float
    person_fraction: float
    lying: bool


def scene_facts(b64: str) -> SceneFacts | None:
    image = decode_b64_image(b64)
    if image is None:
        return None
    orange = orange_mask(image)
    b, g, r = (image[..., i].astype(np.int16) for i in range(3))
    shirt = (b > 135) & (g > 75) & (g < 145) & (r < 70)
    lying = False
    if shirt.mean() > 0.002:
        ys, xs = np.nonzero(shirt)
        # The torso's principal direction: wider than tall means lying down.
        lying = float(np.percentile(xs, 90) - np.percentile(xs, 10)) > float(np.percentile(ys, 90) - np.percentile(ys, 10))
    return SceneFacts(float(image.mean()), float(orange.mean()), float(shirt.mean()), lying)


def skills_demo_student(facts: SceneFacts | None, system: str) -> dict[str, Any]:
    cautious = CAUTIOUS_RULE in system
    if facts is None:
        return {"observations": ["no image"], "safetyFlags": [], "confidence": 0.2}
    if facts.mean_brightness < 45:
        return {"observations": ["image almost black"], "safetyFlags": [] if cautious else ["tamper"], "confidence": 0.85}
    observations: list[str] = []
    flags: list[str] = []
    if facts.orange_fraction > 0.012:
        observations.append("flames on the floor")
        flags.append("fire")
    elif facts.orange_fraction > 0.003:
        if LAMP_RULE in system:
            observations.append("lamp glowing orange")
        else:
            observations.append("orange glow")
            flags.append("fire")
    if facts.person_fraction > 0.002:
        if facts.lying and FALL_RULE in system:
            observations.append("person lying on the floor")
            flags.append("fall")
        elif facts.lying:
            observations.append("person in an unusual pose")
        else:
            observations.append("person walking")
    if not observations:
        observations = ["empty room with a cabinet"]
    return {"observations": observations, "safetyFlags": flags, "confidence": 0.8}


def skills_demo_candidates(request: RecordedRequest) -> list[str]:
    fmt = (request.body or {}).get("format") or {}
    count = int(fmt.get("maxItems") or fmt.get("minItems") or 5)
    user = request.user_text
    start, end = user.find("<<<\n"), user.find("\n>>>")
    base = user[start + 4:end].strip() if 0 <= start < end else "Report observations, safetyFlags and confidence."
    out = []
    for i in range(count):
        rules = CANDIDATE_RULES[i % len(CANDIDATE_RULES)]
        suffix = f" (variant {i // len(CANDIDATE_RULES) + 1})" if i >= len(CANDIDATE_RULES) else ""
        out.append(base + "\n" + "\n".join(rules) + suffix)
    return out


def skills_demo_grade(user: str) -> dict[str, Any]:
    def line(prefix: str) -> str:
        for row in user.splitlines():
            if row.startswith(prefix):
                return row[len(prefix):].strip()
        return ""

    expected = {f.strip() for f in line("Reference safety flags:").split(",") if f.strip() and f.strip() != "none"}
    said = {f.strip() for f in line("Answer safety flags:").split(",") if f.strip() and f.strip() != "none"}
    if "(no observations)" in user:
        return {"score": 0, "reason": "The answer is empty."}
    if expected == said:
        return {"score": 4, "reason": "The safety flags match the reference."}
    return {"score": 1, "reason": f"Flags {sorted(said)} differ from the reference {sorted(expected)}."}


def skills_demo_teacher(all_facts: list[SceneFacts | None]) -> dict[str, Any]:
    facts = [f for f in all_facts if f is not None]
    dark = sum(f.mean_brightness < 45 for f in facts)
    orange = [f.orange_fraction for f in facts if f.orange_fraction > 0.003]
    if dark >= 2:
        return {"verdict": "confirmed", "observations": ["lens covered"], "safetyFlags": ["tamper"],
                "confidence": 0.9, "explanation": f"{dark} images are black: the lens is covered."}
    if len(orange) >= 2 and max(orange) - min(orange) > 0.002:
        return {"verdict": "confirmed", "observations": ["flames growing"], "safetyFlags": ["fire"],
                "confidence": 0.9, "explanation": "The orange region grows between images: fire."}
    if any(f.lying for f in facts if f.person_fraction > 0.002):
        return {"verdict": "confirmed", "observations": ["person lying on the floor"], "safetyFlags": ["fall"],
                "confidence": 0.85, "explanation": "A person lies on the floor in the later images."}
    return {"verdict": "dismissed", "observations": ["nothing unusual"], "safetyFlags": [],
            "confidence": 0.8, "explanation": "No image shows the escalated concern."}


def skills_demo_reply(request: RecordedRequest) -> Reply:
    kind = request.format_kind
    if kind == "array":
        return Reply(content=json.dumps(skills_demo_candidates(request)))
    if kind == "judge":
        return Reply.answer(skills_demo_grade(request.user_text))
    facts = [scene_facts(b64) for b64 in request.images]
    if kind == "teacher":
        return Reply.answer(skills_demo_teacher(facts))
    return Reply.answer(skills_demo_student(facts[0] if facts else None, request.system_text))


SKILLS_DEMO_MODELS: dict[str, tuple[str, ...] | None] = {
    **DEFAULT_MODELS,
    "embeddinggemma": ("embedding",),
}
SCRIPTS: dict[str, ReplyFn] = {"image": image_derived_reply, "skills-demo": skills_demo_reply}


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted: ``python -m tests.ollama_server --port 11435 --script skills-demo``."""
    import argparse
    import logging

    parser = argparse.ArgumentParser(description="The Ollama-protocol test server with a scripted model.")
    parser.add_argument("--port", type=int, default=11435)
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="skills-demo")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = OllamaTestServer(Script(default=SCRIPTS[args.script]), models=SKILLS_DEMO_MODELS, port=args.port,
                              embeddings="words")
    with server:
        logging.getLogger("ollama_server").info("scripted Ollama (%s) on %s; Ctrl-C to stop", args.script, server.url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
