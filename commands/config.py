"""``edgewatch config example|reference``: print the essentials example or the full reference (generated from the model)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from commands.parsing import ArgumentParser
from pipeline.config.docs import example_yaml, reference_markdown


def cmd_config(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="edgewatch config", description="Print the configuration: the essentials a user's file needs "
                            "(example, as YAML) or every key with its default and meaning (reference, as Markdown).")
    parser.add_argument("what", choices=["example", "reference"])
    args = parser.parse_args(list(argv))
    sys.stdout.write(example_yaml() if args.what == "example" else reference_markdown())
    return 0
