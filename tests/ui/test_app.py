"""The web view's application, in process: its JSON API, its event streams, and the
checks that keep it safe (token, loopback Host, same-origin cancel, headers)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from conftest import stub
from fixtures.postgres import fresh_schema, postgres
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    PostgresRunStore,
    RunStore,
    StageDefinition,
)
from twinklr.core.pipeline.definition import load_definition as load_pipeline
from twinklr.core.pipeline.ui import RunsView

LOCAL = "http://127.0.0.1:8000"
__all__ = ["postgres"]  # (the fixture)


def client(view: RunsView, base: str = LOCAL) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=view), base_url=base)


async def stream(view: RunsView, path: str) -> AsyncIterator[dict[str, Any]]:
    """The ``data`` of each event ``view`` sends on ``path``, as it sends them (httpx's
    ASGI transport would wait for the whole body)."""
    send_chunk, receive_chunk = trio.open_memory_channel[bytes](100)
    disconnected = trio.Event()

    async def receive() -> dict[str, Any]:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            await send_chunk.send(message.get("body", b""))
            if not message.get("more_body", False):
                await send_chunk.aclose()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    async with trio.open_nursery() as nursery:
        nursery.start_soon(view, scope, receive, send)  # type: ignore[arg-type]
        buffer = b""
        async for chunk in receive_chunk:
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.decode().splitlines():
                    if line.startswith('data: {"'):
                        yield json.loads(line.removeprefix("data: "))
        disconnected.set()


async def failing(value: int) -> int:
    raise ValueError(f"no luck with {value}")


@pytest.fixture(params=["sqlite", "postgres"])
async def recorded(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[RunStore, str, str]]:
    """A store with a succeeded run and a failed one (ids: ok, bad): a SQLite file, and
    the run store several hosts share (the view reads either through the protocol)."""
    if request.param == "sqlite":
        store = RunStore(tmp_path)
    else:
        pytest.importorskip("psycopg")
        dsn = request.getfixturevalue("postgres")
        store = PostgresRunStore(dsn, schema=fresh_schema())
    executor = PipelineExecutor(runs=store)
    ok = await executor.execute(
        PipelineDefinition(
            "good",
            [
                StageDefinition("a", stub(1)),
                StageDefinition("b", stub(2), inputs=["a"]),
                StageDefinition("c", stub(3), inputs=["a"]),
            ],
        )
    )
    bad = await executor.execute(
        PipelineDefinition(
            "bad", [StageDefinition("a", stub(7)), StageDefinition("b", failing, inputs=["a"])]
        )
    )
    yield store, ok.run_id, bad.run_id
    store.close()


async def test_the_runs_api_lists_newest_first_and_filters(
    recorded: tuple[RunStore, str, str],
) -> None:
    store, ok, bad = recorded
    async with client(RunsView(store)) as http:
        listed = (await http.get("/api/runs")).json()
        assert [run["run_id"] for run in listed] == [bad, ok]
        for run in listed:
            assert {"run_id", "pipeline", "status", "started_at", "finished_at"} <= set(run)
        only = (await http.get("/api/runs", params={"status": "failed"})).json()
        assert [run["run_id"] for run in only] == [bad]
        named = (await http.get("/api/runs", params={"pipeline": "good"})).json()
        assert [run["run_id"] for run in named] == [ok]
        assert (await http.get("/api/runs", params={"limit": "1"})).json()[0]["run_id"] == bad
        for bad_limit in ("none", "0", "-1", "\u00b2", "1" * 23):
            refused = await http.get("/api/runs", params={"limit": bad_limit})
            assert refused.status_code == 400, bad_limit
            assert "limit" in refused.json()["error"]
        assert (await http.get("/api/runs", params={"status": "odd"})).status_code == 400


async def test_a_run_comes_with_its_stages_graph_and_critical_path(
    recorded: tuple[RunStore, str, str],
) -> None:
    store, ok, bad = recorded
    async with client(RunsView(store)) as http:
        run = (await http.get(f"/api/runs/{bad}")).json()
        assert (run["run_id"], run["status"], run["pipeline"]) == (bad, "failed", "bad")
        assert [(s["id"], s["status"], s["attempts"]) for s in run["stages"]] == [
            ("a", "succeeded", 1),
            ("b", "failed", 1),
        ]
        failed = run["stages"][1]
        assert failed["error"] == "ValueError: no luck with 7"
        assert "in failing" in failed["traceback"]
        assert [(s["id"], s["inputs"]) for s in run["graph"]] == [("a", []), ("b", ["a"])]
        assert run["critical_path"] == ["a", "b"]
        assert run["cancellable"] is False
        assert (await http.get(f"/api/runs/{ok[:5]}")).json()["run_id"] == ok  # a prefix
        missing = await http.get("/api/runs/nothing-here")
        assert missing.status_code == 404
        assert "nothing-here" in missing.json()["error"]


async def test_a_finished_runs_event_stream_sends_it_once_then_ends(
    recorded: tuple[RunStore, str, str],
) -> None:
    store, ok, _ = recorded
    async with client(RunsView(store)) as http:
        response = await http.get(f"/api/runs/{ok}/events")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    assert [block.splitlines()[0] for block in events] == ["event: run", "event: end"]
    sent = json.loads(events[0].splitlines()[1].removeprefix("data: "))
    assert sent["status"] == "succeeded"
    async with client(RunsView(store)) as http:
        assert (await http.get("/api/runs/nope/events")).status_code == 404


async def test_a_running_runs_stream_follows_it_until_it_ends(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    gate = trio.Event()

    async def waits(value: int) -> int:
        await gate.wait()
        return value

    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", stub(1)), StageDefinition("b", waits, inputs=["a"])]
    )
    view = RunsView(store)
    seen: list[list[str]] = []
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        view.track(handle)
        for _ in range(1000):  # until the store shows the first stage's end
            await trio.sleep(0.25)
            stages = await trio.to_thread.run_sync(store.stages, handle.run_id)
            if [s.status for s in stages] == ["succeeded", "running"]:
                break

        async def follow() -> None:
            async for run in stream(view, f"/api/runs/{handle.run_id}/events"):
                seen.append([s["status"] for s in run["stages"]])
                if run["status"] == "running" and not gate.is_set():
                    assert run["cancellable"] is True  # (the handle may end before its row)
                    gate.set()

        nursery.start_soon(follow)
    assert seen[0] == ["succeeded", "running"]
    assert seen[-1] == ["succeeded", "succeeded"]


async def test_cancel_works_for_a_tracked_run_from_the_same_origin_only(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    pipeline = PipelineDefinition("p", [StageDefinition("forever", stub(1, delay=10**6))])
    view = RunsView(store)
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        view.track(handle)
        url = f"/api/runs/{handle.run_id}/cancel"
        async with client(view) as http:
            assert (await http.get(url)).status_code == 405  # read-only: only POST cancels
            cross = await http.post(url, headers={"Origin": "http://evil.example"})
            assert cross.status_code == 403
            assert handle.result is None
            same = await http.post(url, headers={"Origin": LOCAL})
            assert same.status_code == 202
            result = await handle.wait()
            assert result.cancelled
            again = await http.post(url, headers={"Origin": LOCAL})
            assert again.status_code == 409
            other = await http.post("/api/runs/unknown/cancel", headers={"Origin": LOCAL})
            assert other.status_code == 404


async def test_without_a_token_only_loopback_host_names_are_answered(
    recorded: tuple[RunStore, str, str],
) -> None:
    store, _, _ = recorded
    view = RunsView(store)
    loopback = ("127.0.0.1", "127.0.0.2", "localhost", "[::1]")  # where check_bind lets it bind
    for base in (f"http://{host}:8000" for host in loopback):
        async with client(view, base) as http:
            assert (await http.get("/api/runs")).status_code == 200, base
    for other in ("rebound.example", "10.1.2.3", "127.0.0.1.rebound.example"):
        async with client(view, f"http://{other}:8000") as http:
            refused = await http.get("/api/runs")
        assert refused.status_code == 403
        assert "loopback" in refused.json()["error"]


async def test_with_a_token_every_request_needs_it(recorded: tuple[RunStore, str, str]) -> None:
    store, _, _ = recorded
    view = RunsView(store, token="s3cret")  # noqa: S106
    async with client(view, "http://10.1.2.3:8000") as http:
        assert (await http.get("/api/runs")).status_code == 401
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/static/app.js")).status_code == 401
        wrong = await http.get("/api/runs", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bearer = await http.get("/api/runs", headers={"Authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
    async with client(view, "http://10.1.2.3:8000") as http:
        page = await http.get("/", params={"token": "s3cret"})
        assert page.status_code == 200
        cookie = page.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert (await http.get("/api/runs")).status_code == 200  # the cookie carries it


async def test_every_response_carries_the_safety_headers(
    recorded: tuple[RunStore, str, str],
) -> None:
    store, ok, _ = recorded
    async with client(RunsView(store)) as http:
        for path in ("/", f"/runs/{ok}", "/api/runs", "/static/app.js", "/api/runs/x"):
            headers = (await http.get(path)).headers
            policy = headers["content-security-policy"]
            assert "script-src 'self'" in policy, path
            assert "unsafe-inline" not in policy
            assert headers["x-content-type-options"] == "nosniff"
        page = await http.get(f"/runs/{ok}")
        assert page.headers["content-type"].startswith("text/html")
        assert "dagre.min.js" in page.text  # the layout library, from the package
        assert (await http.get("/static/dagre.min.js")).status_code == 200


async def test_the_definition_page_needs_a_definition(recorded: tuple[RunStore, str, str]) -> None:
    store, _, _ = recorded
    async with client(RunsView(store)) as http:
        assert (await http.get("/definition")).status_code == 404
        assert (await http.get("/api/definition")).status_code == 404
        assert (await http.get("/api/definition/events")).status_code == 404


async def test_a_definition_shows_its_problems_on_the_stages_and_reloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "shown_pipeline.py"
    module.write_text(
        textwrap.dedent(
            """
            from twinklr.core.pipeline import PipelineDefinition, StageDefinition

            async def echo(value):
                return value

            pipeline = PipelineDefinition("looped", [
                StageDefinition("a", echo, inputs=["c"]),
                StageDefinition("b", echo, inputs=["a"]),
                StageDefinition("c", echo, inputs=["b"]),
                StageDefinition("d", echo, inputs=["ghost"]),
            ])
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    store = RunStore(tmp_path)
    view = RunsView(store, pipeline="shown_pipeline:pipeline", load=load_pipeline)
    async with client(view) as http:
        shown = (await http.get("/api/definition")).json()
        assert (shown["pipeline"], shown["error"], shown["version"]) == ("looped", None, 1)
        assert [s["id"] for s in shown["stages"]] == ["a", "b", "c", "d"]
        marked = {p["message"]: (p["kind"], p["stages"]) for p in shown["problems"]}
        (cycle,) = [stages for kind, stages in marked.values() if kind == "cycle"]
        assert set(cycle) == {"a", "b", "c"}
        (ghost,) = [stages for message, (_, stages) in marked.items() if "ghost" in message]
        assert ghost == ["d"]
        assert (await http.get("/definition")).status_code == 200

        module.write_text(module.read_text().replace('inputs=["c"]', "inputs=[]"))
        bumped = module.stat().st_mtime_ns + 10**9  # a clock that did not tick between writes
        import os  # noqa: PLC0415

        os.utime(module, ns=(bumped, bumped))
        fixed = (await http.get("/api/definition")).json()
        assert fixed["version"] == 2
        assert not any("cycle" in p["message"] for p in fixed["problems"])

        module.write_text("this is not python (")
        os.utime(module, ns=(bumped + 10**9, bumped + 10**9))
        broken = (await http.get("/api/definition")).json()
        assert broken["version"] == 3
        assert broken["stages"] == []
        assert "shown_pipeline" in broken["error"]


