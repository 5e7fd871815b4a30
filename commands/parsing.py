"""The one argument parser every command uses: errors are one line (a `UsageError`), never argparse's usage dump and exit.
"""

from __future__ import annotations

import argparse

from pipeline.errors import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


#: Sub-commands implemented in their own modules: name -> (module, function taking argv, returning an exit code).
#: Each module owns its argument parsing; this table is the one place that lists them.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("commands.doctor", "cmd_doctor"),
    "evaluate": ("commands.evaluate", "cmd_evaluate"),
    "thresholds": ("commands.thresholds", "cmd_thresholds"),
    "skills": ("commands.skills", "cmd_skills"),
    "calibration": ("commands.learning", "cmd_calibration"),
    "finetune-readiness": ("commands.learning", "cmd_finetune_readiness"),
    "export-dataset": ("commands.learning", "cmd_export_dataset"),
    "serve": ("commands.serve", "cmd_serve"),
    "config": ("commands.config", "cmd_config"),
    "teacher-worker": ("commands.teacher_worker", "cmd_teacher_worker"),
}
