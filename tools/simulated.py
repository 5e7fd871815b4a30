"""Simulated student and teacher (backend ``simulated``): for evaluating routing policy only.

They never look at pixels.  Their answers are the clip's labels at the frame's timestamp,
passed through an error model whose parameters live in ``Settings.evaluation``:

* **accuracy** — the share of right answers, separately on *edge cases* (a labelled event
  or decoy is in view) and on calm frames (nothing labelled);
* **bursty errors** — whether an answer is wrong follows a Markov chain over source time:
  a latent uniform level is kept at each 50 ms step with probability
  ``exp(-step / error_burst_s)`` and otherwise redrawn; the answer is wrong while the level
  is below the current error rate.  Errors come in runs of about ``error_burst_s`` and the
  error rate at any instant is exactly ``1 - accuracy``;
* **overconfidence** — right answers carry confidence ~ N(0.80, 0.08); a wrong answer draws
  from the *same* distribution unless, with probability ``confidence_informativeness``,
  it draws from the low one ~ N(0.50, 0.10).  At the default 0 confidence says nothing about
  correctness.

* **instants** — a labelled event shorter than `INSTANT_VISIBLE_S` (a scene cut, a lens
  blink: 0.2 s in the shared clips) is what the frames *after* it show (the view differs from
  the one before), so the models see it from its start for `INSTANT_VISIBLE_S`.  Read at the
  exact instant, a 0.2 s label falls between two frames sampled at 2 fps and no model could
  ever report it: teacher-only found 0 of 30 cuts that way.

Everything is a pure function of (seed, role, clip, timestamp): the random numbers are
drawn once per 50 ms cell when the model is built, so answers do not depend on call order
or threads.  Latency is the configured figure, reported, never slept.

The runner refuses ``simulated`` for monitoring (`pipeline.analyzers.backends.select_backends`); only
`tools.evaluation` builds these, straight into `Backends`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipeline.config.evaluation import EvaluationConfig
from tools.labels import ACTIVITY_TYPES, ClipLabels, is_safety_type
from pipeline.records import EncodedFrame, Escalation, FrameReport, Verdict, VerdictKind, normalise_flag

BACKEND = "simulated"
PROMPT_VERSION = "simulated/1"
#: Resolution (source seconds) of the error process.
STEP_S = 0.05
RIGHT_CONFIDENCE = (0.80, 0.08)
LOW_CONFIDENCE = (0.50, 0.10)
#: Safety types a wrong answer may invent when the clip suggests none.
DEFAULT_PHANTOMS: tuple[str, ...] = ("fire", "fall", "intrusion", "smoke")
#: A labelled event shorter than this is visible from its start for this long (see the module doc):
#: at least one sampled frame (2 fps) falls inside, whatever the phase.
INSTANT_VISIBLE_S = 1.0
#: The teacher rules on the majority of its answers over this many newest keyframes.
TEACHER_VOTE_FRAMES = 3

Role = Literal["student", "teacher"]

_OBSERVATION = {"person": "person walking", "vehicle": "vehicle moving"}


@dataclass(frozen=True, slots=True)
class SimulatedAnswer:
    types: frozenset[str]
    confidence: float
    correct: bool
    truth: frozenset[str]


class ErrorModel:
    """The per-clip answer process of one simulated model (see the module doc)."""

    def __init__(self, clip: ClipLabels, *, edge_accuracy: float, calm_accuracy: float, burst_s: float,
                 informativeness: float, seed: int, role: Role) -> None:
        self.clip = clip
        self.edge_accuracy = edge_accuracy
        self.calm_accuracy = calm_accuracy
        self.informativeness = informativeness
        n = int(math.ceil(clip.duration_s / STEP_S)) + 2
        salt = zlib.crc32(f"{role}:{clip.file}".encode())
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, salt])
        keep = math.exp(-STEP_S / burst_s) if burst_s > 0 else 0.0
        u_keep, u_err = rng.random(n), rng.random(n)
        self._conf_noise = rng.standard_normal(n)
        self._u_inform = rng.random(n)
        self._u_kind = rng.random(n)
        self._u_pick = rng.random(n)
        # A latent uniform level that is kept or redrawn at each step: wrong where it falls
        # below the current error rate.  Its marginal is uniform at every step, so the error
        # rate is exactly 1 - accuracy on edge and calm frames alike, while runs persist.
        level = np.empty(n)
        for k in range(n):
            level[k] = level[k - 1] if k > 0 and u_keep[k] < keep else u_err[k]
        self._instants = tuple(e for e in clip.events if e.end - e.start < INSTANT_VISIBLE_S)
        p_err = np.array([1.0 - self._accuracy(k * STEP_S) for k in range(n)])
        self._wrong = level < p_err
        safety_in_clip = sorted(t for t in clip.types if is_safety_type(t))
        self._phantoms = tuple(safety_in_clip) or DEFAULT_PHANTOMS

    def truth(self, t: float) -> frozenset[str]:
        """What a frame at ``t`` shows: the labels at ``t``, and any instant still visible."""
        seen = self.clip.truth_at(t)
        lingering = frozenset(e.type for e in self._instants if e.start <= t <= e.start + INSTANT_VISIBLE_S)
        return seen | lingering if lingering else seen

    def _accuracy(self, t: float) -> float:
        edge = self.clip.is_edge_case(t) or bool(self.truth(t))
        return self.edge_accuracy if edge else self.calm_accuracy

    def _cell(self, t: float) -> int:
        return min(len(self._wrong) - 1, max(0, int(t / STEP_S)))

    def answer(self, t: float) -> SimulatedAnswer:
        k = self._cell(t)
        truth = self.truth(t)
        if not self._wrong[k]:
            mean, sd = RIGHT_CONFIDENCE
            return SimulatedAnswer(truth, _clip01(mean + sd * self._conf_noise[k]), True, truth)
        types = self._corrupt(truth, t, k)
        mean, sd = LOW_CONFIDENCE if self._u_inform[k] < self.informativeness else RIGHT_CONFIDENCE
        return SimulatedAnswer(types, _clip01(mean + sd * self._conf_noise[k]), False, truth)

    def _corrupt(self, truth: frozenset[str], t: float, k: int) -> frozenset[str]:
        """A wrong answer: it always differs from the truth."""
        safety = frozenset(x for x in truth if is_safety_type(x))
        activity = truth & ACTIVITY_TYPES
        decoys = sorted(self.clip.decoys_at(t) - truth)
        # (weight, kind): a decoy in view is what a wrong answer most likely mistakes.
        options: list[tuple[float, str]] = []
        if safety:
            options.append((3.0, "miss"))
        options.append((3.0 if decoys else 1.0, "phantom"))
        options.append((1.0, "drop_activity" if activity else "phantom_activity"))
        total = sum(w for w, _ in options)
        pick, acc = self._u_kind[k] * total, 0.0
        kind = options[-1][1]
        for w, name in options:
            acc += w
            if pick < acc:
                kind = name
                break
        if kind == "miss":
            return truth - safety
        if kind == "drop_activity":
            return truth - activity
        if kind == "phantom_activity":
            return truth | {"person"}
        pool = [p for p in (decoys or list(self._phantoms)) if p not in truth] or [p for p in DEFAULT_PHANTOMS if p not in truth]
        phantom = pool[min(len(pool) - 1, int(self._u_pick[k] * len(pool)))]
        # Mistaking one hazard for another: the real one is replaced, not joined.
        return (truth - safety) | {phantom}


def _clip01(x: float) -> float:
    return float(min(0.99, max(0.01, x)))


def _model(role: Role, cfg: EvaluationConfig) -> tuple[float, float, float]:
    if role == "student":
        return cfg.student_accuracy, cfg.student_calm_accuracy, cfg.student_latency_ms
    return cfg.teacher_accuracy, cfg.teacher_calm_accuracy, cfg.teacher_latency_ms


def error_model(clip: ClipLabels, cfg: EvaluationConfig, *, seed: int, role: Role) -> ErrorModel:
    edge, calm, _ = _model(role, cfg)
    return ErrorModel(clip, edge_accuracy=edge, calm_accuracy=calm, burst_s=cfg.error_burst_s,
                      informativeness=cfg.confidence_informativeness, seed=seed, role=role)


def report_parts(types: frozenset[str]) -> tuple[list[str], list[str]]:
    """(observations, safety flags) that say ``types`` in the words the pipeline reads."""
    observations = [_OBSERVATION[t] for t in sorted(types & ACTIVITY_TYPES)] or ["scene calm"]
    flags = sorted(t for t in types if is_safety_type(t))
    return observations, flags


class SimulatedStudent:
    """Answers one frame from the labels through the error model.  ``role='teacher'`` gives the
    teacher's per-frame answers (the teacher-only policy puts it in the student's slot)."""

    backend = BACKEND
    prompt_version = PROMPT_VERSION

    def __init__(self, clip: ClipLabels, cfg: EvaluationConfig, *, seed: int, role: Role = "student") -> None:
        self.role = role
        edge, _, latency = _model(role, cfg)
        self.model = f"simulated-{role}(acc={edge:g})"
        self.latency_ms = latency
        self.errors = error_model(clip, cfg, seed=seed, role=role)

    def analyze(self, item: EncodedFrame) -> FrameReport:
        frame = item.frame
        answer = self.errors.answer(frame.timestamp)
        observations, flags = report_parts(answer.types)
        return FrameReport(camera=frame.source_id, frame_index=frame.index, timestamp=frame.timestamp,
                           observations=tuple(observations), safety_flags=tuple(flags),
                           confidence=answer.confidence, backend=self.backend, model=self.model,
                           prompt_version=self.prompt_version, latency_ms=self.latency_ms)

    def close(self) -> None:
        return None


class SimulatedTeacher:
    """Rules on a sequence by the majority of its own (noisy) per-frame answers over the newest
    `TEACHER_VOTE_FRAMES` keyframes: a sequence helps the teacher, one frame less so."""

    backend = BACKEND

    def __init__(self, clip: ClipLabels, cfg: EvaluationConfig, *, seed: int) -> None:
        self.model = f"simulated-teacher(acc={cfg.teacher_accuracy:g})"
        self.latency_ms = cfg.teacher_latency_ms
        self.errors = error_model(clip, cfg, seed=seed, role="teacher")

    def perceive(self, timestamps: list[float]) -> frozenset[str]:
        """Each type by the majority of the newest keyframes *from its first appearance among
        them*: a sequence shows when something starts, so a cut in the newest keyframe is not
        outvoted by the frames before it (a plain majority over three frames never saw an instant)."""
        newest = sorted(timestamps)[-TEACHER_VOTE_FRAMES:]
        if not newest:
            return frozenset()
        answers = [self.errors.answer(t).types for t in newest]
        seen: set[str] = set()
        for i, types in enumerate(answers):
            for x in types - seen:
                since = answers[i:]
                if sum(x in a for a in since) * 2 > len(since):
                    seen.add(x)
        return frozenset(seen)

    def review(self, escalation: Escalation) -> Verdict:
        times = [k.timestamp for k in escalation.keyframes]
        if not times:
            return Verdict.unverified(escalation, backend=self.backend, model=self.model, latency_ms=self.latency_ms,
                                      why="no keyframes to review")
        seen = self.perceive(times)
        observations, flags = report_parts(seen)
        escalated = {normalise_flag(f) for f in escalation.flags if is_safety_type(normalise_flag(f))} - {"model_error"}
        held = escalated & set(flags)
        if escalated and not held:
            kind, why = VerdictKind.DISMISSED, f"the sequence does not show {', '.join(sorted(escalated))}"
        else:
            kind, why = VerdictKind.CONFIRMED, (f"the sequence shows {', '.join(flags)}" if flags else "nothing unsafe in the sequence")
        return Verdict(escalation_id=escalation.id, camera=escalation.camera, incident_id=escalation.incident_id,
                       kind=kind, observations=tuple(observations), safety_flags=tuple(flags), confidence=0.9,
                       explanation=f"simulated teacher over {len(times)} keyframes: {why}", backend=self.backend,
                       model=self.model, latency_ms=self.latency_ms)

    def close(self) -> None:
        return None
