"""The ``twinklr-pipeline`` command: run, validate, graph, cache, runs, ui, demo.

Exit status: 0 on success, 1 when a run failed, 2 for a usage or validation error (one
line on stderr, no traceback), 130 when interrupted (Ctrl-C cancels the run cleanly and
names the stages it cancelled).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import re
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO, cast

import structlog
import trio

from .._cache._export import to_plain
from .._cache._sqlite import DEFAULT_FILENAME, SQLiteCacheStore
from .._engine._executor import PipelineExecutor
from .._engine._resume import decode
from .._kinds._gate import InputRequest
from .._observe._runs import RunStore
from .._observe._trace import timeline_report, to_chrome_trace, to_mermaid_gantt
from .._observe._viz import render_graph, to_dot, to_mermaid
from .._values._results import PipelineResult
from ..definition import PipelineDefinition, remember_source
from ..errors import GraphvizNotFoundError, PipelineValidationError
from ._history import RunsUsageError, add_runs_command
from ._progress import Progress, execute_with_progress
from ._ui import add_ui_command

DEFAULT_CACHE = ".twinklr"
RUNS_HELP = (
    "record the run in this directory's run store (default: the --cache directory, when"
    " one is given; 'none': do not record)"
)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A mistake in what the user asked for: one line on stderr, exit status 2."""


# -- loading --------------------------------------------------------------------------


def load_pipeline(target: str) -> PipelineDefinition:
    """The definition at ``MODULE:ATTR`` (or returned by the factory found there)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        msg = f"expected MODULE:ATTR, got {target!r}"
        raise UsageError(msg)
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import {module_name!r}: {exc}"
        raise UsageError(msg) from exc
    except SyntaxError as exc:
        msg = f"cannot import {module_name!r}: {exc.msg} ({exc.filename}, line {exc.lineno})"
        raise UsageError(msg) from exc
    except Exception as exc:
        msg = f"importing {module_name!r} raised {_raised(exc)}"
        raise UsageError(msg) from exc
    try:
        found = getattr(module, attribute)
    except AttributeError as exc:
        msg = f"module {module_name!r} has no attribute {attribute!r}"
        raise UsageError(msg) from exc
    if not isinstance(found, PipelineDefinition) and callable(found):
        try:
            found = found()
        except Exception as exc:
            msg = f"calling {target}() raised {_raised(exc)}"
            raise UsageError(msg) from exc
    if not isinstance(found, PipelineDefinition):
        msg = f"{target} is a {type(found).__name__}, not a PipelineDefinition (or a factory)"
        raise UsageError(msg)
    return found


def _raised(exc: BaseException) -> str:
    """``exc`` in a line: its type, message and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def check_writable(path: str | None, option: str) -> None:
    """Refuse, before any work, a ``path`` that cannot be written (a missing directory,
    a directory, no permission): the run's output would be lost after it finished."""
    if path is None:
        return
    target = Path(path)
    existed = target.exists()
    try:
        with target.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        msg = f"{option} {path}: cannot be written ({exc.strerror or exc})"
        raise UsageError(msg) from exc
    if not existed:
        target.unlink(missing_ok=True)


def parse_input(text: str | None) -> Any:
    """``--input``: JSON text, or ``@file.json``."""
    if text is None:
        return None
    source = "--input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            msg = f"cannot read {source}: {exc.strerror}"
            raise UsageError(msg) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"{source} is not valid JSON: {exc}"
        raise UsageError(msg) from exc


def make_progress(out: TextIO, *, quiet: bool) -> Progress:
    """A live, redrawn display on a terminal (with the ``cli`` extra: rich); plain lines
    otherwise (CI logs, pipes, files)."""
    if not quiet and out.isatty():
        try:
            from ._live import live_progress  # noqa: PLC0415 (optional, lazily)
        except ImportError:  # the cli extra is not installed
            pass
        else:
            return live_progress(out)
    return Progress(out, quiet=quiet)


