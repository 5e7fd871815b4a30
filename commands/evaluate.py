"""Argument parsing for `edgewatch evaluate`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline.config.loading import load_settings
from pipeline.errors import UsageError
from tools.evaluation import DEMO_LABELS, INFORMATIVENESS, PAIRS, POLICIES, SWEEPS, evaluate, target_check
from tools.labels import load_labels

log = logging.getLogger("edgewatch.evaluation")


def _parser() -> argparse.ArgumentParser:
    from commands.parsing import ArgumentParser

    p = ArgumentParser(prog="edgewatch evaluate",
                        description="Compare routing policies (student only, teacher only, ours, fixed interval, "
                                    "confidence only, ours single-frame) on labelled clips through the real pipeline.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--labels", type=Path, help=f"labels file (default: the demo fixture, {DEMO_LABELS.name})")
    src.add_argument("--clips", type=Path, help="folder holding labels.json and the clips it names (e.g. ../shared/fixtures/clips)")
    p.add_argument("--pair", choices=PAIRS, default="simulated", help="student/teacher pair (default simulated)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for the simulated models (default 0,1,2; "
                   "offline and ollama runs use the first only: they have no seed)")
    p.add_argument("--out", type=Path, default=Path("edgewatch-eval"), help="report folder (default ./edgewatch-eval)")
    p.add_argument("--policies", default=",".join(POLICIES), help=f"comma-separated subset of {','.join(POLICIES)}")
    p.add_argument("--sweep", choices=SWEEPS, default="none",
                   help="thresholds: each policy family over its own knob (ours: min_confidence, persistence, max_keyframes, "
                        "audit period; fixed interval: period; confidence only: threshold) for cost-quality curves; "
                        "models: simulated student accuracy x confidence informativeness; all: both")
    p.add_argument("--informativeness", default=",".join(f"{x:g}" for x in INFORMATIVENESS),
                   help="comma-separated confidence settings the simulated pair runs at (default 0,0.5; "
                        "0 = the student's confidence says nothing about being right)")
    p.add_argument("--fixed-interval-s", type=float, help="fixed-interval period (default: matched to ours' teacher images per clip)")
    p.add_argument("--only", action="append", default=[], metavar="TEXT", help="only clips whose file name contains TEXT (repeatable)")
    p.add_argument("--config", type=Path, help="YAML config (the evaluation: section holds the simulated models' parameters)")
    p.add_argument("--ollama-host", help="Ollama host for --pair ollama")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="clips evaluated in parallel processes (default: 2, or 1 on a one-core machine)")
    p.add_argument("--no-replay", action="store_true",
                   help="decode every clip for every run instead of once per clip (the simulated pair's fast path "
                        "replays one decode; the scores are the same, tests/test_evaluation_replay.py)")
    p.add_argument("--verbose", action="store_true", help="progress and debug logging")
    return p


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected comma-separated integers") from None
    if not seeds:
        raise UsageError("--seeds: at least one seed")
    return list(dict.fromkeys(seeds))


def _fractions(text: str, option: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected comma-separated numbers in 0..1") from None
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise UsageError(f"{option} {text!r}: expected comma-separated numbers in 0..1")
    return list(dict.fromkeys(values))


def cmd_evaluate(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.verbose:
        # Per-run warnings (runner, monitor) would drown the table; the runs' logs keep them.
        for name in ("edgewatch.runner", "edgewatch.states", "edgewatch"):
            logging.getLogger(name).setLevel(logging.ERROR)
    if args.clips is not None:
        if not args.clips.is_dir():
            raise UsageError(f"--clips {args.clips}: folder not found")
        labels_path = args.clips / "labels.json"
        if not labels_path.is_file():
            raise UsageError(f"--clips {args.clips}: no labels.json in it")
    else:
        labels_path = args.labels or DEMO_LABELS
    labels = load_labels(labels_path)
    base = load_settings(args.config)
    if args.ollama_host:
        base = base.model_copy(update={"student": base.student.model_copy(update={"host": args.ollama_host}),
                                       "teacher": base.teacher.model_copy(update={"host": args.ollama_host})})
    if args.fixed_interval_s is not None and not 0 < args.fixed_interval_s <= 3600:
        raise UsageError(f"--fixed-interval-s must be in (0, 3600] (got {args.fixed_interval_s:g})")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers must be in 1..64 (got {args.workers})")
    seeds = _seeds(args.seeds)
    if args.pair != "simulated" and len(seeds) > 1:
        log.warning("the %s pair has no seed: running once", args.pair)
        seeds = seeds[:1]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    informativeness = _fractions(args.informativeness, "--informativeness") if args.pair == "simulated" else []
    result = evaluate(labels=labels, pair=args.pair, seeds=seeds, out=args.out, base=base, policies=policies,
                      sweep=args.sweep, fixed_interval_s=args.fixed_interval_s, only=args.only,
                      progress=(lambda m: sys.stderr.write(m + "\n")) if args.verbose else None,
                      informativeness=informativeness, workers=args.workers, replay=not args.no_replay)
    sys.stdout.write(f"{args.pair} pair, {len(result.records)} runs, seeds {','.join(map(str, seeds))}\n")
    for block in result.blocks:
        if block.informativeness is not None:
            sys.stdout.write(f"\nconfidence informativeness {block.informativeness:g}\n")
        sys.stdout.write(f"\n{block.table}\n\n" + "\n".join(target_check(block.aggregates)) + "\n")
    for s in result.skipped:
        sys.stdout.write(f"skipped {s}\n")
    sys.stdout.write(f"\nreport: {result.report_path}\njson:   {result.json_path}\n")
    return 0
