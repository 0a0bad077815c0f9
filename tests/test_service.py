"""The example Trio service (examples/service.py): runs on request, events streamed,
runs cancelled when their client goes away, graceful shutdown."""

from __future__ import annotations

import json
import math
from typing import Any

import hypercorn.config
import pytest
import trio
import trio.testing
from service import Message, PipelineService, serve

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    RunStatus,
    StageDefinition,
)
from twinklr.core.pipeline.testing import fixed, recording


class Forever:
    """A stage that runs until it is cancelled."""

    name = "forever"

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        await trio.sleep_forever()


def pipelines() -> dict[str, PipelineDefinition]:
    return {
        "add": PipelineDefinition(
            name="add",
            stages=[
                StageDefinition("a", recording(lambda x: x + 1, delay=1.0)),
                StageDefinition("b", recording(lambda x: x * 10, delay=1.0), inputs=["a"]),
            ],
        ),
        "forever": PipelineDefinition(
            name="forever",
            stages=[StageDefinition("a", fixed(1)), StageDefinition("b", Forever(), inputs=["a"])],
        ),
    }


class Client:
    """One ASGI request: what the server sent, and a way to hang up."""

    def __init__(self, method: str, path: str, body: bytes = b"") -> None:
        self.scope = {"type": "http", "method": method, "path": path}
        self.sent: list[Message] = []
        self._inbox, self._outbox = trio.open_memory_channel[Message](math.inf)
        self._inbox.send_nowait({"type": "http.request", "body": body, "more_body": False})

    async def receive(self) -> Message:
        return await self._outbox.receive()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def hang_up(self) -> None:
        self._inbox.send_nowait({"type": "http.disconnect"})

    async def call(self, service: PipelineService) -> None:
        await service(self.scope, self.receive, self.send)

    @property
    def status(self) -> int:
        status: int = self.sent[0]["status"]
        return status

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        events = []
        for message in self.sent[1:]:
            name, data = message["body"].decode().removesuffix("\n\n").split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
        return events


async def test_a_run_streams_every_event_then_its_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    service = PipelineService(pipelines())
    client = Client("POST", "/runs/add", b"4")
    async with trio.open_nursery() as runs:
        service.open(runs)
        await client.call(service)
    assert trio.current_time() == 2.0
    assert client.status == 200
    assert client.headers[b"content-type"] == b"text/event-stream"
    names = [name for name, _ in client.events()]
    assert names == [
        "run_started",
        "stage_queued",
        "stage_started",
        "stage_succeeded",
        "stage_queued",
        "stage_started",
        "stage_succeeded",
        "run_finished",
        "result",
    ]
    result = client.events()[-1][1]
    assert result["outputs"] == {"a": 5, "b": 50}
    assert result["success"]
    assert result["run_id"] == client.headers[b"x-run-id"].decode()
    assert client.sent[-1]["more_body"] is False
    assert service.runs() == [
        {"run_id": result["run_id"], "pipeline": "add", "status": "succeeded"}
    ]


async def test_a_client_going_away_cancels_its_run(autojump_clock: trio.testing.MockClock) -> None:
    service = PipelineService(pipelines())
    client = Client("POST", "/runs/forever", b"null")
    async with trio.open_nursery() as runs:
        service.open(runs)
        runs.start_soon(client.call, service)
        await trio.sleep(3.0)
        client.hang_up()
    assert trio.current_time() == 3.0  # the run ended as soon as the client left
    (handle,) = service.handles.values()
    result = await handle.wait()
    assert handle.status is RunStatus.CANCELLED
    assert result.cancelled_stages == ("b",)
    assert result.outputs == {"a": 1}


async def test_delete_cancels_a_run_another_client_follows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    service = PipelineService(pipelines())
    follower = Client("POST", "/runs/forever")
    async with trio.open_nursery() as runs:
        service.open(runs)
        runs.start_soon(follower.call, service)
        await trio.sleep(1.0)
        (run_id,) = service.handles
        canceller = Client("DELETE", f"/runs/{run_id}")
        await canceller.call(service)
        assert canceller.status == 202
    result = follower.events()[-1][1]
    assert result["cancelled"]
    assert result["error"] == "the run was cancelled"
    assert result["cancelled_stages"] == ["b"]
    assert trio.current_time() == 1.0


