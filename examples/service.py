"""A Trio HTTP service that runs pipelines on request and streams their events.

    POST   /runs/<pipeline>   JSON input in the body; answers with a server-sent event
                              stream: every event of the run, then a ``result`` event
    GET    /runs              JSON: every run the service knows, with its status
    DELETE /runs/<run_id>     cancel a run (202), 404 if unknown

A run lives in the service's own nursery, not in the request's task; the request
follows it through ``handle.events()``. When the client goes away the run is cancelled.
Shutdown (Ctrl-C, SIGTERM, or the ``shutdown_trigger`` given to :func:`serve`) refuses
new runs, cancels every running one, lets the open streams send their final ``result``
and waits for all of it before returning.

Served by hypercorn on Trio (``pip install hypercorn``); any ASGI server on Trio works.
Run the demo pipeline: ``python examples/service.py`` then
``curl -N -X POST localhost:8000/runs/sequencer -d '"Carol of the Bells"'``.
"""

from __future__ import annotations

import json
import logging
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import hypercorn.config
import hypercorn.trio
import structlog
import trio

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineEvent,
    PipelineExecutor,
    PipelineResult,
    RunHandle,
)

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class PipelineService:
    """An ASGI application running the ``pipelines`` it is given, by name.

    ``contexts`` makes the context for a run of a pipeline from its input (a fresh
    :class:`PipelineContext` when not given). A handle keeps its run's events, so the
    service remembers only the ``keep_finished`` most recent finished runs (running ones
    are always kept). Call :meth:`open` (or use :func:`serve`) before serving requests.
    """

    def __init__(
        self,
        pipelines: Mapping[str, PipelineDefinition],
        *,
        executor: PipelineExecutor | None = None,
        contexts: Callable[[str, Any], PipelineContext] | None = None,
        keep_finished: int = 100,
    ) -> None:
        self.pipelines = dict(pipelines)
        self.executor = executor if executor is not None else PipelineExecutor()
        self.contexts = contexts
        self.keep_finished = keep_finished
        self.handles: dict[str, RunHandle] = {}
        self._finished: deque[str] = deque()
        self._runs: trio.Nursery | None = None
        self._closing = False

    def open(self, runs: trio.Nursery) -> None:
        """Start runs in ``runs`` from now on."""
        self._runs = runs
        self._closing = False

    def shutdown(self) -> None:
        """Refuse new runs and cancel every running one (returns at once)."""
        self._closing = True
        for handle in self.handles.values():
            handle.cancel()

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """The ASGI entry point."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        method, parts = scope["method"], scope["path"].strip("/").split("/")
        if parts[0] != "runs" or len(parts) > 2:  # noqa: PLR2004 (/runs/<name>)
            await _respond(send, 404, {"error": f"no route for {scope['path']}"})
        elif method == "GET" and len(parts) == 1:
            await _respond(send, 200, self.runs())
        elif method == "POST" and len(parts) == 2:  # noqa: PLR2004
            await self._run(parts[1], receive, send)
        elif method == "DELETE" and len(parts) == 2:  # noqa: PLR2004
            await self._cancel(parts[1], send)
        else:
            await _respond(send, 405, {"error": f"{method} not allowed on {scope['path']}"})

    def runs(self) -> list[dict[str, str]]:
        """Every run the service has started, with its status."""
        return [
            {"run_id": run_id, "pipeline": handle.pipeline, "status": handle.status.value}
            for run_id, handle in self.handles.items()
        ]

    async def _run(self, name: str, receive: Receive, send: Send) -> None:
        pipeline = self.pipelines.get(name)
        if pipeline is None:
            await _respond(send, 404, {"error": f"no pipeline named {name!r}"})
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its input
        try:
            initial_input = json.loads(body) if body else None
        except ValueError as exc:
            await _respond(send, 400, {"error": f"the body is not JSON: {exc}"})
            return
        if self._runs is None or self._closing:
            await _respond(send, 503, {"error": "the service is shutting down"})
            return
        context = self.contexts(name, initial_input) if self.contexts is not None else None
        handle = await self.executor.start(self._runs, pipeline, initial_input, context)
        self.handles[handle.run_id] = handle
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                    (b"x-run-id", handle.run_id.encode()),
                ],
            }
        )
        try:
            async with trio.open_nursery() as request:
                request.start_soon(_cancel_on_disconnect, receive, handle, request.cancel_scope)
                async for event in handle.events():
                    await _send_event(send, event.kind.value, _event_fields(event))
                result = await handle.wait()
                await _send_event(send, "result", _result_fields(result), last=True)
                request.cancel_scope.cancel()
        finally:
            self._forget_old(handle.run_id)

    def _forget_old(self, run_id: str) -> None:
        """``run_id``'s request is over: keep only the most recent finished runs."""
        self._finished.append(run_id)
        while len(self._finished) > self.keep_finished:
            self.handles.pop(self._finished.popleft(), None)

    async def _cancel(self, run_id: str, send: Send) -> None:
        handle = self.handles.get(run_id)
        if handle is None:
            await _respond(send, 404, {"error": f"no run {run_id!r}"})
            return
        handle.cancel()
        await _respond(send, 202, {"run_id": run_id, "status": "cancelling"})


async def _cancel_on_disconnect(
    receive: Receive, handle: RunHandle, scope: trio.CancelScope
) -> None:
    """The client went away: nobody wants the run any more."""
    while (await receive())["type"] != "http.disconnect":
        pass
    handle.cancel()
    scope.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body; None when the client went away first."""
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        body += chunk
        if not message.get("more_body", False):
            return body


async def _respond(send: Send, status: int, payload: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


async def _send_event(
    send: Send, name: str, fields: Mapping[str, Any], *, last: bool = False
) -> None:
    data = json.dumps(fields, default=repr)
    await send(
        {
            "type": "http.response.body",
            "body": f"event: {name}\ndata: {data}\n\n".encode(),
            "more_body": not last,
        }
    )


def _event_fields(event: PipelineEvent) -> dict[str, Any]:
    return {"run_id": event.run_id, "time_ms": event.time_ms, **event.as_log_fields()}


def _result_fields(result: PipelineResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "success": result.success,
        "cancelled": result.cancelled,
        "error": result.error,
        "outputs": dict(result.outputs),
        "cancelled_stages": list(result.cancelled_stages),
        "total_duration_ms": result.total_duration_ms,
    }


async def serve(
    service: PipelineService,
    config: hypercorn.config.Config,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``service`` with hypercorn until ``shutdown_trigger`` returns (forever when
    None), then shut down gracefully: new runs refused, every run cancelled, open
    streams finished, every run waited for. ``task_status`` receives the bound
    addresses once the server listens."""

    async def shut_down() -> None:
        await (shutdown_trigger or trio.sleep_forever)()
        service.shutdown()

    async with trio.open_nursery() as runs:
        service.open(runs)
        await hypercorn.trio.serve(
            service,  # type: ignore[arg-type] # (our own minimal ASGI types)
            config,
            shutdown_trigger=shut_down,
            task_status=task_status,
            mode="asgi",
        )
        service.shutdown()  # the server stopped for another reason: runs end with it


async def _signalled() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


def main() -> None:
    """Serve the demo sequencer pipeline on localhost:8000 until Ctrl-C."""
    from twinklr.core.pipeline.example_usage import build_pipeline, demo_context  # noqa: PLC0415

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    service = PipelineService(
        {"sequencer": build_pipeline()},
        contexts=lambda _name, song: demo_context(str(song)),
    )
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:8000"]
    trio.run(lambda: serve(service, config, shutdown_trigger=_signalled))


if __name__ == "__main__":
    main()
