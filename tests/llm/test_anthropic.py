"""AnthropicProvider through the real ``anthropic`` SDK against a local Messages API:
usage and cost per stage, structured output through a tool, the system prompt, retries,
from Trio and asyncio (real sockets on 127.0.0.1, waits of milliseconds)."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from fixtures.http import served, served_trio
from fixtures.llm_server import MessagesServer
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    ProviderError,
    StageDefinition,
    aio,
    llm,
)

PRICES = {"local-claude": (3.0, 15.0, 0.3)}


class GroupPlan(pydantic.BaseModel):
    group: str
    effects: list[str]


async def plan_group(group: str, context: PipelineContext) -> GroupPlan:
    completion = await context.provider.chat(
        [{"role": "system", "content": "You plan lights."}, {"role": "user", "content": group}],
        context,
        output_type=GroupPlan,
    )
    parsed: GroupPlan = completion.parsed
    return parsed


async def groups(song: str, context: PipelineContext) -> list[str]:
    completion = await context.provider.complete(f"groups for {song}", context)
    words: list[str] = completion.text.split()
    return words[1:3]


def show() -> PipelineDefinition:
    return PipelineDefinition(
        "show",
        [
            StageDefinition("groups", groups),
            StageDefinition(
                "plans", plan_group, inputs=["groups"], pattern=ExecutionPattern.FAN_OUT
            ),
        ],
    )


async def test_usage_cost_and_structured_output_through_the_real_sdk() -> None:
    server = MessagesServer(cache_read=2)
    async with (
        served_trio(server.app) as url,
        llm.AnthropicProvider("local-claude", base_url=url, prices=PRICES) as provider,
    ):
        context = PipelineContext(provider=provider)
        result = await PipelineExecutor().execute(show(), "carol", context)
    assert result.success, result.error
    assert [plan.group for plan in result.outputs["plans"]] == ["groups", "for"]
    request = server.requests[1]
    assert request["system"] == "You plan lights."  # (not sent as a message)
    assert [m["role"] for m in request["messages"]] == ["user"]
    assert request["tool_choice"] == {"type": "tool", "name": "GroupPlan"}
    assert request["max_tokens"] == 4096
    total = result.usage
    assert (total.requests, result.usage_by_stage["plans"].requests) == (3, 2)
    assert (total.input_tokens, total.output_tokens) == (server.billed_input, server.billed_output)
    assert total.cached_input_tokens == 2 * 3
    fresh = total.input_tokens - total.cached_input_tokens
    expected = (fresh * 3.0 + total.cached_input_tokens * 0.3 + total.output_tokens * 15.0) / 1e6
    assert total.cost_usd == pytest.approx(expected)


async def test_refusals_are_retried_and_a_bad_request_is_not() -> None:
    server = MessagesServer()
    async with (
        served_trio(server.app) as url,
        llm.AnthropicProvider("local-claude", base_url=url, max_retries=1) as provider,
    ):
        server.refusals = [(529, {"retry-after": "0"})]
        assert (await provider.complete("at last")).text == "echo: at last"
        server.refusals = [(429, {"retry-after-ms": "1"})] * 2
        with pytest.raises(ProviderError, match=r"^rate_limit: local-claude: HTTP 429"):
            await provider.complete("never")
        server.refusals = [(400, {})]
        with pytest.raises(ProviderError, match=r"^bad_request: local-claude"):
            await provider.complete("malformed")
        server.structured = lambda _prompt, _schema: {"group": 3}
        with pytest.raises(ProviderError, match="bad_output: local-claude did not answer as"):
            await provider.chat([{"role": "user", "content": "x"}], output_type=GroupPlan)


def test_asyncio_stages_call_it_from_an_aio_run() -> None:
    server = MessagesServer()

    async def main() -> Any:
        async with (
            served(server.app) as url,
            llm.AnthropicProvider("local-claude", base_url=url) as provider,
        ):
            return await aio.execute(show(), "carol", PipelineContext(provider=provider))

    result = asyncio.run(main())
    assert result.success, result.error
    assert (result.usage.requests, result.usage.cost_usd) == (3, None)  # no price: unknown


async def test_a_streamed_answer_through_the_messages_api() -> None:
    server = MessagesServer()
    async with (
        served_trio(server.app) as url,
        llm.AnthropicProvider("local-claude", base_url=url, prices=PRICES) as provider,
    ):
        stream = provider.stream(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "plan"}]
        )
        pieces = [delta async for delta in stream]
    assert "".join(pieces) == "Twinkle the roof, then fade the tree."
    assert stream.completion is not None
    assert stream.completion.model == "local-claude"
    assert (stream.completion.input_tokens, stream.completion.output_tokens) == (3, 7)
    assert server.requests[0]["system"] == "Be brief."
