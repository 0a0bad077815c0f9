"""``twinklr-pipeline demo``: the Twinklr sequencer, offline, with failure injection and
an approval gate."""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from typing import Any

import trio

from .._cache._sqlite import SQLiteCacheStore
from .._engine._executor import PipelineExecutor
from .._values._results import PipelineResult
from ._common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    RUNS_HELP,
    UsageError,
    check_writable,
    make_progress,
    run_store,
    with_output_options,
)
from ._progress import ask_on_terminal, execute_with_progress
from ._report import finish, recorded


def add_demo_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    demo = commands.add_parser("demo", parents=[common], help="the Twinklr sequencer, offline")
    demo.add_argument(
        "--song", default="Carol of the Bells", help="the song to sequence (default: %(default)s)"
    )
    demo.add_argument(
        "--fail-at",
        metavar="STAGE[:ITEM]",
        help="inject a failure there, then resume the run from the cache",
    )
    demo.add_argument(
        "--approve",
        action="store_true",
        help="ask on the terminal before rendering (y renders the group plans, n skips)",
    )
    demo.add_argument("--cache", help="cache directory (default: a temporary one)")
    demo.add_argument("--runs", metavar="DIR", help=RUNS_HELP)
    with_output_options(demo)
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..example_usage import (  # noqa: PLC0415 (the demo only)
        build_pipeline,
        demo_context,
        failure_points,
    )

    fail_at = _parse_fail_at(args.fail_at)
    if fail_at is not None:
        _check_fail_at(fail_at, failure_points())
    check_writable(args.trace, "--trace")
    check_writable(args.gantt, "--gantt")
    with tempfile.TemporaryDirectory(prefix="twinklr-demo-") as scratch:
        store = SQLiteCacheStore(args.cache or scratch)
        recording = run_store(args, store)
        executor = PipelineExecutor(cache=store, runs=recording)
        song = args.song
        attempts = [fail_at, None] if fail_at is not None else [None]
        status = EXIT_OK
        for number, failure in enumerate(attempts, start=1):
            if len(attempts) > 1:
                what = f"with a failure injected at {args.fail_at}" if failure else "resuming"
                print(f"== run {number}: {what}")
            pipeline = build_pipeline(approve=args.approve)
            progress = make_progress(sys.stderr, quiet=args.quiet, asking=args.approve)
            context = demo_context(song, failure)
            ask = ask_on_terminal if args.approve else None
            result = trio.run(
                functools.partial(execute_with_progress, ask=ask),
                executor,
                pipeline,
                song,
                context,
                progress,
            )
            status = finish(result, progress, args, pipeline)
            recorded(recording, result, quiet=args.quiet)
            if result is not None and len(attempts) > 1:
                print(f"cached: {', '.join(result.cached_stages) or 'none'}{_items(result)}")
            if status == EXIT_INTERRUPTED:
                return status
        return status


def _items(result: PipelineResult) -> str:
    parts = []
    for stage, stage_result in result.stage_results.items():
        cached = stage_result.metadata.get("cached_items")
        if cached and stage not in result.cached_stages:
            parts.append(f"{stage}: {cached} of {stage_result.metadata['items']} items")
    return f" ({'; '.join(parts)})" if parts else ""


def _check_fail_at(fail_at: tuple[str, int | None], points: dict[str, int | None]) -> None:
    stage, item = fail_at
    if stage not in points:
        msg = f"--fail-at {stage!r}: no such stage; the demo's stages are {', '.join(points)}"
        raise UsageError(msg)
    count = points[stage]
    if item is not None and count is None:
        fan_outs = ", ".join(name for name, items in points.items() if items is not None)
        msg = f"--fail-at {stage}:{item}: {stage} has no items (fan-out stages: {fan_outs})"
        raise UsageError(msg)
    if item is not None and count is not None and item >= count:
        msg = f"--fail-at {stage}:{item}: {stage} has items 0 to {count - 1}"
        raise UsageError(msg)


def _parse_fail_at(text: str | None) -> tuple[str, int | None] | None:
    if text is None:
        return None
    stage, _, item = text.partition(":")
    if not item:
        return stage, None
    if not item.isdigit():
        msg = f"--fail-at expects STAGE or STAGE:ITEM (an item number), got {text!r}"
        raise UsageError(msg)
    return stage, int(item)
