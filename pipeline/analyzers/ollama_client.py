"""The real models, through Ollama: the student, the teacher, and a chat model for the tools.

* `OllamaStudent` answers one frame with the `StudentAnswer` contract, `OllamaTeacher` rules on
  an escalated sequence with the `TeacherAnswer` contract.  Both send the contract's JSON schema
  as Ollama's ``format`` (structured output), validate the answer, and never raise for a model
  failure: the student returns ``FrameReport.failed`` (flag ``model_error``), the teacher
  ``Verdict.unverified``.  Nothing is fabricated.
* The wire (clients, retries, failure classification) is `pipeline.analyzers.ollama_transport`,
  the answer contract check `pipeline.analyzers.model_answers`, host checks
  `pipeline.analyzers.ollama_health`.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

from pipeline.analyzers.model_answers import Contract
from pipeline.analyzers.model_failures import FailureKind, ModelError
from pipeline.analyzers.ollama_transport import DEFAULT_BACKOFF_S, Endpoint, classify
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
from pipeline.records import EncodedFrame, Escalation, FrameReport, StudentAnswer, TeacherAnswer, Verdict

log = logging.getLogger("edgewatch.ollama")

BACKEND = "ollama"


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
        self._endpoint = Endpoint(cfg, self._clock, rng, backoff_s)
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


class OllamaChat:
    """A model used for one-off JSON tasks (writing candidate prompts, judging answers); thread-safe.

    Failures raise a classified `ModelError`: unlike the student and teacher in the pipeline,
    an offline tool has nobody to fall back on, and a clear one-line error is the right answer."""

    def __init__(self, cfg: ModelEndpoint, clock: Clock | None = None, *, rng: random.Random | None = None,
                 backoff_s: float = DEFAULT_BACKOFF_S) -> None:
        self._endpoint = Endpoint(cfg, clock or SystemClock(), rng, backoff_s)
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
