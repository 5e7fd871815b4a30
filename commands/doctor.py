"""Argument parsing for `edgewatch doctor` (the checks themselves are `tools.doctor`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from commands.parsing import ArgumentParser
from commands.run import settings_from_args, setup_logging


def _doctor_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="edgewatch doctor", description="Check the configured Ollama hosts, models and (optionally) a source.")
    p.add_argument("--config", type=Path)
    p.add_argument("--source", help="also check that this source opens")
    p.add_argument("--ollama-host", help="Ollama host for student and teacher (default: config)")
    return p


def cmd_doctor(argv: Sequence[str]) -> int:
    args = _doctor_parser().parse_args(argv)
    settings = settings_from_args(args)
    setup_logging(False, "WARNING")
    from pipeline.clock import SystemClock
    from tools.doctor import all_ready, format_table, run_doctor

    rows = run_doctor(settings, args.source, SystemClock())
    sys.stdout.write(format_table(rows) + "\n")
    return 0 if all_ready(rows) else 1
