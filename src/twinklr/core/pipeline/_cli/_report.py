"""What a finished run prints: its summary, outputs, exported files, and how to go on."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
from pathlib import Path

from .._cache._export import to_plain
from .._observe._contract import RunStoreProtocol
from .._observe._report import timeline_report
from .._observe._trace import to_chrome_trace, to_mermaid_gantt
from .._values._results import PipelineResult
from ..definition import PipelineDefinition
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, store_place
from ._progress import Progress


def output_preview(result: PipelineResult, pipeline: PipelineDefinition, width: int = 100) -> str:
    """What the run produced, in short: each terminal stage's output (the stages no
    other stage reads), on one line each."""
    read = {name for stage in pipeline.stages for name in stage.inputs}
    lines = ["outputs:"]
    for stage in pipeline.stages:
        if stage.id in read or stage.id not in result.outputs:
            continue
        shown = repr(result.outputs[stage.id])
        if len(shown) > width:
            shown = shown[: width - 3] + "..."
        lines.append(f"  {stage.id}: {shown}")
    if len(lines) == 1:
        lines.append("  (no terminal stage produced an output)")
    return "\n".join(lines)


def finish(
    result: PipelineResult | None,
    progress: Progress,
    args: argparse.Namespace,
    pipeline: PipelineDefinition,
) -> int:
    if result is None:
        # stages whose cancellation was seen, and any still running when events stopped
        cancelled = ", ".join(sorted({*progress.cancelled, *progress.running})) or "no stage"
        print(f"interrupted: cancelled {cancelled}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(timeline_report(result, width=_terminal_width()))
        if sys.stdout.isatty():
            print(output_preview(result, pipeline))
    if getattr(args, "outputs", None):
        document = {stage: to_plain(output) for stage, output in result.outputs.items()}
        text = json.dumps(document, indent=2, ensure_ascii=False)
        Path(args.outputs).write_text(text + "\n", encoding="utf-8")
        print(f"outputs written to {args.outputs}")
    if args.trace:
        Path(args.trace).write_text(json.dumps(to_chrome_trace(result)), encoding="utf-8")
        print(f"trace written to {args.trace} (open it in https://ui.perfetto.dev)")
    if args.gantt:
        Path(args.gantt).write_text(to_mermaid_gantt(result), encoding="utf-8")
        print(f"gantt chart written to {args.gantt}")
    if result.waiting_stages:
        say_waiting(result, args)
        return EXIT_OK
    if not result.success:
        failed = ", ".join(result.failed_stages)
        if args.quiet or not failed:
            print(f"run failed: {result.error}", file=sys.stderr)
        else:  # (the progress said why, once)
            print(f"run failed at {failed}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def say_waiting(result: PipelineResult, args: argparse.Namespace) -> None:
    where = getattr(args, "store", None) or args.runs or args.cache
    store = f" --store {where}" if where else ""
    gates = ", ".join(result.waiting_stages)
    gate = result.waiting_stages[0]
    print(
        f"run {result.run_id} is waiting for input at {gates}: answer with\n"
        f"  twinklr-pipeline runs respond {result.run_id} {gate}{store} "
        "--approve | --reject | --value JSON\n"
        f"then go on (from any process) with\n"
        f"  twinklr-pipeline runs resume {result.run_id}{store}",
        file=sys.stderr,
    )


def recorded(store: RunStoreProtocol | None, result: PipelineResult | None, *, quiet: bool) -> None:
    """Say where the run was recorded, or that it was not (a store it could not write:
    said even when quiet, since nothing else would say it)."""
    if store is None or result is None:
        return
    try:
        found = store.get(result.run_id) is not None
    except (sqlite3.DatabaseError, OSError, ValueError):  # (ConnectionError: an OSError)
        found = False
    if not found:
        print(f"the run was not recorded in {store.location} (see the warning)", file=sys.stderr)
    elif not quiet:
        print(
            f"recorded as run {result.run_id} in {store.location} "
            f"(twinklr-pipeline runs show {result.run_id} --store {store_place(store)})"
        )


def _terminal_width() -> int | None:
    """The terminal's columns when standard output is one (60 at least), else None: a
    file or a pipe gets the whole table."""
    if not sys.stdout.isatty():
        return None
    return max(60, shutil.get_terminal_size().columns)
