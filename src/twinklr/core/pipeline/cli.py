"""The ``twinklr-pipeline`` command: run, validate, graph, cache, runs, ui, demo.

Exit status: 0 on success, 1 when a run failed, 2 for a usage or validation error (one
line on stderr, no traceback), 130 when interrupted (Ctrl-C cancels the run cleanly and
names the stages it cancelled). The entry point of the console script and of
``python -m twinklr.core.pipeline.cli``; each subcommand is a module of ``_cli`` that
registers itself, and the web view (``ui``) is handed the function that serves it.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import structlog

from ._base._database import UnusableStoreError
from ._cli._cache import add_cache_command
from ._cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    configure_logging,
    load,
    make_progress,
)
from ._cli._demo import add_demo_command
from ._cli._graph import add_graph_command
from ._cli._history import add_runs_command
from ._cli._progress import Progress, execute_with_progress
from ._cli._run import add_run_command
from ._cli._ui import add_ui_command
from ._cli._validate import add_validate_command
from .errors import PipelineValidationError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Progress",
    "UsageError",
    "build_parser",
    "execute_with_progress",
    "load_pipeline",
    "main",
    "make_progress",
]

#: The definition at ``MODULE:ATTR`` (or made by the factory there); `UsageError` if none.
load_pipeline = load


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="twinklr-pipeline", description="Run and inspect twinklr pipelines."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", help="on a usage error, also show its traceback"
    )
    add_run_command(commands, common)
    add_validate_command(commands, common)
    add_graph_command(commands, common)
    add_cache_command(commands, common)
    add_runs_command(commands, common)
    add_ui_command(commands, common, _serve_web_view)
    add_demo_command(commands, common)
    return parser


def _serve_web_view(store: str, **options: Any) -> None:
    """The web view, served until stopped (the ``ui`` extra, imported only now)."""
    from ._ui._serve import serve_until_stopped  # noqa: PLC0415

    serve_until_stopped(store, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(getattr(args, "log_format", "console"), quiet=getattr(args, "quiet", False))
    try:
        return int(args.handler(args))
    except UsageError as exc:
        if getattr(args, "debug", False) and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"twinklr-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PipelineValidationError, UnusableStoreError) as exc:
        print(f"twinklr-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        structlog.reset_defaults()


# Present the command's names as living here, where they always were (as the package
# does for its own exports).
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("twinklr.core.pipeline._cli."):
        _obj.__module__ = "twinklr.core.pipeline.cli"  # (also when run with -m)
del _name, _obj

if __name__ == "__main__":
    sys.exit(main())
