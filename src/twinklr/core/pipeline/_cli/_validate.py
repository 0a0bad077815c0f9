"""``twinklr-pipeline validate MODULE:ATTR``: every problem of a definition."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import EXIT_OK, EXIT_USAGE, load


def add_validate_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    validate = commands.add_parser(
        "validate", parents=[common], help="list every problem of a definition"
    )
    validate.add_argument("target", help="MODULE:ATTR of a PipelineDefinition or a factory")
    validate.set_defaults(handler=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    pipeline = load(args.target)
    problems = pipeline.validate_pipeline()
    if problems:
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(f"pipeline '{pipeline.name}' is invalid: {len(problems)} problems", file=sys.stderr)
        return EXIT_USAGE
    print(f"pipeline '{pipeline.name}' is valid: {len(pipeline.stages)} stages")
    return EXIT_OK
