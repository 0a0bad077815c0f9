"""``twinklr-pipeline ui``: the run history (and a definition's validation) in a browser.

The web view is another tool (``_ui``, the ``ui`` extra): the command is handed the
function that serves it (``serve``), which ``cli`` imports only when the command runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
from collections.abc import Callable
from typing import Any

from .._base._database import DEFAULT_DIRECTORY
from ..definition import split_target
from ._common import EXIT_OK, UsageError, load

#: Serves the web view until stopped: ``serve(store, host=, port=, token=, pipeline=,
#: load=)``; `ValueError` when it refuses to (an unsafe address), `OSError` when it
#: cannot bind.
Serve = Callable[..., None]


def add_ui_command(commands: Any, common: argparse.ArgumentParser, serve: Serve) -> None:
    """``ui [--store DIR] [--host H] [--port N] [--token T] [--pipeline MODULE:ATTR]``."""
    ui = commands.add_parser(
        "ui", parents=[common], help="serve the run history (and a definition) to a browser"
    )
    ui.add_argument(
        "--store",
        default=DEFAULT_DIRECTORY,
        metavar="DIR|URL",
        help=f"the run store: a directory or its file, or a postgresql:// URL (default"
        f" {DEFAULT_DIRECTORY})",
    )
    ui.add_argument("--host", default="127.0.0.1", help="the address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=_port, default=8000, help="the port (default 8000; 0: any free)")
    ui.add_argument(
        "--token",
        help="require this token on every request (needed to bind beyond loopback; "
        "TWINKLR_UI_TOKEN works too and stays out of the process list)",
    )
    ui.add_argument(
        "--pipeline",
        metavar="MODULE:ATTR",
        help="also show this definition at /definition, its problems marked, reloaded on change",
    )
    ui.set_defaults(handler=functools.partial(cmd_ui, serve=serve))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:  # noqa: PLR2004
        msg = f"expected a port number from 0 to 65535, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def cmd_ui(args: argparse.Namespace, *, serve: Serve) -> int:
    """Serve the web view until Ctrl-C."""
    missing = [
        name for name in ("starlette", "hypercorn") if importlib.util.find_spec(name) is None
    ]
    if missing:
        msg = f'the web view needs {" and ".join(missing)}: pip install "twinklr-pipeline[ui]"'
        raise UsageError(msg)
    if args.pipeline is not None:
        _check_module(args.pipeline)
    try:
        serve(
            args.store,
            host=args.host,
            port=args.port,
            token=args.token,
            pipeline=args.pipeline,
            load=load,
        )
    except ValueError as exc:  # refused to serve there
        raise UsageError(str(exc)) from exc
    except OSError as exc:  # could not: the port is in use, the address is not ours
        msg = f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}"
        raise UsageError(msg) from exc
    return EXIT_OK


def _check_module(target: str) -> None:
    """A ``MODULE:ATTR`` whose module is nowhere is a usage error; one that is there but
    does not load is shown on the page (with the error) until its file is fixed."""
    try:
        module, _ = split_target(target)
    except ValueError as exc:
        msg = f"--pipeline: {exc}"
        raise UsageError(msg) from exc
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        msg = f"--pipeline: no module {module!r} (from {target!r})"
        raise UsageError(msg)
