"""``twinklr-pipeline ui``: the run history (and a definition's validation) in a browser."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import signal
import sys
from collections.abc import Callable
from typing import Any

import trio

from ..definition import PipelineDefinition
from ._history import DEFAULT_STORE, RunsUsageError

Loader = Callable[[str], PipelineDefinition]


def add_ui_command(commands: Any, common: argparse.ArgumentParser, load: Loader) -> None:
    """``ui [--store DIR] [--host H] [--port N] [--token T] [--pipeline MODULE:ATTR]``."""
    ui = commands.add_parser(
        "ui", parents=[common], help="serve the run history (and a definition) to a browser"
    )
    ui.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="DIR",
        help=f"the run store: a directory or its file (default {DEFAULT_STORE})",
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
    ui.set_defaults(handler=functools.partial(cmd_ui, load=load))


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:  # noqa: PLR2004
        msg = f"expected a port number from 0 to 65535, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(text)


def cmd_ui(args: argparse.Namespace, *, load: Loader) -> int:
    """Serve the web view until Ctrl-C."""
    missing = [
        name for name in ("starlette", "hypercorn") if importlib.util.find_spec(name) is None
    ]
    if missing:
        msg = f'the web view needs {" and ".join(missing)}: pip install "twinklr-pipeline[ui]"'
        raise RunsUsageError(msg)
    from .._observe._runs import RunStore  # noqa: PLC0415 (the ui extra's parts, lazily)
    from .._ui._app import RunsView, environment_token  # noqa: PLC0415
    from .._ui._serve import UnsafeBindError, check_bind, serve  # noqa: PLC0415

    token = args.token or environment_token()
    try:
        check_bind(args.host, token)
    except UnsafeBindError as exc:
        raise RunsUsageError(str(exc)) from exc
    if args.pipeline is not None:
        _check_module(args.pipeline)
    store = RunStore(args.store)
    view = RunsView(store, token=token, pipeline=args.pipeline, load=load)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def stop() -> None:
                async for _ in signals:
                    return

            async with trio.open_nursery() as nursery:
                binds = await nursery.start(
                    functools.partial(
                        serve, view, host=args.host, port=args.port, shutdown_trigger=stop
                    )
                )
                where = binds[0] + "/"
                suffix = f"?token={token}" if token else ""
                print(f"serving the runs of {store.path} at {where}{suffix}", flush=True)
                if args.pipeline is not None:
                    print(
                        f"the definition {args.pipeline} at {where}definition{suffix}", flush=True
                    )
                print("Ctrl-C stops", file=sys.stderr, flush=True)

    try:
        trio.run(main)
    finally:
        store.close()
    return 0


def _check_module(target: str) -> None:
    """A ``MODULE:ATTR`` whose module is nowhere is a usage error; one that is there but
    does not load is shown on the page (with the error) until its file is fixed."""
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        msg = f"--pipeline: expected MODULE:ATTR, got {target!r}"
        raise RunsUsageError(msg)
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        msg = f"--pipeline: no module {module!r} (from {target!r})"
        raise RunsUsageError(msg)