async def test_shutdown_cancels_every_run_and_refuses_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    service = PipelineService(pipelines())
    clients = [Client("POST", "/runs/forever") for _ in range(3)]
    async with trio.open_nursery() as runs:
        service.open(runs)
        for client in clients:
            runs.start_soon(client.call, service)
        await trio.sleep(5.0)
        service.shutdown()
        late = Client("POST", "/runs/add", b"1")
        await late.call(service)
        assert late.status == 503
    assert trio.current_time() == 5.0
    assert all(client.events()[-1][1]["cancelled"] for client in clients)
    assert {run["status"] for run in service.runs()} == {"cancelled"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "error"),
    [
        ("POST", "/runs/nope", b"", 404, "no pipeline named 'nope'"),
        ("POST", "/runs/add", b"{not json", 400, "the body is not JSON: "),
        ("DELETE", "/runs/abc", b"", 404, "no run 'abc'"),
        ("GET", "/elsewhere", b"", 404, "no route for /elsewhere"),
        ("PUT", "/runs", b"", 405, "PUT not allowed on /runs"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    method: str, path: str, body: bytes, status: int, error: str
) -> None:
    service = PipelineService(pipelines())
    client = Client(method, path, body)
    async with trio.open_nursery() as runs:
        service.open(runs)
        await client.call(service)
    assert client.status == status
    assert client.json()["error"].startswith(error)


async def test_a_service_not_yet_open_refuses_runs() -> None:
    client = Client("POST", "/runs/add", b"1")
    await client.call(PipelineService(pipelines()))
    assert client.status == 503


async def test_a_client_gone_before_its_body_starts_nothing() -> None:
    service = PipelineService(pipelines())
    client = Client("POST", "/runs/add")
    client._outbox.receive_nowait()  # the body never arrives
    client.hang_up()
    async with trio.open_nursery() as runs:
        service.open(runs)
        await client.call(service)
    assert client.sent == []
    assert service.handles == {}


async def test_contexts_are_made_per_run_and_lifespan_is_answered() -> None:
    seen: list[tuple[str, Any]] = []

    def contexts(name: str, initial_input: Any) -> PipelineContext:
        seen.append((name, initial_input))
        return PipelineContext(config={"input": initial_input})

    service = PipelineService(pipelines(), contexts=contexts)
    client = Client("POST", "/runs/add", b"2")
    async with trio.open_nursery() as runs:
        service.open(runs)
        await client.call(service)
    assert seen == [("add", 2)]
    sent: list[Message] = []
    lifespan = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])

    async def receive() -> Message:
        return next(lifespan)

    async def send(message: Message) -> None:
        sent.append(message)

    await service({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


async def _read_until(stream: trio.SocketStream, marker: bytes, seen: bytearray) -> None:
    while marker not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"connection closed before {marker!r}; got {bytes(seen)!r}"
        seen.extend(chunk)


async def _post(address: str, path: str, body: bytes) -> trio.SocketStream:
    host, port = address.removeprefix("http://").rsplit(":", 1)
    stream = await trio.open_tcp_stream(host, int(port))
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    await stream.send_all(request + body)
    return stream


async def test_over_http_with_hypercorn() -> None:
    """The real server, on the real clock (nothing here is about time; the deadline is
    a safety net)."""
    service = PipelineService(pipelines())
    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    stop = trio.Event()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(
                lambda task_status: serve(
                    service, config, shutdown_trigger=stop.wait, task_status=task_status
                )
            )
            # A client that leaves once the endless stage has started: its run is cancelled.
            leaving = await _post(address, "/runs/forever", b"0")
            seen = bytearray()
            await _read_until(leaving, b'"stage": "b"', seen)
            assert seen.startswith(b"HTTP/1.1 200")
            await leaving.aclose()
            (first,) = service.handles.values()
            result = await first.wait()
            assert result.cancelled_stages == ("b",)
            # A client still listening at shutdown: its stream ends with the result.
            staying = await _post(address, "/runs/forever", b"0")
            seen = bytearray()
            await _read_until(staying, b'"stage": "b"', seen)
            stop.set()
            await _read_until(staying, b"event: result", seen)
            await _read_until(staying, b"\r\n0\r\n\r\n", seen)  # the chunked body ended
            await staying.aclose()
    assert {handle.status for handle in service.handles.values()} == {RunStatus.CANCELLED}
    assert b'"cancelled": true' in seen


async def test_only_the_most_recent_finished_runs_are_remembered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    service = PipelineService(pipelines(), keep_finished=2)
    async with trio.open_nursery() as runs:
        service.open(runs)
        for value in range(5):
            await Client("POST", "/runs/add", str(value).encode()).call(service)
        follower = Client("POST", "/runs/forever")
        runs.start_soon(follower.call, service)
        await trio.sleep(1)
        assert len(service.handles) == 3  # the two latest finished, and the running one
        follower.hang_up()
    assert [run["status"] for run in service.runs()] == ["succeeded", "cancelled"]
