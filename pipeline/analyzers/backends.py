"""Choosing the models: Ollama when its host answers with the model, else the embedded offline analyzers,
always announced in one line.
"""

from __future__ import annotations
from dataclasses import dataclass, field
from typing import Any
from pipeline.analyzers.base import Student, Teacher
from pipeline.analyzers.fallback import CircuitBreaker, FallbackStudent
from pipeline.analyzers.offline import OfflineStudent, OfflineTeacher
from pipeline.analyzers.skill_files import load_active_prompt
from pipeline.clock import Clock
from pipeline.config.settings import Settings
from pipeline.errors import ConfigError, EdgewatchError


@dataclass
class Backends:
    student: Student
    teacher: Teacher
    notices: list[str] = field(default_factory=list)
    """Which backend plays each role, one line per role, for the log."""
    fallback: str | None = None
    """The one line the user must see when the offline analyzers stand in for unreachable models."""


def select_backends(settings: Settings, clock: Clock, *, probe_timeout_s: float = 1.5) -> Backends:
    """Pick the student and teacher: Ollama when its host answers with the model, else the offline analyzers.

    A fallback to the offline analyzers is always announced, in one line; it never stands in silently.
    With ``backend: ollama`` (not ``auto``) an unusable host is an error instead.
    """

    if settings.student.backend == "simulated" or settings.teacher.backend == "simulated":
        raise ConfigError("the 'simulated' backend exists only for evaluating routing policy, not for monitoring")

    chosen: dict[str, Any] = {
        "student": OfflineStudent(settings.offline, settings.zones, clock),
        "teacher": OfflineTeacher(settings.offline, settings.zones, clock),
    }
    endpoints = {"student": settings.student, "teacher": settings.teacher}
    fallbacks: dict[str, list[str]] = {}  # problem -> roles that fell back to the offline analyzer because of it
    notices: list[str] = []
    probes: dict[str, Any] = {}
    for role, endpoint in endpoints.items():
        if endpoint.backend == "offline":
            notices.append(f"{role}: the embedded offline analyzer ({chosen[role].model}), as configured")
            continue
        from pipeline.analyzers.model_failures import mask_host
        from pipeline.analyzers.ollama_health import probe_host

        if endpoint.host not in probes:
            probes[endpoint.host] = probe_host(endpoint.host, probe_timeout_s)
        probe = probes[endpoint.host]
        host = mask_host(endpoint.host)
        if not probe.reachable:
            problem = f"no Ollama host answered at {host} ({probe.error})"
        elif not probe.has_model(endpoint.model):
            problem = f"Ollama at {host} does not have {endpoint.model} (run: ollama pull {endpoint.model})"
        else:
            chosen[role] = _ollama_analyzer(role, settings, clock, chosen[role])
            notices.append(f"{role}: {endpoint.model} on Ollama at {host}")
            continue
        if endpoint.backend == "ollama":
            raise EdgewatchError(f"{role} backend is 'ollama' but {problem}")
        fallbacks.setdefault(problem, []).append(f"{role} ({endpoint.model})")
    fallback = None
    if fallbacks:
        # One line, whatever the number of roles: each distinct problem once, then who stands in.
        parts = [f"{problem}: the {' and the '.join(roles)} {'is' if len(roles) == 1 else 'are'} played by the embedded offline analyzer"
                 for problem, roles in fallbacks.items()]
        fallback = "; ".join(parts) + " — results come from OpenCV rules, not from Gemma"
    return Backends(student=chosen["student"], teacher=chosen["teacher"], notices=notices, fallback=fallback)


def _ollama_analyzer(role: str, settings: Settings, clock: Clock, offline: Any) -> Any:
    from pipeline.analyzers.ollama_client import OllamaStudent, OllamaTeacher
    from pipeline.analyzers.prompts import TEACHER_PROMPT
    if role == "teacher":
        teacher = OllamaTeacher(settings.teacher, TEACHER_PROMPT, clock)
        teacher.warm_up_in_background()
        return teacher
    # The student's system prompt is the active skill version (skills/active_skill.json), never
    # edited by hand; every report records that version.
    primary = OllamaStudent(settings.student, load_active_prompt("student", settings.skills.dir), clock)
    primary.warm_up()
    # The offline analyzer stands by: the breaker switches to it (and back) with an event each time.
    return FallbackStudent(primary, offline, CircuitBreaker(clock=clock), on_switch=None)


def describe_backend(analyzer: Student | Teacher) -> str:
    return f"{analyzer.backend} ({analyzer.model})"
