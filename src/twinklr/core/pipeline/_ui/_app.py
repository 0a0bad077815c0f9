"""The web view's ASGI application: its pages, the JSON API they use, server-sent events
read from the store, and the checks that keep it safe.

Safe by default: without a token only a loopback ``Host`` is answered (a page on another
site cannot reach it through DNS rebinding); with a token every request needs it (a
``Bearer`` header, or ``?token=`` once, which sets a same-site cookie). The view is
read-only but for cancelling a run this process started (`RunsView.track`), which needs
the token or a same-origin request. Pages are static: the script fills them with
``textContent``, never markup, and the content security policy allows no inline code.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from .._base import _graph
from .._engine._handle import RunHandle, RunStatus
from .._observe._contract import RunStoreProtocol
from .._observe._reading import parse_limit
from .._observe._records import RUN_STATES, run_json
from ._definition_page import DefinitionSource, Loader
from ._gates import AnswerError, answer, live, waiting_now
from ._guard import Guard, same_origin

STATIC = Path(__file__).parent / "static"
#: Seconds between two reads of the store by an open event stream: a stage's end
#: written by another process shows on the page within this plus the writer's interval.
POLL_S = 0.2
#: Seconds between two checks of a shown definition's file.
RELOAD_POLL_S = 0.5
#: Seconds of silence after which an event stream sends a comment (keeps proxies open).
KEEPALIVE_S = 15.0
#: The most of one stream's text a run's page shows (its end: a long answer's latest).
STREAMED_CHARS = 20_000


class RunsView:
    """The web view of a run store, as an ASGI application.

    ``token``: when given, every request must carry it. ``pipeline`` and ``load``: a
    ``module:attr`` definition to show at ``/definition`` and how to load it (the CLI's
    loader), reloaded when its file changes. Runs this process starts can be cancelled
    from their page once given to `track`.
    """

    def __init__(
        self,
        store: RunStoreProtocol,
        *,
        token: str | None = None,
        pipeline: str | None = None,
        load: Loader | None = None,
    ) -> None:
        self.store = store
        self.token = token
        self.handles: dict[str, RunHandle] = {}
        self.definition = (
            DefinitionSource(pipeline, load) if pipeline is not None and load else None
        )
        routes = [
            Route("/", self._page("runs.html")),
            Route("/runs/{run_id}", self._page("run.html")),
            Route("/definition", self._definition_page),
            Route("/api/runs", self._runs),
            Route("/api/runs/{run_id}", self._run),
            Route("/api/runs/{run_id}/events", self._run_events),
            Route("/api/runs/{run_id}/cancel", self._cancel, methods=["POST"]),
            Route("/api/runs/{run_id}/respond", self._respond, methods=["POST"]),
            Route("/api/definition", self._definition),
            Route("/api/definition/events", self._definition_events),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        self.app = Starlette(
            routes=routes, middleware=[Middleware(Guard, token=lambda: self.token)]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def track(self, handle: RunHandle) -> None:
        """Offer a cancel button on the page of this run (one this process started)."""
        self.handles[handle.run_id] = handle

    # -- pages -------------------------------------------------------------------------

    def _page(self, name: str) -> Callable[[Request], Awaitable[Response]]:
        async def page(_request: Request) -> Response:
            return FileResponse(STATIC / name, media_type="text/html")

        return page

    async def _definition_page(self, request: Request) -> Response:
        if self.definition is None:
            return _not_found("no definition is shown: start the view with --pipeline")
        return FileResponse(STATIC / "definition.html", media_type="text/html")

    # -- the API -----------------------------------------------------------------------

    async def _runs(self, request: Request) -> Response:
        query = request.query_params
        status = query.get("status") or None
        try:
            limit = parse_limit(query.get("limit", "100"))
        except ValueError as exc:
            return _bad_request(str(exc))
        if status not in (None, *RUN_STATES):
            return _bad_request(f"no such status: {status!r}")
        records = await anyio.to_thread.run_sync(
            lambda: self.store.runs(
                pipeline=query.get("pipeline") or None,
                status=status,
                limit=limit,
            )
        )
        return JSONResponse([record.as_json() for record in records])

    async def _run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        payload = await self._payload(run_id)
        if payload is None:
            return _not_found(f"no run {run_id!r}")
        return JSONResponse(payload)

    def payload(self, run_id: str) -> dict[str, Any] | None:
        """``/api/runs/{run_id}``: the run, its stages, its graph and critical path, and
        the gates waiting for input (read from the store: any thread)."""
        record = self.store.get(run_id)
        if record is None:
            return None
        stages = self.store.stages(record.run_id)
        graph = self.store.graph(record.run_id) or {"stages": []}
        payload = run_json(record, stages)
        payload["graph"] = graph["stages"]
        payload["critical_path"] = _critical_path(graph["stages"], payload["stages"])
        payload["waiting"] = self.store.waiting(record.run_id)
        payload["segments"] = self.store.segments(record.run_id)  # (a resumed run's)
        return payload

    async def _payload(self, run_id: str) -> dict[str, Any] | None:
        """`payload`, read in a worker thread, and whether its page may cancel it (read
        here, on the event loop's thread, where the handles live)."""
        payload = await anyio.to_thread.run_sync(self.payload, run_id)
        if payload is not None:
            handle = self.handles.get(payload["run_id"])
            payload["cancellable"] = live(handle, payload["status"])
            if handle is not None and payload["cancellable"]:  # its gates as they are now
                payload["waiting"] = waiting_now(handle)
            payload["streamed"] = [
                {
                    "stage_id": stage_id,
                    "item": item,
                    "text": text if len(text) <= STREAMED_CHARS else "…" + text[-STREAMED_CHARS:],
                }
                for (stage_id, item), text in (handle.streamed() if handle else {}).items()
            ]
        return payload

    async def _run_events(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        first = await self._payload(run_id)
        if first is None:
            return _not_found(f"no run {run_id!r}")

        async def stream() -> AsyncIterator[str]:
            payload: dict[str, Any] | None = first
            last, quiet = "", 0.0
            while payload is not None:
                text = json.dumps(payload)
                if text != last:
                    yield f"event: run\ndata: {text}\n\n"
                    last, quiet = text, 0.0
                elif quiet >= KEEPALIVE_S:
                    yield ": still here\n\n"
                    quiet = 0.0
                if payload["status"] != "running":
                    yield "event: end\ndata: {}\n\n"
                    return
                await anyio.sleep(POLL_S)
                quiet += POLL_S
                payload = await self._payload(run_id)

        return _event_stream(stream())

    def _tracked(self, request: Request, doing: str) -> RunHandle | Response:
        """The handle of the run a write request (cancel, respond) is for, or why not:
        it needs the token or a same-origin request, and a run this process tracks."""
        refused = self._refused(request, doing)
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        handle = self.handles.get(run_id)
        if handle is None:
            return _not_found(f"run {run_id!r} was not started by this process")
        return handle

    def _refused(self, request: Request, doing: str) -> Response | None:
        """Why a write request may not be made: without a token, only from the page."""
        if self.token is None and not same_origin(request):
            return JSONResponse({"error": f"{doing} needs a same-origin request"}, 403)
        return None

    async def _cancel(self, request: Request) -> Response:
        handle = self._tracked(request, "cancelling")
        if isinstance(handle, Response):
            return handle
        run_id = handle.run_id
        if handle.status is not RunStatus.RUNNING:
            return JSONResponse({"error": f"run {run_id!r} has already ended"}, 409)
        handle.cancel()
        return JSONResponse({"run_id": run_id, "cancelled": True}, 202)

    async def _respond(self, request: Request) -> Response:
        """Answer a gate of any recorded run: ``{"stage_id", "action": "approve" |
        "reject" | "edit", "value"}`` (approve gives the gate its input, reject None,
        edit ``value``), through the run's handle when this process tracks it, else
        through the run store (see `_gates`)."""
        refused = self._refused(request, "answering")
        if refused is not None:
            return refused
        run_id = request.path_params["run_id"]
        try:
            body = await request.json()
        except ValueError:
            return _bad_request("the body must be JSON: {stage_id, action, value}")
        record = await anyio.to_thread.run_sync(self.store.get, run_id)
        handle = self.handles.get(record.run_id if record else run_id)
        if record is None and handle is None:
            return _not_found(f"no run {run_id!r}")
        try:
            answered = await answer(handle, self.store, record.run_id if record else run_id, body)
        except AnswerError as exc:
            return JSONResponse({"error": str(exc)}, exc.status)
        answered["answered_at"] = dt.datetime.now(dt.UTC).isoformat()
        return JSONResponse(answered, 202)

    async def _definition(self, request: Request) -> Response:
        if self.definition is None:
            return _not_found("no definition is shown: start the view with --pipeline")
        shown = await anyio.to_thread.run_sync(self.definition.current)
        return JSONResponse(shown)

    async def _definition_events(self, request: Request) -> Response:
        source = self.definition
        if source is None:
            return _not_found("no definition is shown: start the view with --pipeline")

        async def stream() -> AsyncIterator[str]:
            last = ""
            while True:
                shown = await anyio.to_thread.run_sync(source.current)
                text = json.dumps(shown)
                if text != last:
                    yield f"event: definition\ndata: {text}\n\n"
                    last = text
                await anyio.sleep(RELOAD_POLL_S)

        return _event_stream(stream())


def _critical_path(graph: list[dict[str, Any]], stages: list[dict[str, Any]]) -> list[str]:
    finished = {
        stage["id"]: stage["finished_ms"]
        for stage in stages
        if stage["finished_ms"] is not None and stage["status"] not in ("skipped", "cancelled")
    }
    ids = [stage["id"] for stage in graph if stage["id"] in finished]
    index = {stage_id: i for i, stage_id in enumerate(ids)}
    deps = [
        [index[name] for name in stage["inputs"] if name in index]
        for stage in graph
        if stage["id"] in finished
    ]
    order = _graph.topological_order(deps)
    if order is None:  # pragma: no cover (a recorded run's definition was valid)
        return []
    path = _graph.critical_path(deps, order, lambda i: finished[ids[i]])
    return [ids[i] for i in path]


def _event_stream(events: AsyncIterator[str]) -> Response:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _not_found(message: str) -> Response:
    return JSONResponse({"error": message}, 404)


def _bad_request(message: str) -> Response:
    return JSONResponse({"error": message}, 400)
