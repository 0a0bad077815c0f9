"""``twinklr-pipeline run MODULE:ATTR``: run a definition, with progress and a summary."""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

import trio

from .._base._database import DEFAULT_DIRECTORY
from .._engine._executor import PipelineExecutor
from .._kinds._gate import WaitForInput
from .._observe._contract import RunStoreProtocol
from ..definition import remember_source
from ._common import (
    RUNS_HELP,
    UsageError,
    cache_of,
    check_writable,
    load,
    load_context,
    make_progress,
    parse_input,
    run_store,
    store_hint,
    with_output_options,
)
from ._progress import ask_on_terminal, execute_with_progress
from ._report import finish, recorded


def add_run_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    run = commands.add_parser("run", parents=[common], help="run a pipeline definition")
    run.add_argument("target", help="MODULE:ATTR of a PipelineDefinition or a factory")
    run.add_argument("--input", help="the initial input: JSON text, or @file.json")
    run.add_argument(
        "--context",
        metavar="MODULE:ATTR",
        help="the PipelineContext the stages get (or a function returning one): "
        "providers, rate limiters, configuration",
    )
    run.add_argument(
        "--cache",
        nargs="?",
        const=DEFAULT_DIRECTORY,
        help=f"cache successful stages in this directory, or a postgresql:// URL (default"
        f" {DEFAULT_DIRECTORY})",
    )
    run.add_argument(
        "--outputs",
        metavar="FILE",
        help="write every stage's output here as JSON (arrays as lists, models as objects)",
    )
    run.add_argument("--runs", metavar="DIR", help=RUNS_HELP)
    run.add_argument(
        "--suspend",
        action="store_true",
        help="end the run as waiting when only its gates (WaitForInput) are left; "
        "'runs respond' answers them and 'runs resume' goes on, from any process "
        "(needs --cache)",
    )
    with_output_options(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    check_writable(args.outputs, "--outputs")
    check_writable(args.trace, "--trace")
    check_writable(args.gantt, "--gantt")
    pipeline = load(args.target)
    remember_source(pipeline, args.target)  # (for `runs resume`)
    initial_input = parse_input(args.input)
    context = load_context(args.context)
    pipeline.validate()
    cache = cache_of(args)
    runs = run_store(args, cache)
    if args.suspend and (cache is None or runs is None):
        msg = "--suspend needs --cache DIR: the run is kept there until it is resumed"
        raise UsageError(msg)
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=args.suspend)
    gated = any(isinstance(sdef.stage, WaitForInput) for sdef in pipeline.stages)
    ask = ask_on_terminal if gated and not args.suspend and sys.stdin.isatty() else None
    progress = make_progress(sys.stderr, quiet=args.quiet, asking=ask is not None)
    if gated and ask is None and not args.suspend:
        progress.answer_with = _answer_with(runs)
    try:
        result = trio.run(
            functools.partial(execute_with_progress, ask=ask),
            executor,
            pipeline,
            initial_input,
            context,
            progress,
        )
        status = finish(result, progress, args, pipeline)
        recorded(runs, result, quiet=args.quiet)
    finally:
        if runs is not None:
            runs.close()
    return status


def _answer_with(runs: RunStoreProtocol | None) -> str:
    """What a gate's progress line says when nobody on this terminal answers it: the
    ``runs respond`` line that does, or why nothing can."""
    if runs is None:
        return (
            " (nothing can answer it: run on a terminal to be asked, or record the run "
            "with --cache or --runs DIR so 'runs respond' can)"
        )
    store = store_hint(runs)
    return (
        " (answer: twinklr-pipeline runs respond {run_id} {stage}"
        + store.replace("{", "{{").replace("}", "}}")
        + " --approve | --reject | --value JSON)"
    )