async def test_a_tracked_runs_gate_is_answered_from_the_page(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from twinklr.core.pipeline import WaitForInput  # noqa: PLC0415

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "gated",
        [
            StageDefinition("plan", stub({"lights": 3})),
            StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
            StageDefinition("render", stub(lambda answer: answer), inputs=["approve"]),
        ],
    )
    view = RunsView(store)
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        view.track(handle)
        await trio.sleep(1)
        url = f"/api/runs/{handle.run_id}/respond"
        async with client(view) as http:
            run: dict[str, Any] = {}
            for _ in range(1000):  # until the store has the run (its thread is off the clock)
                response = await http.get(f"/api/runs/{handle.run_id}")
                if response.status_code == 200:
                    run = response.json()
                    break
                await trio.sleep(0.25)
            (waiting,) = run["waiting"]
            assert (waiting["stage_id"], waiting["prompt"]) == ("approve", "Render?")
            assert waiting["input"] == {"lights": 3}
            body = {"stage_id": "approve", "action": "edit", "value": {"lights": 4}}
            cross = await http.post(url, json=body, headers={"Origin": "http://evil.example"})
            assert cross.status_code == 403
            bad = await http.post(url, content=b"not json", headers={"Origin": LOCAL})
            assert bad.status_code == 400
            odd = await http.post(url, json={"stage_id": "approve"}, headers={"Origin": LOCAL})
            assert odd.status_code == 400
            wrong = await http.post(
                url, json={**body, "stage_id": "render"}, headers={"Origin": LOCAL}
            )
            assert wrong.status_code == 409
            assert "waiting for input: 'approve'" in wrong.json()["error"]
            done = await http.post(url, json=body, headers={"Origin": LOCAL})
            assert done.status_code == 202
            assert done.json()["answered_at"]
            result = await handle.wait()
            again = await http.post(url, json=body, headers={"Origin": LOCAL})
            assert again.status_code == 409
    assert result.outputs["render"] == {"lights": 4}
    assert result.stage_results["approve"].metadata["answered_at"]
    recorded = {stage.id: stage for stage in store.stages(handle.run_id)}
    assert (
        recorded["approve"].answered_at == result.stage_results["approve"].metadata["answered_at"]
    )


