"""The real models, through Ollama.  The only module that imports ``ollama`` (and ``httpx``, its transport).

* `OllamaStudent` answers one frame with the `StudentAnswer` contract, `OllamaTeacher` rules on
  an escalated sequence with the `TeacherAnswer` contract.  Both send the contract's JSON schema
  as Ollama's ``format`` (structured output), validate the answer, and never raise for a model
  failure: the student returns ``FrameReport.failed`` (flag ``model_error``), the teacher
  ``Verdict.unverified``.  Nothing is fabricated.
* Every failure is classified (`FailureKind`) with a one-line message that says what to do.
  Overloaded (503) backs off with jitter and retries once; server errors, cut streams and
  malformed answers retry once; a missing model, refused connections, DNS failures and
  timeouts fail fast (a retry would only add latency, and a timed-out frame is stale anyway).
* `probe_host`, `show_model` and `timed_image_call` are what ``edgewatch doctor`` needs.
"""

from __future__ import annotations

import json
import logging
import random
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

import httpx
import ollama
from pydantic import BaseModel, ValidationError

from pipeline.analyzers.prompts import (
    STUDENT_PROMPT,
    TEACHER_PROMPT,
    SystemPrompt,
    keyframes_in_time_order,
    student_user_text,
    teacher_user_text,
)
from pipeline.clock import Clock, SystemClock
from pipeline.config.models import ModelEndpoint, StudentConfig, TeacherConfig
from pipeline.errors import EdgewatchError
from pipeline.masking import mask_url
from pipeline.records import EncodedFrame, Escalation, FrameReport, StudentAnswer, TeacherAnswer, Verdict

log = logging.getLogger("edgewatch.ollama")
# httpx logs every request at INFO; one line per frame would drown edgewatch's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

BACKEND = "ollama"

#: First back-off after a 503; the actual wait is this times 1..2 (jitter), never more than `_MAX_BACKOFF_S`.
DEFAULT_BACKOFF_S = 0.25
_MAX_BACKOFF_S = 2.0

Contract = TypeVar("Contract", bound=BaseModel)


# --------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------


class FailureKind(str, Enum):
    CONNECTION_REFUSED = "connection_refused"
    DNS = "dns"
    TIMEOUT = "timeout"
    MODEL_NOT_FOUND = "model_not_found"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    STREAM_CUT = "stream_cut"
    MALFORMED = "malformed"
    BAD_REQUEST = "bad_request"


#: Kinds worth one more try: the next answer may well be fine.
_RETRYABLE = frozenset({FailureKind.OVERLOADED, FailureKind.SERVER_ERROR, FailureKind.STREAM_CUT, FailureKind.MALFORMED})


class ModelError(EdgewatchError):
    """A classified model-call failure; ``str()`` is one line: ``<kind>: <what happened and what to do>``."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{kind.value}: {message}")
        self.kind = kind
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


def mask_host(host: str) -> str:
    """``http://user:secret@host/?token=x`` → ``http://user:***@host/?token=***`` (`pipeline.masking`)."""
    return mask_url(host.strip())


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything it was raised from or during (ollama hides the cause with ``from None``)."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in chain and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


_DNS_WORDS = ("name or service not known", "name resolution", "nodename nor servname", "no address associated", "getaddrinfo")


