"""An asyncio web service (Starlette on uvicorn) that runs pipelines on request and
streams their events: the asyncio twin of ``service.py``.

    POST   /runs/<pipeline>   JSON input in the body; answers with a server-sent event
                              stream: every event of the run, then a ``result`` event
    GET    /runs              JSON: every run the service knows, with its status
    DELETE /runs/<run_id>     cancel a run (202), 404 if unknown

Runs are started with ``aio.start`` on the server's own asyncio loop: the pipeline's
Trio executor runs there too (Trio in guest mode), and concurrent requests share one
Trio run and one rate limiter. The stages of ``lyrics`` are plain asyncio code; the
sequencer's are Trio code (``stage_loop="trio"``). A client that goes away cancels its
run.

    pip install starlette uvicorn
    python examples/asyncio_service.py
    curl -N -X POST localhost:8000/runs/lyrics -d '"Carol of the Bells"'
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineEvent,
    PipelineResult,
    RateLimiter,
    StageDefinition,
    aio,
    example_usage,
)

Contexts = Callable[[str, Any], PipelineContext]


def create_app(
    pipelines: Mapping[str, PipelineDefinition],
    *,
    contexts: Contexts | None = None,
    stage_loops: Mapping[str, aio.Loop] | None = None,
    keep_finished: int = 100,
) -> Starlette:
    """A Starlette app running ``pipelines`` by name. ``contexts`` makes a run's
    context from its pipeline's name and input; ``stage_loops`` names the pipelines
    whose unmarked stages are Trio code (``"trio"``; the default is asyncio)."""
    handles: dict[str, aio.AsyncioRunHandle] = {}
    finished: deque[str] = deque()

    async def start(request: Request) -> Response:
        name = request.path_params["pipeline"]
        pipeline = pipelines.get(name)
        if pipeline is None:
            return JSONResponse({"error": f"no pipeline named {name!r}"}, status_code=404)
        body = await request.body()
        try:
            value = json.loads(body) if body else None
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not JSON: {exc}"}, status_code=400)
        context = contexts(name, value) if contexts is not None else None
        loop = (stage_loops or {}).get(name, "asyncio")
        handle = await aio.start(pipeline, value, context, stage_loop=loop)
        handles[handle.run_id] = handle
        return StreamingResponse(
            _stream(request, handle, lambda: forget(handle.run_id)),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-run-id": handle.run_id},
        )

    def forget(run_id: str) -> None:
        finished.append(run_id)
        while len(finished) > keep_finished:
            handles.pop(finished.popleft(), None)

    async def runs(_: Request) -> Response:
        return JSONResponse(
            [
                {"run_id": run_id, "pipeline": handle.pipeline, "status": handle.status.value}
                for run_id, handle in handles.items()
            ]
        )

    async def cancel(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        handle = handles.get(run_id)
        if handle is None:
            return JSONResponse({"error": f"no run {run_id!r}"}, status_code=404)
        handle.cancel()
        return JSONResponse({"run_id": run_id, "status": "cancelling"}, status_code=202)

    return Starlette(
        routes=[
            Route("/runs", runs, methods=["GET"]),
            Route("/runs/{pipeline}", start, methods=["POST"]),
            Route("/runs/{run_id}", cancel, methods=["DELETE"]),
        ]
    )


async def _stream(
    request: Request, handle: aio.AsyncioRunHandle, done: Callable[[], None]
) -> AsyncIterator[str]:
    """Every event of the run as it happens, then its result; a client that hangs up
    cancels the run."""
    watcher = asyncio.create_task(_cancel_on_disconnect(request, handle))
    try:
        async for event in handle.events():
            yield _sse(event.kind.value, _event_fields(event))
        yield _sse("result", _result_fields(await handle.wait()))
    finally:
        watcher.cancel()
        handle.cancel()  # the client went away mid-stream (after the end: nothing to do)
        done()


async def _cancel_on_disconnect(request: Request, handle: aio.AsyncioRunHandle) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    handle.cancel()


def _sse(kind: str, fields: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(fields, default=str)}\n\n"


def _event_fields(event: PipelineEvent) -> dict[str, Any]:
    fields = {"time_ms": event.time_ms, "stage": event.stage}
    for name in ("item", "attempt", "error", "done", "total", "success", "text"):
        value = getattr(event, name)
        if value is not None:
            fields[name] = value
    return fields


def _result_fields(result: PipelineResult) -> dict[str, Any]:
    return {
        "success": result.success,
        "cancelled": result.cancelled,
        "error": result.error,
        "outputs": dict(result.outputs),
    }


# -- the demo's pipelines ----------------------------------------------------------------


async def verses(title: str) -> list[str]:
    """Asyncio code: a lyrics lookup would be an HTTP call here."""
    await asyncio.sleep(0.01)
    return [f"{title}, verse {number}" for number in range(1, 5)]


async def score(verse: str, context: PipelineContext) -> int:
    """One rate-limited call per verse, shared by every request's run."""
    async with context.limiter().acquire(tokens=len(verse.split())):
        await asyncio.sleep(0.005)
    return len(verse)


def demo_pipelines() -> dict[str, PipelineDefinition]:
    lyrics = PipelineDefinition(
        "lyrics",
        [
            StageDefinition("verses", verses),
            StageDefinition("scores", score, inputs=["verses"], pattern=ExecutionPattern.FAN_OUT),
        ],
    )
    return {"lyrics": lyrics, "sequencer": example_usage.build_pipeline()}


def demo_contexts(limiter: RateLimiter) -> Contexts:
    def make(name: str, value: Any) -> PipelineContext:
        if name == "sequencer":
            return example_usage.demo_context(str(value))
        return PipelineContext(rate_limiter=limiter)

    return make


def main() -> None:
    limiter = RateLimiter(requests_per_minute=600)
    app = create_app(
        demo_pipelines(), contexts=demo_contexts(limiter), stage_loops={"sequencer": "trio"}
    )
    uvicorn.run(app, host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
