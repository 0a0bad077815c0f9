"""What the subcommands share: the usage error and exit statuses, loading a definition,
reading the arguments, the progress display, logging, the stores they name."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, TextIO, cast

import structlog

from .._base._database import DEFAULT_DIRECTORY
from .._cache._postgres import PostgresCacheStore
from .._cache._sqlite import SQLiteCacheStore
from .._engine._stores import cache_from, is_postgres_url, runs_from
from .._observe._contract import RunStoreProtocol
from .._observe._runs import RunStore
from .._values._context import NoRateLimiter, PipelineContext
from ..definition import PipelineDefinition, load_definition, load_target
from ._progress import Progress, before_log

RUNS_HELP = (
    "record the run in this directory's run store, or a postgresql:// URL's (default:"
    " beside the --cache, when one is given; 'none': do not record)"
)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A mistake in what the user asked for: one line on stderr, exit status 2."""


def load(target: str) -> PipelineDefinition:
    """The definition at ``MODULE:ATTR`` (or returned by the factory found there)."""
    try:
        return load_definition(target)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


#: What a context made by the command line says when a stage asks for a rate limiter.
CLI_LIMITER_ADVICE = (
    "; from the command line, name a context that has one: --context MODULE:ATTR (a "
    "PipelineContext, or a function returning one)"
)


def load_context(target: str | None) -> PipelineContext:
    """``--context MODULE:ATTR``: the context found there (or made by the function found
    there); without it, an empty one whose missing limiter names this option."""
    if target is None:
        return PipelineContext(rate_limiter=NoRateLimiter(advice=CLI_LIMITER_ADVICE))
    try:
        return load_target(target, PipelineContext)
    except ValueError as exc:
        msg = f"--context: {exc}"
        raise UsageError(msg) from exc


def store_option(directory: str | os.PathLike[str]) -> str:
    """`` --store DIR`` for a command a line suggests, or nothing for the default store."""
    default = Path(directory).resolve() == Path(DEFAULT_DIRECTORY).resolve()
    return "" if default else f" --store {directory}"


def open_runs(where: str | os.PathLike[str]) -> RunStoreProtocol:
    """The run store ``where`` names: a ``postgresql://`` URL (the shared store), or a
    SQLite file or its directory."""
    return runs_from(where) if is_postgres_url(where) else RunStore(where)


def open_cache(where: str | os.PathLike[str]) -> SQLiteCacheStore | PostgresCacheStore:
    """The cache ``where`` names: a ``postgresql://`` URL, or a SQLite file or directory."""
    if is_postgres_url(where):
        return cast("PostgresCacheStore", cache_from(where))
    return SQLiteCacheStore(Path(where))


def file_of(store: object) -> Path | None:
    """The SQLite file of a store (None for a server's)."""
    path = getattr(store, "path", None)
    return path if isinstance(path, Path) else None


def store_place(store: RunStoreProtocol) -> str:
    """What ``--store`` takes to name ``store``: its directory, or its URL."""
    path = file_of(store)
    return str(path.parent) if path is not None else store.location


def store_hint(store: RunStoreProtocol) -> str:
    """`` --store ...`` naming ``store`` again in a command a line suggests (nothing for
    the default store)."""
    path = file_of(store)
    return store_option(path.parent) if path is not None else f" --store {store.location}"


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
        if source == "--input":
            quoted = json.dumps(text)
            msg += f" (a string is quoted as JSON: --input '{quoted}')"
        raise UsageError(msg) from exc


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


def make_progress(out: TextIO, *, quiet: bool, asking: bool = False) -> Progress:
    """A live, redrawn display on a terminal (with the ``cli`` extra: rich); plain lines
    otherwise (CI logs, pipes, files), and when the run asks for a gate's answer on the
    terminal (a redrawn table would hide the question)."""
    if not quiet and not asking and out.isatty():
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
        for said_first in before_log:
            said_first()
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(log_format: str, *, quiet: bool) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # On the console a stage's failure is said once, by the progress and the summary;
    # JSON logs (for machines) keep every record.
    said_elsewhere: list[Any] = [] if log_format == "json" else [_said_elsewhere]
    structlog.configure(
        processors=[
            *said_elsewhere,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.ERROR if quiet else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(cast("TextIO", _StandardError())),
    )


#: Log records the command's progress lines and summary already say.
SAID_ELSEWHERE = frozenset({"stage_failed"})


def _said_elsewhere(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if event.get("event") in SAID_ELSEWHERE:
        raise structlog.DropEvent
    return event


def cache_of(args: argparse.Namespace) -> SQLiteCacheStore | PostgresCacheStore | None:
    """The cache ``--cache`` names, if it names one."""
    return open_cache(args.cache) if args.cache else None


def run_store(
    args: argparse.Namespace, cache: SQLiteCacheStore | PostgresCacheStore | None
) -> RunStoreProtocol | None:
    """Where ``run`` and ``demo`` record their runs: ``--runs DIR`` (or URL), else beside
    the cache when ``--cache`` was given (its directory, or its database), else nowhere
    (``--runs none`` turns it off)."""
    if args.runs == "none":
        return None
    if args.runs is not None:
        return open_runs(args.runs)
    if args.cache and cache is not None:
        path = file_of(cache)
        return open_runs(args.cache if path is None else path.parent)
    return None


def with_output_options(command: argparse.ArgumentParser) -> None:
    """The options of the subcommands that run a pipeline: where its trace and gantt
    chart go, how it logs, whether it is quiet."""
    command.add_argument("--trace", help="write a Chrome trace (JSON) of the run here")
    command.add_argument("--gantt", help="write a Mermaid gantt chart of the run here")
    command.add_argument(
        "--log-format",
        choices=["console", "json"],
        default="console",
        help="how warnings and errors are logged to stderr (default console)",
    )
    command.add_argument("--quiet", action="store_true", help="no progress or summary")
