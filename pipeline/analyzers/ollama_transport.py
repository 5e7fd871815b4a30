"""Ollama on the wire.  The only module that imports ``ollama`` (and ``httpx``, its transport).

* `Endpoint`: one model on one host, its two clients (first call / steady), the in-flight limit,
  retries; a call answers with a contract (`pipeline.analyzers.model_answers`) or raises a `ModelError`.
* `classify` turns whatever the client raised into a `ModelError` with a clear one-line message.
  Overloaded (503) backs off with jitter and retries once; server errors, cut streams and
  malformed answers retry once; a missing model, refused connections, DNS failures and
  timeouts fail fast (a retry would only add latency, and a timed-out frame is stale anyway).
* `host_version_and_models`, `model_details` and `embed` are the host's other calls
  (used by `pipeline.analyzers.ollama_health` and the skills tools).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import ollama
from pydantic import ValidationError

from pipeline.analyzers.model_answers import Contract, parse_answer
from pipeline.analyzers.model_failures import FailureKind, ModelError, mask_host
from pipeline.clock import Clock
from pipeline.config.models import ModelEndpoint

log = logging.getLogger("edgewatch.ollama")
# httpx logs every request at INFO; one line per frame would drown edgewatch's own log.
logging.getLogger("httpx").setLevel(logging.WARNING)

#: First back-off after a 503; the actual wait is this times 1..2 (jitter), never more than `_MAX_BACKOFF_S`.
DEFAULT_BACKOFF_S = 0.25
_MAX_BACKOFF_S = 2.0


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
class ChatResult:
    content: str
    done_reason: str | None
    timings: dict[str, float] = field(default_factory=dict)


class Endpoint:
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

    def chat_once(self, messages: list[dict[str, Any]], fmt: dict[str, Any] | None) -> ChatResult:
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
        return ChatResult(content=content or "", done_reason=resp.done_reason, timings=_timings(resp))

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


def host_version_and_models(host: str, timeout_s: float) -> tuple[str | None, tuple[str, ...]]:
    """``/api/version`` and ``/api/tags`` of ``host``; raises a classified `ModelError`."""
    with ollama.Client(host=host, timeout=timeout_s) as client:
        try:
            raw = client._request_raw("GET", "/api/version")  # the client has no public version call
            version = str(raw.json().get("version", "")) or None
            listed = client.list()
        except Exception as exc:
            raise classify(exc, host=host, model="") from None
    return version, tuple(m.model for m in listed.models if m.model)


def model_details(host: str, model: str, timeout_s: float) -> tuple[tuple[str, ...] | None, str | None, str | None]:
    """``/api/show`` for ``model``: its capabilities (None when the server does not say), family and
    parameter size; raises a classified `ModelError`."""
    with ollama.Client(host=host, timeout=timeout_s) as client:
        try:
            shown = client.show(model)
        except Exception as exc:
            raise classify(exc, host=host, model=model) from None
    details = shown.details
    return (
        tuple(shown.capabilities) if shown.capabilities is not None else None,
        details.family if details is not None else None,
        details.parameter_size if details is not None else None,
    )


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
