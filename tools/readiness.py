"""Fine-tune readiness: examples per class, balance, agreement per flag, and whether the held-out
scores of the last K skill versions have plateaued; "ready" only with ``readiness_min_examples`` good
examples *and* a plateau.
"""

from __future__ import annotations
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from pipeline.learning.agreement_store import AgreementRecord
from pipeline.config.learning import LearningConfig
from pipeline.records import VerdictKind
from pipeline.learning.calibration_map import MIN_TEACHER_CONFIDENCE, NO_FLAG, OVERALL, examples_from, group_of


def good_records(records: Iterable[AgreementRecord]) -> list[AgreementRecord]:
    """Records worth training on: a firm verdict, an image on disk, a student report on it."""
    out = []
    for rec in records:
        if rec.verdict == VerdictKind.UNVERIFIED or rec.teacher_confidence < MIN_TEACHER_CONFIDENCE or not rec.keyframes:
            continue
        kf = rec.newest_keyframe
        if not kf.path.is_file():
            continue
        report = rec.report_for(kf)
        if report is not None and report.error:
            continue
        out.append(rec)
    return out


def classes_of(rec: AgreementRecord) -> tuple[str, ...]:
    return tuple(sorted(rec.teacher_flags)) or (NO_FLAG,)


@dataclass(frozen=True)
class Plateau:
    reached: bool
    versions: tuple[str, ...]
    scores: tuple[float, ...]
    why: str


def prompt_plateau(skills_dir: Path, k: int, margin: float, task: str = "student") -> Plateau:
    """Have the held-out scores of the last ``k`` scored skill versions settled within ``margin``?"""
    from pipeline.analyzers.skill_files import SkillError
    from tools.skills import heldout, list_skills

    try:
        skills = list_skills(Path(skills_dir), task)
    except SkillError as exc:
        return Plateau(False, (), (), f"skills folder unreadable: {exc}")
    scored: list[tuple[str, float, Any]] = []
    for s in skills:
        try:
            scored.append((s.version, float(heldout(s.scores)["overall"]), _comparable_key(s.scores)))
        except (SkillError, KeyError, TypeError, ValueError):
            continue
    if scored:
        # Only versions scored the same way as the newest one compare.
        key = scored[-1][2]
        scored = [x for x in scored if x[2] == key]
    last = scored[-k:]
    versions, scores = tuple(v for v, _, _ in last), tuple(round(s, 4) for _, s, _ in last)
    if len(last) < k:
        return Plateau(False, versions, scores, f"need {k} skill versions with comparable held-out scores, have {len(last)} "
                                                "(run `skills synthesize` and `skills score`)")
    spread = max(scores) - min(scores)
    if spread > margin:
        return Plateau(False, versions, scores, f"held-out scores of the last {k} versions still move by {spread:.3f} "
                                                f"(> margin {margin:.3f}): keep improving the prompt first")
    return Plateau(True, versions, scores, f"the last {k} versions' held-out scores lie within {spread:.3f} (<= {margin:.3f})")


def _comparable_key(scores: Mapping[str, Any] | None) -> str:
    s = scores or {}
    return json.dumps([s.get("suite"), s.get("methods"), s.get("student_model")], sort_keys=True, default=str)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    good_examples: int
    reviewed: int
    per_class: dict[str, int]
    balance: float
    """Smallest class count / largest (1 = balanced; 0 = a class has none)."""
    agreement_by_flag: dict[str, tuple[float, int]]
    plateau: Plateau
    missing: tuple[str, ...]
    need: int
    """Good examples needed (learning.readiness_min_examples)."""

    def render(self) -> str:
        lines = [f"fine-tune readiness: {'READY' if self.ready else 'NOT READY'}",
                 f"  reviewed records {self.reviewed}, good examples {self.good_examples} (need {self.need})"]
        classes = ", ".join(f"{c} {n}" for c, n in sorted(self.per_class.items(), key=lambda kv: -kv[1])) or "none"
        lines.append(f"  examples per class: {classes}; balance (smallest/largest) {self.balance:.2f}")
        agree = ", ".join(f"{g} {a * 100:.0f}% of {n}" for g, (a, n) in sorted(self.agreement_by_flag.items())) or "no examples"
        lines.append(f"  student-teacher agreement per flag: {agree}")
        pl = self.plateau
        lines.append(f"  prompt scores: {pl.why}" + (f" ({', '.join(f'{v} {s:.3f}' for v, s in zip(pl.versions, pl.scores))})" if pl.versions else ""))
        for m in self.missing:
            lines.append(f"  missing: {m}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "good_examples": self.good_examples, "reviewed": self.reviewed, "per_class": self.per_class,
                "balance": round(self.balance, 4),
                "agreement_by_flag": {g: {"agreement": round(a, 4), "n": n} for g, (a, n) in self.agreement_by_flag.items()},
                "plateau": {"reached": self.plateau.reached, "versions": list(self.plateau.versions),
                            "scores": list(self.plateau.scores), "why": self.plateau.why},
                "missing": list(self.missing)}


def readiness(records: Sequence[AgreementRecord], skills_dir: Path, cfg: LearningConfig) -> Readiness:
    good = good_records(records)
    per_class: Counter[str] = Counter(c for rec in good for c in classes_of(rec))
    balance = (min(per_class.values()) / max(per_class.values())) if per_class else 0.0
    examples = examples_from(records)
    by_flag: dict[str, list[bool]] = {}
    for e in examples:
        for g in group_of(e.flags):
            by_flag.setdefault(g, []).append(e.agrees)
        by_flag.setdefault(OVERALL, []).append(e.agrees)
    agreement = {g: (sum(v) / len(v), len(v)) for g, v in by_flag.items()}
    plateau = prompt_plateau(skills_dir, cfg.plateau_k, cfg.plateau_margin)
    missing = []
    if len(good) < cfg.readiness_min_examples:
        missing.append(f"{cfg.readiness_min_examples - len(good)} more good examples ({len(good)} of {cfg.readiness_min_examples}: "
                       f"reviewed, firm verdict, image on disk)")
    if not plateau.reached:
        missing.append(f"a prompt-score plateau: {plateau.why}")
    r = Readiness(ready=not missing, good_examples=len(good), reviewed=len(records), per_class=dict(per_class),
                  balance=balance, agreement_by_flag=agreement, plateau=plateau, missing=tuple(missing),
                  need=cfg.readiness_min_examples)
    return r
