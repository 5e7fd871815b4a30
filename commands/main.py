"""Command line: ``run_camera.py SOURCE [options]`` and ``run_camera.py doctor``.

Every expected failure ends as one clear line on stderr and exit code 2 (usage/config) or
1 (runtime) — never a traceback.  SIGINT/SIGTERM stop reading, flush the logs and the
summary, and exit cleanly.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Sequence

from commands.parsing import SUBCOMMANDS
from commands.run import cmd_run
from pipeline.errors import EdgewatchError, UsageError
from pipeline.memory import limit_malloc_arenas

log = logging.getLogger("edgewatch")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    limit_malloc_arenas()  # before any thread starts: resident memory stays flat over weeks (pipeline/memory.py)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            module_name, function_name = SUBCOMMANDS[argv[0]]
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                raise UsageError(f"'{argv[0]}' is not available in this version of edgewatch") from None
            return int(getattr(module, function_name)(argv[1:]))
        return cmd_run(argv)
    except EdgewatchError as exc:
        sys.stderr.write(f"edgewatch: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("edgewatch: interrupted\n")
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`| head`): nothing left to say, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except Exception as exc:  # last line of defence: one line, and the details only with EDGEWATCH_DEBUG
        if os.environ.get("EDGEWATCH_DEBUG"):
            raise
        sys.stderr.write(f"edgewatch: internal error: {exc.__class__.__name__}: {exc} (set EDGEWATCH_DEBUG=1 for details)\n")
        return 1
