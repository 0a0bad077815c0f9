"""Serving the web view: hypercorn on Trio, bound where it is safe to."""

from __future__ import annotations

import functools
import logging
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

import hypercorn.config
import hypercorn.trio
import trio

from .._engine._stores import is_postgres_url, runs_from
from .._observe._runs import RunStore
from ..definition import PipelineDefinition
from ._app import RunsView
from ._guard import environment_token, is_loopback


class UnsafeBindError(ValueError):
    """A non-loopback address without a token: anyone who reaches it would see the runs."""


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback ``host`` unless a token guards the view."""
    if token is None and not is_loopback(host):
        msg = (
            f"refusing to serve on {host} without --token: anyone who can reach it would "
            "see every run (bind 127.0.0.1, or give --token)"
        )
        raise UnsafeBindError(msg)


async def serve(
    view: RunsView,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``view`` until ``shutdown_trigger`` returns (or the task is cancelled);
    ``task_status.started`` gets the bound addresses (``http://127.0.0.1:8000``)."""
    check_bind(host, view.token)
    config = hypercorn.config.Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("twinklr.core.pipeline.ui")
    config.graceful_timeout = 1.0
    await hypercorn.trio.serve(
        view,  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


def serve_until_stopped(
    store: str,
    *,
    host: str,
    port: int,
    token: str | None,
    pipeline: str | None,
    load: Callable[[str], PipelineDefinition],
) -> None:
    """Serve the runs of ``store`` (and the definition at ``pipeline``, if given) until
    SIGINT or SIGTERM, saying where on standard output (the ``ui`` subcommand);
    `UnsafeBindError` before anything is served if ``host`` is not safe to bind, the
    `OSError` of a bind that failed (a port in use)."""
    token = token or environment_token()
    check_bind(host, token)
    runs = runs_from(store) if is_postgres_url(store) else RunStore(store)
    view = RunsView(runs, token=token, pipeline=pipeline, load=load)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:

            async def stop() -> None:
                async for _ in signals:
                    return

            async with trio.open_nursery() as nursery:
                binds = await nursery.start(
                    functools.partial(serve, view, host=host, port=port, shutdown_trigger=stop)
                )
                where = binds[0] + "/"
                suffix = f"?token={token}" if token else ""
                print(f"serving the runs of {runs.location} at {where}{suffix}", flush=True)
                if pipeline is not None:
                    print(f"the definition {pipeline} at {where}definition{suffix}", flush=True)
                print("Ctrl-C stops", file=sys.stderr, flush=True)

    try:
        _check_free(host, port)  # (hypercorn leaves its socket open when a bind fails)
        trio.run(main)
    finally:
        runs.close()


def _check_free(host: str, port: int) -> None:
    """`OSError` when ``host:port`` cannot be bound (in use, or not this machine's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        probe.bind((host.strip("[]"), port))
