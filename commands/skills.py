"""Argument parsing for `edgewatch skills ...` (init, list, check, synthesize, score, promote, rollback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from commands.parsing import ArgumentParser
from pipeline.analyzers.skill_files import ACTIVE_FILE, Skill, SkillError, active_skill, read_active, skill_path, task_spec
from pipeline.clock import SystemClock
from pipeline.errors import UsageError
from tools.skills import (
    append_changelog,
    check_skills,
    heldout,
    init_skills,
    list_skills,
    ollama_scorer,
    promote,
    rollback,
    score_skill,
    synthesize,
    write_json,
)
from tools.validation_suite import ValidationSuite, fixture_suite
from tools.reviewed_cases import decision_log_cases, failure_cases


def _parser() -> argparse.ArgumentParser:
    common = ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML config file")
    common.add_argument("--skills-dir", type=Path, help="skills folder (default: config skills.dir)")
    common.add_argument("--ollama-host", help="Ollama host for student, teacher and embeddings (default: config)")
    common.add_argument("--task", default="student", help="skill task (default: student)")
    p = ArgumentParser(prog="edgewatch skills", description="Versioned student prompts: synthesise, score, promote, roll back.")
    sub = p.add_subparsers(dest="action", required=True, parser_class=ArgumentParser)
    sub.add_parser("init", parents=[common], help="write the seed skill and active_skill.json when missing")
    sub.add_parser("list", parents=[common], help="versions, authors and held-out scores")
    sub.add_parser("check", parents=[common], help="validate the folder (exit 1 on any problem)")
    s = sub.add_parser("synthesize", parents=[common], help="ask the teacher for N candidate prompts")
    s.add_argument("--count", type=int, default=5)
    s.add_argument("--decision-log", type=Path, help="decisions.jsonl of a run: its student failures guide the teacher")
    sc = sub.add_parser("score", parents=[common], help="score skills with the student against the validation suite")
    sc.add_argument("versions", nargs="*", help="versions to score (default: the active one and every unscored candidate)")
    sc.add_argument("--all", action="store_true", help="re-score every version")
    sc.add_argument("--decision-log", type=Path, help="add teacher-reviewed sequences of this run as cases")
    sc.add_argument("--source", help="the video of --decision-log's run (its keyframes are re-read from it)")
    sc.add_argument("--no-judge", action="store_true", help="skip the teacher's rubric grading")
    sc.add_argument("--no-semantic", action="store_true", help="skip the embedding similarity")
    pr = sub.add_parser("promote", parents=[common], help="make a candidate active if it beats the active skill")
    pr.add_argument("version", nargs="?", help="candidate version (default: the best scored candidate)")
    pr.add_argument("--margin", type=float, help="held-out margin to beat (default: config skills.promotion_margin)")
    sub.add_parser("rollback", parents=[common], help="restore the previously active version")
    return p


def _settings(args: argparse.Namespace) -> Any:
    from pipeline.config.loading import load_settings, settings_from_dict

    settings = load_settings(args.config)
    data = settings.model_dump()
    if args.ollama_host:
        data["student"]["host"] = args.ollama_host
        data["teacher"]["host"] = args.ollama_host
    if args.skills_dir is not None:
        data["skills"]["dir"] = args.skills_dir
    return settings_from_dict(data)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _summary(skill: Skill, active: str | None) -> str:
    mark = "*" if skill.version == active else " "
    try:
        h = heldout(skill.scores)
        score = f"held-out {h['overall']:.3f} recall {h['safety']['recall']:.2f} precision {h['safety']['precision']:.2f}"
    except SkillError:
        score = "not scored"
    return f"{mark} {skill.version:<12} {skill.author_text:<28} parent {skill.parent or '-':<12} {score}"


def _suite(args: argparse.Namespace) -> ValidationSuite:
    suite = fixture_suite()
    if args.decision_log is None:
        return suite
    if not args.source:
        raise UsageError("--decision-log needs --source: the video of that run, to re-read its keyframes")
    extra = decision_log_cases(args.decision_log, args.source)
    return ValidationSuite(suite.cases + extra, f"{suite.name}+log")


def cmd_skills(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    settings = _settings(args)
    logging.basicConfig(level=getattr(logging, settings.log_level), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    skills_dir = Path(settings.skills.dir)
    task = args.task
    task_spec(task)
    clock = SystemClock()

    if args.action == "init":
        made = init_skills(skills_dir, clock, task)
        _out(f"{'initialised' if made else 'already initialised'}: {skills_dir / ACTIVE_FILE}")
        return 0
    if args.action == "check":
        problems = check_skills(skills_dir)
        for p in problems:
            _out(f"problem: {p}")
        _out("skills: ok" if not problems else f"skills: {len(problems)} problem(s)")
        return 0 if not problems else 1
    if args.action == "list":
        current = read_active(skills_dir).active.get(task)
        for skill in list_skills(skills_dir, task):
            _out(_summary(skill, current))
        return 0
    if args.action == "synthesize":
        from pipeline.analyzers.model_failures import ModelError
        from pipeline.analyzers.ollama_client import OllamaChat

        failures = failure_cases(args.decision_log) if args.decision_log else []
        teacher = OllamaChat(settings.teacher, clock)
        try:
            created = synthesize(skills_dir, task, args.count, teacher, clock, failures)
        except ModelError as err:
            raise SkillError(f"teacher {settings.teacher.model}: {err}") from None
        finally:
            teacher.close()
        for skill in created:
            _out(f"wrote {skill_path(skills_dir, skill.version)} (parent {skill.parent})")
        return 0
    if args.action == "score":
        from pipeline.analyzers.model_failures import ModelError

        suite = _suite(args)
        current = active_skill(skills_dir, task)
        all_skills = {s.version: s for s in list_skills(skills_dir, task)}
        if args.versions:
            missing = [v for v in args.versions if v not in all_skills]
            if missing:
                raise UsageError(f"no such skill version(s): {', '.join(missing)}")
            chosen = [all_skills[v] for v in args.versions]
        else:
            chosen = [s for s in all_skills.values()
                      if args.all or (s.scores or {}).get("suite") != suite.id
                      or (s.scores or {}).get("student_model") != settings.student.model]
        try:
            scorer = ollama_scorer(settings, clock, judge=settings.skills.judge and not args.no_judge,
                                   semantic=not args.no_semantic)
            for skill in chosen:
                scored = score_skill(skill, suite, scorer, clock)
                write_json(skill_path(skills_dir, scored.version), scored.to_json())
                h = heldout(scored.scores)
                append_changelog(skills_dir, f"score {scored.version} on {suite.id} with {settings.student.model}: "
                                 f"held-out {h['overall']:.3f}, safety recall {h['safety']['recall']:.3f}", clock)
                _out(_summary(scored, current.version))
        except ModelError as err:
            raise SkillError(f"scoring: {err}") from None
        return 0
    if args.action == "promote":
        margin = settings.skills.promotion_margin if args.margin is None else args.margin
        if not 0.0 <= margin <= 1.0:
            raise UsageError(f"--margin must be 0..1 (got {margin})")
        decision = promote(skills_dir, task, args.version, margin, clock)
        _out(f"promoted {active_skill(skills_dir, task).version}: {decision.reason}")
        return 0
    if args.action == "rollback":
        removed, restored = rollback(skills_dir, task, clock)
        _out(f"rolled back {removed}; active {task} skill is {restored}")
        return 0
    raise UsageError(f"unknown skills action {args.action!r}")