def classify(exc: BaseException, *, host: str, model: str) -> ModelError:
    """Turn whatever the client raised into a `ModelError` with a clear one-line message."""
    shown = mask_host(host)
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, ollama.ResponseError):
        status = exc.status_code
        detail = str(exc.error).strip() or "no detail"
        if status == 404:
            # Ollama's body names the model; anything else (a proxy's "page not found") is worth showing.
            extra = "" if model and model.split(":")[0] in detail else f" ({detail})"
            return ModelError(
                FailureKind.MODEL_NOT_FOUND,
                f"model '{model}' not found on {shown}{extra}; run `ollama pull {model}` there",
                status=status,
            )
        if status == 503:
            return ModelError(FailureKind.OVERLOADED, f"{shown} is overloaded (503: {detail})", status=status)
        if status >= 500:
            return ModelError(FailureKind.SERVER_ERROR, f"{shown} failed ({status}: {detail})", status=status)
        if status == -1:  # an error object inside a stream: the server gave up mid-answer
            return ModelError(FailureKind.SERVER_ERROR, f"{shown} reported an error mid-answer: {detail}")
        return ModelError(FailureKind.BAD_REQUEST, f"{shown} rejected the request ({status}: {detail})", status=status)
    chain = _exception_chain(exc)
    if any(isinstance(e, httpx.TimeoutException) for e in chain):
        return ModelError(FailureKind.TIMEOUT, f"no answer from {shown} within the timeout (model '{model}')")
    if any(isinstance(e, socket.gaierror) for e in chain) or (
        any(isinstance(e, (ConnectionError, httpx.ConnectError)) for e in chain)
        and any(w in str(e).lower() for e in chain for w in _DNS_WORDS)
    ):
        return ModelError(FailureKind.DNS, f"cannot resolve the host of {shown}; check student.host / teacher.host")
    if any(isinstance(e, (ConnectionError, httpx.ConnectError)) for e in chain) and not any(
        isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)) for e in chain
    ):
        return ModelError(
            FailureKind.CONNECTION_REFUSED, f"cannot connect to Ollama at {shown}; start it with `ollama serve` or fix the host"
        )
    if any(isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)) for e in chain):
        return ModelError(FailureKind.STREAM_CUT, f"{shown} closed the connection before the answer was complete")
    if isinstance(exc, json.JSONDecodeError):
        return ModelError(FailureKind.STREAM_CUT, f"{shown} sent a response body that is not complete JSON")
    if isinstance(exc, ValidationError):
        return ModelError(FailureKind.MALFORMED, f"{shown} sent a response that is not an Ollama chat answer")
    if isinstance(exc, ollama.RequestError):
        return ModelError(FailureKind.BAD_REQUEST, f"request not sent: {exc.error}")
    if isinstance(exc, (ValueError, TypeError)):  # the client refused to build the request (e.g. an image that is not base64)
        return ModelError(FailureKind.BAD_REQUEST, f"request not sent: {exc.__class__.__name__}: {exc}")
    if isinstance(exc, httpx.HTTPError):
        return ModelError(FailureKind.SERVER_ERROR, f"transport error talking to {shown}: {exc.__class__.__name__}: {exc}")
    return ModelError(FailureKind.SERVER_ERROR, f"unexpected {exc.__class__.__name__} talking to {shown}: {exc}")


# --------------------------------------------------------------------------------------
# Answers: safe repair and validation
# --------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.DOTALL)


def first_balanced(text: str, opener: str = "{") -> str | None:
    """The first balanced ``{...}`` (or ``[...]`` with ``opener="["``) in ``text``; brackets
    inside JSON strings do not count.  None when there is none."""
    closer = {"{": "}", "[": "]"}[opener]
    start = text.find(opener)
    while start != -1:
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == opener:
                depth += 1
            elif ch == closer:
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find(opener, start + 1)
    return None


