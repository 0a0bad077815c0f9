"""The example asyncio service (examples/asyncio_service.py), served by uvicorn on
127.0.0.1 and called with httpx: runs on request, events streamed, concurrent runs
sharing one rate limiter, a client that hangs up cancelling its run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from asyncio_service import create_app, demo_contexts, demo_pipelines

from fixtures.http import served
from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    RateLimiter,
    StageDefinition,
)
from twinklr.core.pipeline._engine import _guest


def events_of(body: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for block in body.strip().split("\n\n"):
        kind, data = block.split("\n")
        found.append((kind.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return found


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    async def checked() -> Any:
        result = await main()
        assert not _guest.guests, "the Trio guest run did not end"
        return result

    return asyncio.run(checked())


def test_concurrent_requests_stream_their_runs_and_share_one_limiter() -> None:
    limiter = RateLimiter(requests_per_minute=6000)
    app = create_app(
        demo_pipelines(), contexts=demo_contexts(limiter), stage_loops={"sequencer": "trio"}
    )

    async def main() -> list[list[tuple[str, dict[str, Any]]]]:
        async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            answers = await asyncio.gather(
                client.post("/runs/lyrics", json="Jingle Bells"),
                client.post("/runs/lyrics", json="Silent Night"),
                client.post("/runs/sequencer", json="Carol of the Bells"),
            )
            listed = (await client.get("/runs")).json()
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert {run["status"] for run in listed} == {"succeeded"}
        assert len(listed) == 3
        return [events_of(answer.text) for answer in answers]

    jingle, silent, sequencer = run(main)
    assert jingle[0][0] == "run_started"
    assert jingle[-1] == (
        "result",
        {
            "success": True,
            "cancelled": False,
            "error": None,
            "outputs": {
                "verses": [f"Jingle Bells, verse {n}" for n in range(1, 5)],
                "scores": [21, 21, 21, 21],
            },
        },
    )
    assert silent[-1][1]["outputs"]["scores"] == [21, 21, 21, 21]
    assert sequencer[-1][1]["success"]
    assert limiter.statistics().admitted == 8  # four verses a run, two runs


def test_a_client_that_hangs_up_cancels_its_run() -> None:
    started = asyncio.Event()
    saw: list[str] = []

    async def slow(value: Any) -> Any:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise
        return value

    app = create_app({"slow": PipelineDefinition("slow", [StageDefinition("a", slow)])})

    async def main() -> list[dict[str, Any]]:
        async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            async with client.stream("POST", "/runs/slow", json=1) as answer:
                assert answer.status_code == 200
                await asyncio.wait_for(started.wait(), 10)
            # The stream is closed: the server sees the client go and cancels the run.
            for _ in range(500):
                listed: list[dict[str, Any]] = (await client.get("/runs")).json()
                if listed[0]["status"] != "running":
                    return listed
                await asyncio.sleep(0.01)
            return listed

    listed = run(main)
    assert listed[0]["status"] == "cancelled"
    assert saw == ["cancelled"]


def test_delete_cancels_a_run_and_bad_requests_get_a_clear_error() -> None:
    started = asyncio.Event()

    async def slow(value: Any, context: PipelineContext) -> Any:
        started.set()
        await asyncio.sleep(30)
        return value

    app = create_app({"slow": PipelineDefinition("slow", [StageDefinition("a", slow)])})

    async def main() -> None:
        async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            unknown = await client.post("/runs/nope", json=1)
            assert unknown.status_code == 404
            assert "no pipeline named 'nope'" in unknown.json()["error"]
            not_json = await client.post("/runs/slow", content=b"{")
            assert not_json.status_code == 400
            assert (await client.delete("/runs/nosuch")).status_code == 404

            async def follow() -> list[tuple[str, dict[str, Any]]]:
                answer = await client.post("/runs/slow", json=1)
                return events_of(answer.text)

            following = asyncio.create_task(follow())
            await asyncio.wait_for(started.wait(), 10)
            (run_id,) = [listed["run_id"] for listed in (await client.get("/runs")).json()]
            cancelled = await client.delete(f"/runs/{run_id}")
            assert cancelled.status_code == 202
            events = await following
            assert events[-1][1]["cancelled"] is True
            assert ("stage_cancelled", "a") in [
                (kind, fields.get("stage")) for kind, fields in events
            ]

    run(main)


def test_a_long_llm_answer_streams_to_the_client_as_it_grows() -> None:
    from fixtures.llm_server import STREAMED, ChatServer  # noqa: PLC0415
    from twinklr.core.pipeline import llm  # noqa: PLC0415

    model = ChatServer()
    model.pause_s = 0.06  # (each piece its own event: they are gathered 50 ms apart)

    async def narrate(song: str, context: PipelineContext) -> str:
        stream = context.provider.stream(f"plan the lights for {song}", context)
        return "".join([delta async for delta in stream])

    async def main() -> list[tuple[str, dict[str, Any]]]:
        async with served(model.app) as model_url:
            provider = llm.OpenAIProvider("local-model", base_url=f"{model_url}/v1")
            app = create_app(
                {"narrate": PipelineDefinition("narrate", [StageDefinition("narrate", narrate)])},
                contexts=lambda _name, _value: PipelineContext(provider=provider),
            )
            async with (
                provider,
                served(app) as url,
                httpx.AsyncClient(base_url=url, timeout=30) as client,
            ):
                answer = await client.post("/runs/narrate", json="Carol of the Bells")
        return events_of(answer.text)

    events = run(main)
    streamed = [fields["text"] for kind, fields in events if kind == "stage_tokens"]
    assert "".join(streamed) == "".join(STREAMED)
    assert len(streamed) > 1  # as it grew, not at the end
    assert events[-1][1]["outputs"] == {"narrate": "".join(STREAMED)}
