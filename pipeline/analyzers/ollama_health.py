"""Is the host up, is the model there, how long does one image take?  What ``edgewatch doctor`` and
backend ``auto`` ask; every check answers with a record and never raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.analyzers.model_failures import FailureKind, ModelError, mask_host
from pipeline.analyzers.ollama_transport import DEFAULT_BACKOFF_S, Endpoint, classify, host_version_and_models, model_details
from pipeline.analyzers.prompts import STUDENT_PROMPT, student_user_text
from pipeline.clock import Clock, SystemClock
from pipeline.config.models import ModelEndpoint
from pipeline.records import StudentAnswer


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
    try:
        version, names = host_version_and_models(host, timeout_s)
    except ModelError as err:
        return HostProbe(host=shown, reachable=False, version=None, models=(), error=str(err), kind=err.kind)
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
    try:
        capabilities, family, parameter_size = model_details(host, model, timeout_s)
    except ModelError as err:
        return ModelShow(model=model, present=False, capabilities=None, error=str(err))
    return ModelShow(model=model, present=True, capabilities=capabilities, family=family, parameter_size=parameter_size)


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
    endpoint = Endpoint(cfg, clock, None, DEFAULT_BACKOFF_S)
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