def first_json_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (braces inside JSON strings do not count), or None."""
    return first_balanced(text, "{")


def _candidates(content: str) -> list[str]:
    """The answer as given, then safe repairs: inside a ``` fence, then the first balanced object.

    Only wrapping is removed; the JSON itself is never edited, so a repaired answer says exactly
    what the model said."""
    raw = content.strip()
    out = [raw]
    fenced = _FENCE.search(raw)
    if fenced:
        out.append(fenced.group(1).strip())
    for text in list(out):
        obj = first_json_object(text)
        if obj is not None:
            out.append(obj)
    seen: list[str] = []
    for c in out:
        if c and c not in seen:
            seen.append(c)
    return seen


def _describe_validation(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "answer"
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def parse_answer(content: str, contract: type[Contract], *, done_reason: str | None = None) -> Contract:
    """Validate a model's answer against ``contract`` after safe repair; `ModelError` (malformed) otherwise."""
    candidates = _candidates(content or "")
    if not candidates:
        raise ModelError(FailureKind.MALFORMED, "the model gave an empty answer")
    last: ValidationError | None = None
    for text in candidates:
        try:
            return contract.model_validate_json(text)
        except ValidationError as err:
            last = err
    snippet = (content or "").strip().replace("\n", " ")[:80]
    cut = " (answer cut at num_predict tokens)" if done_reason == "length" else ""
    why = _describe_validation(last) if last is not None else "no JSON object"
    raise ModelError(FailureKind.MALFORMED, f"answer does not match the contract{cut}: {why}; began {snippet!r}")


# --------------------------------------------------------------------------------------
# One model endpoint: clients, concurrency limit, retries
# --------------------------------------------------------------------------------------


def _timings(resp: Any) -> dict[str, float]:
    """Ollama's own measurements, nanoseconds → milliseconds (counts stay counts)."""
    out: dict[str, float] = {}
    for key, name in (
        ("total_duration", "total_ms"),
        ("load_duration", "load_ms"),
        ("prompt_eval_duration", "prompt_eval_ms"),
        ("eval_duration", "eval_ms"),
    ):
        value = getattr(resp, key, None)
        if value is not None:
            out[name] = round(float(value) / 1e6, 3)
    for key in ("prompt_eval_count", "eval_count"):
        value = getattr(resp, key, None)
        if value is not None:
            out[key] = float(value)
    return out


@dataclass(frozen=True, slots=True)
class _ChatResult:
    content: str
    done_reason: str | None
    timings: dict[str, float] = field(default_factory=dict)


class _Endpoint:
    """One model on one host: the two clients (first call / steady), the in-flight limit, retries."""

    def __init__(self, cfg: ModelEndpoint, clock: Clock, rng: random.Random | None, backoff_s: float) -> None:
        self.cfg = cfg
        self.host = cfg.host
        self.shown_host = mask_host(cfg.host)
        self._clock = clock
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        self._backoff_s = max(0.0, backoff_s)
        # httpx applies the timeout to connect and to each read; the first call may have to load the model.
        self._first_client = ollama.Client(host=cfg.host, timeout=cfg.first_call_timeout_ms / 1000.0)
        self._steady_client = ollama.Client(host=cfg.host, timeout=cfg.timeout_ms / 1000.0)
        self._loaded = threading.Event()
        self._slots = threading.BoundedSemaphore(cfg.max_concurrent)
        self.failures: Counter[str] = Counter()
        self._failures_lock = threading.Lock()

    def _client(self) -> ollama.Client:
        return self._steady_client if self._loaded.is_set() else self._first_client

    def _options(self) -> dict[str, Any]:
        return {"temperature": self.cfg.temperature, "num_predict": self.cfg.num_predict}

    def chat_once(self, messages: list[dict[str, Any]], fmt: dict[str, Any] | None) -> _ChatResult:
        with self._slots:
            try:
                resp = self._client().chat(
                    model=self.cfg.model,
                    messages=messages,
                    format=fmt,
                    options=self._options(),
                    keep_alive=self.cfg.keep_alive,
                    stream=False,
                )
            except Exception as exc:  # every client/transport failure becomes a classified ModelError
                raise classify(exc, host=self.host, model=self.cfg.model) from None
        self._loaded.set()
        content = resp.message.content if resp.message is not None else None
        return _ChatResult(content=content or "", done_reason=resp.done_reason, timings=_timings(resp))

    def backoff(self) -> float:
        with self._rng_lock:
            jitter = self._rng.random()
        delay = min(_MAX_BACKOFF_S, self._backoff_s * (1.0 + jitter))
        self._clock.sleep(delay)
        return delay

    def call_validated(self, messages: list[dict[str, Any]], contract: type[Contract]) -> tuple[Contract, dict[str, float]]:
        """Ask, validate, and retry once when a retry can help; raise the last `ModelError` otherwise."""
        last: ModelError | None = None
        for attempt in (1, 2):
            try:
                result = self.chat_once(messages, contract.json_schema())
                answer = parse_answer(result.content, contract, done_reason=result.done_reason)
                return answer, {**result.timings, "attempts": float(attempt)}
            except ModelError as err:
                last = err
                with self._failures_lock:
                    self.failures[err.kind.value] += 1
                if attempt == 2 or not err.retryable:
                    break
                waited = self.backoff() if err.kind is FailureKind.OVERLOADED else 0.0
                log.warning("%s %s: %s; retrying once%s", self.cfg.model, self.shown_host, err,
                            f" after {waited * 1000:.0f} ms" if waited else "")
        assert last is not None
        raise last

    def warm_up(self) -> float:
        """Load the model (an empty chat, as Ollama documents) and return how long it took, in ms."""
        start = self._clock.monotonic()
        with self._slots:
            try:
                self._first_client.chat(model=self.cfg.model, messages=[], keep_alive=self.cfg.keep_alive, stream=False)
            except Exception as exc:
                raise classify(exc, host=self.host, model=self.cfg.model) from None
        self._loaded.set()
        return (self._clock.monotonic() - start) * 1000.0

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def give_up_loading(self) -> None:
        """Use the steady client (and timeout) from now on, loaded or not."""
        self._loaded.set()

    def close(self) -> None:
        self._first_client.close()
        self._steady_client.close()


# --------------------------------------------------------------------------------------
# Student and teacher
# --------------------------------------------------------------------------------------


class _OllamaRole:
    """What the student and the teacher share: one endpoint, its prompt, warm-up and failure counts."""

    backend = BACKEND
    role = "model"

    def __init__(
        self,
        cfg: StudentConfig | TeacherConfig,
        prompt: SystemPrompt,
        clock: Clock | None = None,
        *,
        rng: random.Random | None = None,
        backoff_s: float = DEFAULT_BACKOFF_S,
    ) -> None:
        self._clock = clock or SystemClock()
        self._prompt = prompt
        self._endpoint = _Endpoint(cfg, self._clock, rng, backoff_s)
        self.model = cfg.model
        self.prompt_version = prompt.version

    @property
    def failures(self) -> dict[str, int]:
        """Failed attempts so far, by `FailureKind` value."""
        return dict(self._endpoint.failures)

    def warm_up(self) -> float:
        """Load the model before the first request; returns ms taken, raises `ModelError` when it cannot."""
        took = self._endpoint.warm_up()
        log.info("%s %s loaded on %s in %.0f ms", self.role, self.model, self._endpoint.shown_host, took)
        return took

    @property
    def warmed_up(self) -> bool:
        """The model answered once (loaded), or its warm-up gave up: later calls use the steady timeout."""
        return self._endpoint.loaded

    def warm_up_in_background(self) -> threading.Thread:
        """Load the model on a daemon thread, so monitoring starts at once and the first review does not
        wait for the load.  A warm-up that fails or hangs past ``first_call_timeout_ms`` is logged, and
        calls use the steady timeout from then on (a hung host never costs minutes per call)."""

        def run() -> None:
            try:
                self.warm_up()
            except ModelError as exc:
                log.warning("%s %s warm-up failed on %s: %s", self.role, self.model, self._endpoint.shown_host, exc)
                self._endpoint.give_up_loading()

        thread = threading.Thread(target=run, name=f"warm-up-{self.role}", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self._endpoint.close()

    def set_prompt(self, prompt: SystemPrompt) -> None:
        """Switch to another prompt version (a reload after `skills promote`); later reports record it."""
        self._prompt = prompt
        self.prompt_version = prompt.version


class OllamaStudent(_OllamaRole):
    """`pipeline.analyzers.base.Student` backed by an Ollama vision model (thread-safe)."""

    role = "student"

    def __init__(self, cfg: StudentConfig, prompt: SystemPrompt = STUDENT_PROMPT, clock: Clock | None = None,
                 **kw: Any) -> None:
        super().__init__(cfg, prompt, clock, **kw)

    def analyze(self, item: EncodedFrame) -> FrameReport:
        start = self._clock.monotonic()
        messages = [
            {"role": "system", "content": self._prompt.text},
            {"role": "user", "content": student_user_text(), "images": [item.b64]},
        ]
        try:
            answer, timings = self._endpoint.call_validated(messages, StudentAnswer)
        except Exception as exc:  # never raise: a failed analysis is a report, not an exception
            err = classify(exc, host=self._endpoint.host, model=self.model)
            log.warning("student frame %d: %s", item.frame.index, err)
            return FrameReport.failed(
                frame=item.frame,
                backend=self.backend,
                model=self.model,
                prompt_version=self.prompt_version,
                latency_ms=(self._clock.monotonic() - start) * 1000.0,
                error=str(err),
            )
        return FrameReport.from_answer(
            answer,
            frame=item.frame,
            backend=self.backend,
            model=self.model,
            prompt_version=self.prompt_version,
            latency_ms=(self._clock.monotonic() - start) * 1000.0,
            timings=timings,
        )


class OllamaTeacher(_OllamaRole):
    """`pipeline.analyzers.base.Teacher` backed by a large Ollama vision model (thread-safe)."""

    role = "teacher"

    def __init__(self, cfg: TeacherConfig, prompt: SystemPrompt = TEACHER_PROMPT, clock: Clock | None = None,
                 **kw: Any) -> None:
        super().__init__(cfg, prompt, clock, **kw)

    def review(self, escalation: Escalation) -> Verdict:
        start = self._clock.monotonic()
        user: dict[str, Any] = {"role": "user", "content": teacher_user_text(escalation)}
        images = [k.b64 for k in keyframes_in_time_order(escalation)]
        if images:
            user["images"] = images
        messages = [{"role": "system", "content": self._prompt.text}, user]
        try:
            answer, timings = self._endpoint.call_validated(messages, TeacherAnswer)
        except Exception as exc:  # never raise: an undecided review is an unverified verdict
            err = classify(exc, host=self._endpoint.host, model=self.model)
            log.warning("teacher escalation %s: %s", escalation.id, err)
            return Verdict.unverified(
                escalation,
                backend=self.backend,
                model=self.model,
                latency_ms=(self._clock.monotonic() - start) * 1000.0,
                why=str(err),
            )
        return Verdict.from_answer(
            answer,
            escalation=escalation,
            backend=self.backend,
            model=self.model,
            latency_ms=(self._clock.monotonic() - start) * 1000.0,
            timings=timings,
        )


# --------------------------------------------------------------------------------------
# Host checks (for `edgewatch doctor` and backend "auto")
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostProbe:
    host: str
    """The host, credentials masked."""
    reachable: bool
    version: str | None
    models: tuple[str, ...]
    error: str | None = None
    kind: FailureKind | None = None

    def has_model(self, name: str) -> bool:
        """Whether ``name`` is pulled on the host (``gemma4`` and ``gemma4:latest`` are the same model)."""
        wanted = name if ":" in name else f"{name}:latest"
        return any(m == wanted or m == name for m in self.models)


def probe_host(host: str, timeout_s: float) -> HostProbe:
    """``/api/version`` and ``/api/tags`` of ``host``; never raises."""
    shown = mask_host(host)
    with ollama.Client(host=host, timeout=timeout_s) as client:
        try:
            raw = client._request_raw("GET", "/api/version")  # the client has no public version call
            version = str(raw.json().get("version", "")) or None
            listed = client.list()
        except Exception as exc:
            err = classify(exc, host=host, model="")
            return HostProbe(host=shown, reachable=False, version=None, models=(), error=str(err), kind=err.kind)
    names = tuple(m.model for m in listed.models if m.model)
    return HostProbe(host=shown, reachable=True, version=version, models=names)


@dataclass(frozen=True, slots=True)
class ModelShow:
    model: str
    present: bool
    capabilities: tuple[str, ...] | None
    """What ``/api/show`` reports (``completion``, ``vision``...), or None when the server does not say."""
    family: str | None = None
    parameter_size: str | None = None
    error: str | None = None

    @property
    def vision(self) -> bool | None:
        return None if self.capabilities is None else "vision" in self.capabilities


def show_model(host: str, model: str, timeout_s: float) -> ModelShow:
    """``/api/show`` for ``model``; never raises."""
    with ollama.Client(host=host, timeout=timeout_s) as client:
        try:
            shown = client.show(model)
        except Exception as exc:
            err = classify(exc, host=host, model=model)
            return ModelShow(model=model, present=False, capabilities=None, error=str(err))
    details = shown.details
    return ModelShow(
        model=model,
        present=True,
        capabilities=tuple(shown.capabilities) if shown.capabilities is not None else None,
        family=details.family if details is not None else None,
        parameter_size=details.parameter_size if details is not None else None,
    )


@dataclass(frozen=True, slots=True)
class ImageCallResult:
    model: str
    ok: bool
    latency_ms: float
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    kind: FailureKind | None = None


def timed_image_call(cfg: ModelEndpoint, image_b64: str, clock: Clock | None = None) -> ImageCallResult:
    """One small image through ``cfg``'s model with the student contract, timed; never raises.

    Uses the first-call timeout throughout: the doctor may be the one loading the model."""
    clock = clock or SystemClock()
    cfg = cfg.model_copy(update={"timeout_ms": cfg.first_call_timeout_ms, "max_concurrent": 1})
    endpoint = _Endpoint(cfg, clock, None, DEFAULT_BACKOFF_S)
    messages = [
        {"role": "system", "content": STUDENT_PROMPT.text},
        {"role": "user", "content": student_user_text(), "images": [image_b64]},
    ]
    start = clock.monotonic()
    try:
        _, timings = endpoint.call_validated(messages, StudentAnswer)
    except Exception as exc:
        err = classify(exc, host=cfg.host, model=cfg.model)
        return ImageCallResult(model=cfg.model, ok=False, latency_ms=(clock.monotonic() - start) * 1000.0,
                               error=str(err), kind=err.kind)
    finally:
        endpoint.close()
    return ImageCallResult(model=cfg.model, ok=True, latency_ms=(clock.monotonic() - start) * 1000.0, timings=timings)


# --------------------------------------------------------------------------------------
# Text models and embeddings (for `tools.skills`: synthesis, judging, semantic scoring)
# --------------------------------------------------------------------------------------


class OllamaChat:
    """A model used for one-off JSON tasks (writing candidate prompts, judging answers); thread-safe.

    Failures raise a classified `ModelError`: unlike the student and teacher in the pipeline,
    an offline tool has nobody to fall back on, and a clear one-line error is the right answer."""

    def __init__(self, cfg: ModelEndpoint, clock: Clock | None = None, *, rng: random.Random | None = None,
                 backoff_s: float = DEFAULT_BACKOFF_S) -> None:
        self._endpoint = _Endpoint(cfg, clock or SystemClock(), rng, backoff_s)
        self.model = cfg.model
        self.shown_host = self._endpoint.shown_host

    def complete(self, system: str, user: str, fmt: dict[str, Any] | None = None,
                 images: list[str] | None = None) -> str:
        """The answer text for one system + user message; retried once when a retry can help."""
        message: dict[str, Any] = {"role": "user", "content": user}
        if images:
            message["images"] = list(images)
        messages = [{"role": "system", "content": system}, message]
        last: ModelError | None = None
        for attempt in (1, 2):
            try:
                result = self._endpoint.chat_once(messages, fmt)
                if not result.content.strip():
                    raise ModelError(FailureKind.MALFORMED, f"{self.model} gave an empty answer")
                return result.content
            except ModelError as err:
                last = err
                if attempt == 2 or not err.retryable:
                    break
                if err.kind is FailureKind.OVERLOADED:
                    self._endpoint.backoff()
        assert last is not None
        raise last

    def ask(self, system: str, user: str, contract: type[Contract], images: list[str] | None = None) -> Contract:
        """An answer validated against ``contract`` (sent as the output format); `ModelError` otherwise."""
        message: dict[str, Any] = {"role": "user", "content": user}
        if images:
            message["images"] = list(images)
        answer, _ = self._endpoint.call_validated([{"role": "system", "content": system}, message], contract)
        return answer

    def close(self) -> None:
        self._endpoint.close()


def embed(host: str, model: str, texts: list[str], timeout_s: float) -> list[list[float]]:
    """Ollama ``/api/embed`` vectors for ``texts`` (same order); raises a classified `ModelError`."""
    if not texts:
        return []
    with ollama.Client(host=host, timeout=timeout_s) as client:
        try:
            resp = client.embed(model=model, input=list(texts))
        except Exception as exc:
            raise classify(exc, host=host, model=model) from None
    vectors = [list(map(float, v)) for v in (resp.embeddings or [])]
    if len(vectors) != len(texts):
        raise ModelError(FailureKind.MALFORMED,
                         f"{mask_host(host)} returned {len(vectors)} embeddings for {len(texts)} texts (model '{model}')")
    return vectors
