"""``twinklr-pipeline runs resume RUN_ID``: go on with a suspended run (``run --suspend``)
with the answers given through the store (``runs respond``)."""

from __future__ import annotations

import argparse
import functools
import sys

import trio

from .._engine._executor import PipelineExecutor
from .._engine._resume import decode
from ..definition import remember_source
from ._common import (
    UsageError,
    file_of,
    load,
    load_context,
    make_progress,
    open_cache,
    open_runs,
    with_output_options,
)
from ._progress import execute_with_progress
from ._report import finish, recorded


def add_resume_options(resume: argparse.ArgumentParser) -> None:
    """The options of ``runs resume`` beyond the run and its store."""
    with_output_options(resume)
    resume.add_argument(
        "--pipeline",
        metavar="MODULE:ATTR",
        help="the definition to go on with (default: where 'run' loaded it from)",
    )
    resume.add_argument(
        "--context",
        metavar="MODULE:ATTR",
        help="the PipelineContext the stages get (or a function returning one), as "
        "'run --context' gave it",
    )
    resume.add_argument(
        "--cache",
        metavar="DIR|URL",
        help="the cache the run's stages were kept in (default: the store's directory, or"
        " its database)",
    )
    resume.set_defaults(handler=cmd_resume)


def cmd_resume(args: argparse.Namespace) -> int:
    """``runs resume``: go on with a suspended run, with the answers given through the
    store (``runs respond``)."""
    store = open_runs(args.store)
    try:
        try:
            record, state, _ = store.suspension(args.run_id)
            target = args.pipeline or decode(state).source
        except (LookupError, ValueError) as exc:
            raise UsageError(str(exc.args[0])) from exc
        if target is None:
            msg = (
                f"run {record.run_id} was not started by 'twinklr-pipeline run': say which "
                "definition to go on with (--pipeline MODULE:ATTR)"
            )
            raise UsageError(msg)
        pipeline = load(target)
        remember_source(pipeline, target)
        context = load_context(args.context)
        path = file_of(store)  # (the cache beside the runs: their directory, or database)
        cache = open_cache(args.cache or (args.store if path is None else str(path.parent)))
        executor = PipelineExecutor(cache=cache, runs=store, suspend_on_wait=True)
        progress = make_progress(sys.stderr, quiet=args.quiet)
        run = functools.partial(execute_with_progress, resume=record.run_id)
        try:
            result = trio.run(run, executor, pipeline, None, context, progress)
        except (LookupError, ValueError) as exc:  # resumed meanwhile, an answer refused
            raise UsageError(str(exc.args[0])) from exc
        args.runs = args.cache = None  # (for _finish's hints: the store says it all)
        status = finish(result, progress, args, pipeline)
        recorded(store, result, quiet=args.quiet)
        return status
    finally:
        store.close()