class _StandardError:
    """Standard error as it is at each write. The live display points ``sys.stderr``
    above its table while it draws, so log lines are printed there instead of breaking
    the table (a line written past it left the table's top edge behind)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _configure_logging(log_format: str, *, quiet: bool) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.ERROR if quiet else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", _StandardError())),
    )


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


def _finish(
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
        print(timeline_report(result))
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
        _say_waiting(result, args)
        return EXIT_OK
    if not result.success:
        print(f"run failed: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _say_waiting(result: PipelineResult, args: argparse.Namespace) -> None:
    where = getattr(args, "store", None) or args.runs or args.cache
    store = f" --store {where}" if where else ""
    gates = ", ".join(result.waiting_stages)
    gate = result.waiting_stages[0]
    print(
        f"run {result.run_id} is waiting for input at {gates}: answer with\n"
        f"  twinklr-pipeline runs respond {result.run_id} {gate} --value JSON{store}\n"
        f"then go on (from any process) with\n"
        f"  twinklr-pipeline runs resume {result.run_id}{store}",
        file=sys.stderr,
    )


def cmd_resume(args: argparse.Namespace) -> int:
    """``runs resume``: go on with a suspended run, with the answers given through the
    store (``runs respond``)."""
    store = RunStore(args.store)
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
        pipeline = load_pipeline(target)
        remember_source(pipeline, target)
        cache = cache_store(args.cache or str(store.path.parent))
        executor = PipelineExecutor(cache=cache, runs=store, suspend_on_wait=True)
        progress = make_progress(sys.stderr, quiet=args.quiet)
        run = functools.partial(execute_with_progress, resume=record.run_id)
        try:
            result = trio.run(run, executor, pipeline, None, None, progress)
        except (LookupError, ValueError) as exc:  # resumed meanwhile, an answer refused
            raise UsageError(str(exc.args[0])) from exc
        args.runs = args.cache = None  # (for _finish's hints: the store says it all)
        status = _finish(result, progress, args, pipeline)
        _recorded(store, result, quiet=args.quiet)
        return status
    finally:
        store.close()


def _store(args: argparse.Namespace) -> SQLiteCacheStore | None:
    return cache_store(args.cache) if args.cache else None


def run_store(args: argparse.Namespace, cache: SQLiteCacheStore | None) -> RunStore | None:
    """Where ``run`` and ``demo`` record their runs: ``--runs DIR``, else the cache's
    directory when ``--cache`` was given, else nowhere (``--runs none`` turns it off)."""
    if args.runs == "none":
        return None
    if args.runs is not None:
        return RunStore(args.runs)
    if args.cache and cache is not None:
        return RunStore(cache.path.parent)
    return None


def _recorded(store: RunStore | None, result: PipelineResult | None, *, quiet: bool) -> None:
    if store is not None and result is not None and not quiet:
        print(
            f"recorded as run {result.run_id} in {store.path} "
            f"(twinklr-pipeline runs show {result.run_id} --store {store.path.parent})"
        )


def cmd_run(args: argparse.Namespace) -> int:
    check_writable(args.outputs, "--outputs")
    check_writable(args.trace, "--trace")
    check_writable(args.gantt, "--gantt")
    pipeline = load_pipeline(args.target)
    remember_source(pipeline, args.target)  # (for `runs resume`)
    initial_input = parse_input(args.input)
    pipeline.validate()
    cache = _store(args)
    runs = run_store(args, cache)
    if args.suspend and (cache is None or runs is None):
        msg = "--suspend needs --cache DIR: the run is kept there until it is resumed"
        raise UsageError(msg)
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=args.suspend)
    progress = make_progress(sys.stderr, quiet=args.quiet)
    try:
        result = trio.run(execute_with_progress, executor, pipeline, initial_input, None, progress)
        status = _finish(result, progress, args, pipeline)
        _recorded(runs, result, quiet=args.quiet)
    finally:
        if runs is not None:
            runs.close()
    return status


def cmd_validate(args: argparse.Namespace) -> int:
    pipeline = load_pipeline(args.target)
    problems = pipeline.validate_pipeline()
    if problems:
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(f"pipeline '{pipeline.name}' is invalid: {len(problems)} problems", file=sys.stderr)
        return EXIT_USAGE
    print(f"pipeline '{pipeline.name}' is valid: {len(pipeline.stages)} stages")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    check_writable(args.output, "--output")
    pipeline = load_pipeline(args.target)
    if args.format in {"svg", "png"}:
        output = args.output or f"{pipeline.name}.{args.format}"
        try:
            render_graph(pipeline, output, output_format=args.format)
        except GraphvizNotFoundError as exc:
            raise UsageError(str(exc)) from exc
        print(f"graph written to {output}")
        return EXIT_OK
    text = to_mermaid(pipeline) if args.format == "mermaid" else to_dot(pipeline)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return EXIT_OK


def cache_store(where: str | Path) -> SQLiteCacheStore:
    """The store ``--cache`` names: a directory (made when missing) unless it is an
    existing file or has a suffix (``cache.db``, ``twinklr-cache.sqlite3``)."""
    path = Path(where)
    if path.is_file() or path.suffix:
        return SQLiteCacheStore(path)
    return SQLiteCacheStore(path / DEFAULT_FILENAME)


def cmd_cache(args: argparse.Namespace) -> int:
    store = cache_store(args.cache)

    async def act() -> int:
        if args.action == "clear":
            await _check_known(store, args.pipeline, args.stage)
            removed = await store.clear(args.pipeline, stage=args.stage)
            print(f"removed {removed} entries from {store.path}")
            return EXIT_OK
        if args.action == "prune":
            removed = await store.prune(max_bytes=args.max_bytes, older_than=args.older_than)
            left = await store.entries()
            size = sum(entry.size for entry in left)
            print(f"removed {removed} entries from {store.path}")
            print(f"{len(left)} entries, {size} bytes left")
            return EXIT_OK
        entries = await store.entries(args.pipeline)
        if args.action == "stats":
            size = sum(entry.size for entry in entries)
            pipelines = sorted({entry.pipeline for entry in entries})
            print(f"{len(entries)} entries, {size} bytes, pipelines: {', '.join(pipelines) or '-'}")
            for pipeline in pipelines:
                own = [entry for entry in entries if entry.pipeline == pipeline]
                print(f"  {pipeline}: {len(own)} entries, {sum(e.size for e in own)} bytes")
            return EXIT_OK
        for entry in entries:
            item = "" if entry.item is None else f"[{entry.item}]"
            print(
                f"{entry.pipeline:<24}{entry.stage + item:<24}{entry.size:>10} B  {entry.key[:12]}"
            )
        return EXIT_OK

    if not store.path.exists():
        msg = f"no cache at {store.path}"
        raise UsageError(msg)
    try:
        return trio.run(act)
    except sqlite3.DatabaseError as exc:
        msg = f"{store.path} is not a twinklr cache: {exc}"
        raise UsageError(msg) from exc


async def _check_known(store: SQLiteCacheStore, pipeline: str | None, stage: str | None) -> None:
    """Refuse a ``--pipeline`` or ``--stage`` the cache has no entry of, listing those it
    has (a typo would otherwise clear nothing, silently)."""
    if pipeline is None and stage is None:
        return
    entries = await store.entries()
    pipelines = sorted({entry.pipeline for entry in entries})
    if pipeline is not None and pipeline not in pipelines:
        msg = f"--pipeline {pipeline!r}: the cache has none; it has {_listed(pipelines)}"
        raise UsageError(msg)
    stages = sorted({e.stage for e in entries if pipeline is None or e.pipeline == pipeline})
    if stage is not None and stage not in stages:
        msg = f"--stage {stage!r}: the cache has none; it has {_listed(stages)}"
        raise UsageError(msg)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "no entries"


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
        store = cache_store(args.cache or scratch)
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
            # (asking on the terminal: plain lines, a redrawn table would hide the question)
            progress = (
                Progress(sys.stderr, quiet=args.quiet)
                if args.approve
                else make_progress(sys.stderr, quiet=args.quiet)
            )
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
            status = _finish(result, progress, args, pipeline)
            _recorded(recording, result, quiet=args.quiet)
            if result is not None and len(attempts) > 1:
                print(f"cached: {', '.join(result.cached_stages) or 'none'}{_items(result)}")
            if status == EXIT_INTERRUPTED:
                return status
        return status


def ask_on_terminal(request: InputRequest) -> Any:
    """A gate's question on the terminal: yes gives the gate its input (approved), anything
    else (or the end of the input) None (rejected)."""
    shown = request.input
    if isinstance(shown, list):
        shown = f"{len(shown)} items: " + ", ".join(repr(item)[:60] for item in shown[:3])
    print(f"{request.stage_id}: {request.prompt}\n  {str(shown)[:300]}", file=sys.stderr)
    print("  approve? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return request.input if answer in ("y", "yes") else None


def _items(result: PipelineResult) -> str:
    parts = []
    for stage, stage_result in result.stage_results.items():
        cached = stage_result.metadata.get("cached_items")
        if cached and stage not in result.cached_stages:
            parts.append(f"{stage}: {cached} of {stage_result.metadata['items']} items")
    return f" ({'; '.join(parts)})" if parts else ""


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _number_and_unit(pattern: re.Pattern[str], text: str, examples: str) -> tuple[float, str]:
    match = pattern.fullmatch(text.strip())
    if match is None:
        msg = f"expected {examples}, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    number, unit = match.groups()
    return float(number), unit.lower()


def parse_size(text: str) -> int:
    """``--max-bytes``: a byte count, with K, M, G or T (powers of 1024)."""
    number, unit = _number_and_unit(_SIZE, text, "a size such as 1048576, 500M or 2G")
    return int(number * 1024 ** "_kmgt".index(unit or "_"))


def parse_age(text: str) -> float:
    """``--older-than``: seconds, from a number and a unit (s, m, h, d, w)."""
    number, unit = _number_and_unit(_AGE, text, "an age such as 30s, 15m, 12h, 7d or 2w")
    return number * _SECONDS[unit]


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


# -- the parser ---------------------------------------------------------------------------


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

    def with_output_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--trace", help="write a Chrome trace (JSON) of the run here")
        command.add_argument("--gantt", help="write a Mermaid gantt chart of the run here")
        command.add_argument(
            "--log-format",
            choices=["console", "json"],
            default="console",
            help="how warnings and errors are logged to stderr (default console)",
        )
        command.add_argument("--quiet", action="store_true", help="no progress or summary")

    run = commands.add_parser("run", parents=[common], help="run a pipeline definition")
    run.add_argument("target", help="MODULE:ATTR of a PipelineDefinition or a factory")
    run.add_argument("--input", help="the initial input: JSON text, or @file.json")
    run.add_argument(
        "--cache",
        nargs="?",
        const=DEFAULT_CACHE,
        help=f"cache successful stages in this directory (default {DEFAULT_CACHE})",
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

    validate = commands.add_parser(
        "validate", parents=[common], help="list every problem of a definition"
    )
    validate.add_argument("target", help="MODULE:ATTR of a PipelineDefinition or a factory")
    validate.set_defaults(handler=cmd_validate)

    graph = commands.add_parser("graph", parents=[common], help="draw a definition")
    graph.add_argument("target", help="MODULE:ATTR of a PipelineDefinition or a factory")
    graph.add_argument(
        "--format",
        choices=["mermaid", "dot", "svg", "png"],
        default="mermaid",
        help="mermaid or dot text, or svg/png drawn by Graphviz (default mermaid)",
    )
    graph.add_argument("--output", help="file to write (svg/png: default NAME.FORMAT)")
    graph.set_defaults(handler=cmd_graph)

    cache = commands.add_parser(
        "cache", parents=[common], help="list, count, clear or prune cached entries"
    )
    cache.add_argument(
        "action", choices=["list", "stats", "clear", "prune"], help="what to do with the entries"
    )
    cache.add_argument("--cache", default=DEFAULT_CACHE, help="the cache directory or file")
    cache.add_argument("--pipeline", help="only this pipeline's entries (list, stats, clear)")
    cache.add_argument("--stage", help="only this stage's entries (clear)")
    cache.add_argument(
        "--max-bytes",
        type=parse_size,
        metavar="N",
        help="prune: evict the least recently used entries beyond N bytes (500M, 2G: K, M, G"
        " are powers of 1024)",
    )
    cache.add_argument(
        "--older-than",
        type=parse_age,
        metavar="AGE",
        help="prune: remove entries not used for AGE (30s, 15m, 12h, 7d, 2w)",
    )
    cache.set_defaults(handler=cmd_cache)

    resume = add_runs_command(commands, common, parse_age)
    with_output_options(resume)
    resume.add_argument(
        "--pipeline",
        metavar="MODULE:ATTR",
        help="the definition to go on with (default: where 'run' loaded it from)",
    )
    resume.add_argument(
        "--cache",
        metavar="DIR",
        help="the cache the run's stages were kept in (default: the store's directory)",
    )
    resume.set_defaults(handler=cmd_resume)
    add_ui_command(commands, common, load_pipeline)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(getattr(args, "log_format", "console"), quiet=getattr(args, "quiet", False))
    try:
        return int(args.handler(args))
    except (UsageError, RunsUsageError) as exc:
        if getattr(args, "debug", False) and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"twinklr-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PipelineValidationError as exc:
        print(f"twinklr-pipeline: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        structlog.reset_defaults()
