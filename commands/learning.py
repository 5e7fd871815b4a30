"""Argument parsing for the learning commands: calibration, finetune-readiness, export-dataset, and
`python -m commands.learning evaluate` (raw against calibrated confidence, simulated pair).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.clock import SystemClock
from pipeline.config.settings import Settings
from pipeline.errors import UsageError
from pipeline.learning.agreement_store import AgreementStore, store_path_for
from pipeline.learning.calibration_map import (
    NO_FLAG,
    OVERALL,
    CalibrationMap,
    Example,
    calibrated_confidences,
    examples_from,
    fit_calibration,
    group_of,
)
from tools.calibration import DEFAULT_BINS, calibration_rows, expected_calibration_error, reliability_table
from tools.calibration_eval import eval_line, evaluate_calibration
from tools.dataset_export import FORMATS, export_dataset
from tools.readiness import readiness


def _base_parser(prog: str, description: str) -> argparse.ArgumentParser:
    from commands.parsing import ArgumentParser

    p = ArgumentParser(prog=prog, description=description)
    p.add_argument("--store", type=Path, help="agreement store (default: learning.store_path, or agreement.sqlite in output.out_dir)")
    p.add_argument("--config", type=Path, help="YAML config file")
    return p


def _open_store(args: argparse.Namespace) -> tuple[Settings, AgreementStore]:
    from pipeline.config.loading import load_settings

    settings = load_settings(args.config)
    path = args.store or store_path_for(settings.learning, settings.output.out_dir)
    return settings, AgreementStore.open_existing(path, settings.learning, SystemClock())


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def cmd_calibration(argv: Sequence[str]) -> int:
    p = _base_parser("edgewatch calibration", "Reliability of the student's confidence against the teacher's verdicts, "
                     "the expected calibration error, and the calibration map fitted on the agreement store.")
    p.add_argument("--plot", type=Path, help="write a reliability plot here (PNG; needs matplotlib, else a CSV and JSON beside it)")
    p.add_argument("--bins", type=int, default=DEFAULT_BINS, help="confidence bins (default 10)")
    args = p.parse_args(list(argv))
    if not 2 <= args.bins <= 100:
        raise UsageError(f"--bins must be in 2..100 (got {args.bins})")
    settings, store = _open_store(args)
    with store:
        examples = examples_from(store.records())
    cmap = fit_calibration(examples, settings.learning.calibration_min_examples, selection_aware=True)
    _out(f"agreement store {store.path}: {len(examples)} labelled student reports; map {cmap.version}"
         + ("" if not cmap.is_identity else f" (identity: fewer than {settings.learning.calibration_min_examples} examples)"))
    if not examples:
        return 0
    groups: dict[str, list[Example]] = {OVERALL: list(examples)}
    for e in examples:
        for g in group_of(e.flags):
            groups.setdefault(g, []).append(e)
    _out(f"{'group':<12} {'n':>6} {'agree':>7} {'ECE raw':>8} {'ECE cal*':>9}  map")
    for g, ex in groups.items():
        hit = [e.agrees for e in ex]
        ece_raw = expected_calibration_error([e.confidence for e in ex], hit, args.bins)
        ece_cal = expected_calibration_error(calibrated_confidences(cmap, ex), hit, args.bins)
        which = "flag" if g in cmap.by_flag else ("overall" if cmap.overall is not None else "raw")
        if g == NO_FLAG and g not in cmap.by_flag and cmap.unflagged_raw:
            which = "raw (too few audits)"
        _out(f"{g:<12} {len(ex):>6} {sum(hit) / len(hit) * 100:>6.1f}% {ece_raw:>8.3f} {ece_cal:>9.3f}  {which}")
    _out("* in-sample: the map was fitted on these examples")
    _out("")
    _out(f"{'bin':<9} {'n':>6} {'confidence':>10} {'agreement':>10}   (overall, raw)")
    for b in reliability_table([e.confidence for e in examples], [e.agrees for e in examples], args.bins):
        _out(f"{b.low:.1f}-{b.high:.1f}  {b.n:>6} {b.mean_confidence:>10.3f} {b.agreement:>10.3f}")
    if args.plot is not None:
        _write_plot(args.plot, examples, cmap, args.bins)
    return 0


def _write_plot(path: Path, examples: Sequence[Example], cmap: CalibrationMap, bins: int) -> None:
    rows = calibration_rows(examples, cmap, bins)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        csv_path, json_path = path.with_suffix(".csv"), path.with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        json_path.write_text(json.dumps({"map": cmap.to_json(), "rows": rows}, indent=2) + "\n", encoding="utf-8")
        _out(f"matplotlib is not installed (pip install 'edgewatch[plots]'): no plot; table written to {csv_path} and {json_path}")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    for which, style in (("raw", "o-"), ("calibrated", "s--")):
        pts = [r for r in rows if r["group"] == OVERALL and r["confidence"] == which]
        ax.plot([r["mean_confidence"] for r in pts], [r["agreement"] for r in pts], style, label=f"{which} (overall)")
    xs = np.linspace(0, 1, 101)
    if cmap.overall is not None:
        ax.plot(xs, cmap.overall(xs), color="black", linewidth=1, label=f"map {cmap.version}")
    ax.set_xlabel("student confidence")
    ax.set_ylabel("share the teacher agrees with")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    _out(f"reliability plot: {path}")


def cmd_finetune_readiness(argv: Sequence[str]) -> int:
    p = _base_parser("edgewatch finetune-readiness", "Is fine-tuning the student worth it yet? Examples per class, balance, "
                     "agreement per flag, and the prompt-score plateau. Exit 0 when ready, 1 when not.")
    p.add_argument("--skills-dir", type=Path, help="skills folder (default: skills.dir)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = p.parse_args(list(argv))
    settings, store = _open_store(args)
    with store:
        records = store.records()
    result = readiness(records, args.skills_dir or settings.skills.dir, settings.learning)
    _out(json.dumps(result.to_json(), indent=2) if args.json else result.render())
    return 0 if result.ready else 1


def cmd_export_dataset(argv: Sequence[str]) -> int:
    p = _base_parser("edgewatch export-dataset", "Export the reviewed examples as a chat-format fine-tuning dataset "
                     "(refused until finetune-readiness says ready, unless --force).")
    p.add_argument("--format", choices=FORMATS, required=True, help="sharegpt (LLaMA-Factory) or messages (OpenAI/HF chat)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; must be empty or absent)")
    p.add_argument("--skills-dir", type=Path, help="skills folder (default: skills.dir)")
    p.add_argument("--force", action="store_true", help="export even when not ready")
    args = p.parse_args(list(argv))
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise UsageError(f"--out {args.out} exists and is not an empty folder")
    settings, store = _open_store(args)
    with store:
        records = store.records()
    skills_dir = args.skills_dir or settings.skills.dir
    verdict = readiness(records, skills_dir, settings.learning)
    if not verdict.ready and not args.force:
        _out(verdict.render())
        raise UsageError("not ready for fine-tuning (see above); --force exports anyway")
    from pipeline.analyzers.skill_files import load_active_prompt

    prompt = load_active_prompt("student", skills_dir)
    summary = export_dataset(records, args.out, args.format, system_prompt=prompt.text, prompt_version=prompt.version,
                             cfg=settings.learning)
    _out(f"exported {summary.train} train + {summary.validation} validation examples ({args.format}) to {summary.out_dir}; "
         f"{summary.dropped_near_duplicates} near-duplicate(s) dropped; card {summary.card}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m commands.learning evaluate``: raw against calibrated confidence (simulated pair)."""
    from commands.parsing import ArgumentParser

    p = ArgumentParser(prog="python -m commands.learning evaluate")
    p.add_argument("command", choices=["evaluate"])
    p.add_argument("--fit-seeds", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--test-seeds", default="100,101,102,103,104,105,106,107,108,109")
    p.add_argument("--informativeness", default="0,0.5,1", help="comma-separated simulated confidence informativeness values")
    p.add_argument("--labels", type=Path, help="labels file (default: the demo clip)")
    p.add_argument("--calibrated-min-confidence", default="", help="also run calibrated with these min_confidence values")
    p.add_argument("--ablations", action="store_true", help="also run the old (biased) fit and the new map with the raw-scale policy")
    p.add_argument("--config", type=Path)
    p.add_argument("--out", type=Path, default=Path("edgewatch-calibration-eval"))
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    from pipeline.config.loading import load_settings

    logging.basicConfig(level=logging.ERROR)
    base = load_settings(args.config)
    fit = [int(s) for s in args.fit_seeds.split(",") if s.strip()]
    test = [int(s) for s in args.test_seeds.split(",") if s.strip()]
    for inf in (float(x) for x in args.informativeness.split(",") if x.strip()):
        r = evaluate_calibration(fit_seeds=fit, test_seeds=test, informativeness=inf, out=args.out / f"inf{inf:g}",
                                 base=base, labels_path=args.labels,
                                 calibrated_min_confidence=[float(x) for x in args.calibrated_min_confidence.split(",") if x.strip()],
                                 ablations=args.ablations)
        print(f"backend simulated, informativeness {inf:g}: map {r['map']} from {r['fit_examples']} examples "
              f"(groups {', '.join(r['map_groups']) or '-'}); held-out ECE raw {r['heldout_ece_raw']:.3f} -> "
              f"calibrated {r['heldout_ece_calibrated']:.3f} (biased fit {r['heldout_ece_calibrated_biased_fit']:.3f}) on "
              f"{r['heldout_examples']} examples; on the {r['heldout_unbiased_examples']} flagged or audit examples "
              f"raw {r['heldout_unbiased_ece_raw']:.3f} -> calibrated {r['heldout_unbiased_ece_calibrated']:.3f}")
        for key in [k for k in r if k == "raw" or k.startswith("calibrated")]:
            print("  " + eval_line(key, r[key]))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