async def test_approve_gives_the_gate_its_input_and_reject_none(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from twinklr.core.pipeline import WaitForInput  # noqa: PLC0415

    outputs = []
    for action in ("approve", "reject"):
        store = RunStore(tmp_path / action)
        pipeline = PipelineDefinition(
            "gated",
            [
                StageDefinition("plan", stub("the plan")),
                StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
            ],
        )
        view = RunsView(store)
        async with trio.open_nursery() as nursery:
            handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
            view.track(handle)
            await trio.sleep(1)
            async with client(view) as http:
                answered = await http.post(
                    f"/api/runs/{handle.run_id}/respond",
                    json={"stage_id": "approve", "action": action},
                    headers={"Origin": LOCAL},
                )
                assert answered.status_code == 202
            outputs.append((await handle.wait()).outputs["approve"])
    assert outputs == ["the plan", None]


async def test_a_tracked_runs_payload_has_what_its_llm_calls_streamed(tmp_path: Path) -> None:
    from twinklr.core.pipeline._ui._app import STREAMED_CHARS  # noqa: PLC0415
    from twinklr.core.pipeline._values._usage import record_streamed  # noqa: PLC0415

    store = RunStore(tmp_path)
    gate = trio.Event()

    async def narrate(_value: Any) -> str:
        record_streamed("Twinkle the ")  # (what a provider's stream says of each piece)
        await gate.wait()
        record_streamed("x" * STREAMED_CHARS)
        return "done"

    view = RunsView(store)
    async with trio.open_nursery() as nursery, client(view) as http:
        pipeline = PipelineDefinition("p", [StageDefinition("narrate", narrate)])
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        view.track(handle)
        for _ in range(1000):  # until the run is recorded and its text sent (50 ms)
            await trio.sleep(0.01)
            if await trio.to_thread.run_sync(store.get, handle.run_id):
                running = (await http.get(f"/api/runs/{handle.run_id}")).json()
                if running["streamed"]:
                    break
        streamed = {"stage_id": "narrate", "item": None, "text": "Twinkle the "}
        assert running["streamed"] == [streamed]
        assert running["status"] == "running"
        gate.set()
        await handle.wait()
        ended = (await http.get(f"/api/runs/{handle.run_id}")).json()
    (shown,) = ended["streamed"]
    assert shown["text"] == "…" + "x" * STREAMED_CHARS  # the end of a long one
    async with client(RunsView(store)) as http:  # a run this view does not track
        assert (await http.get(f"/api/runs/{handle.run_id}")).json()["streamed"] == []
    store.close()


async def test_an_untracked_runs_typed_gate_is_shown_and_answered_through_the_store(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    import pydantic  # noqa: PLC0415

    from twinklr.core.pipeline import WaitForInput  # noqa: PLC0415

    class Plan(pydantic.BaseModel):
        lights: int

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "gated",
        [
            StageDefinition("plan", stub({"lights": 3})),
            StageDefinition("approve", WaitForInput("Render?", answer_type=Plan), inputs=["plan"]),
        ],
    )
    view = RunsView(store)  # it tracks nothing: the run might be in any process
    async with trio.open_nursery() as nursery, client(view) as http:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        run: dict[str, Any] = {}
        for _ in range(1000):  # until the store has the gate (its thread is off the clock)
            await trio.sleep(0.25)
            response = await http.get(f"/api/runs/{handle.run_id}")
            if response.status_code == 200 and response.json()["waiting"]:
                run = response.json()
                break
        (waiting,) = run["waiting"]
        assert waiting["input"] == {"lights": 3}
        assert waiting["answer_type"] == "Plan"
        assert waiting["answer_schema"]["properties"]["lights"]["type"] == "integer"
        assert run["cancellable"] is False
        url = f"/api/runs/{handle.run_id[:8]}/respond"
        body = {"stage_id": "approve", "action": "edit", "value": {"lights": "many"}}
        cross = await http.post(url, json=body, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403
        wrong = await http.post(url, json=body, headers={"Origin": LOCAL})
        assert wrong.status_code == 400
        assert "field 'lights': must be integer, not str 'many'" in wrong.json()["error"]
        other = await http.post(url, json={**body, "stage_id": "plan"}, headers={"Origin": LOCAL})
        assert other.status_code == 409
        missing = await http.post("/api/runs/nope/respond", json=body, headers={"Origin": LOCAL})
        assert missing.status_code == 404
        approve = {"stage_id": "approve", "action": "approve"}
        done = await http.post(url, json=approve, headers={"Origin": LOCAL})
        assert done.status_code == 202, done.json()
        result = await handle.wait()
    assert result.outputs["approve"] == Plan(lights=3)
    store.close()
