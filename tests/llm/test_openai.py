"""OpenAIProvider through the real ``openai`` SDK against a local OpenAI-compatible
server: usage and cost per stage, structured output, retries, from Trio and asyncio.

These use real sockets on 127.0.0.1 (Trio's virtual clock would jump over them), with
waits of a few milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

import pydantic
import pytest
import trio

from fixtures.http import served, served_trio
from fixtures.llm_server import ChatServer
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    ProviderError,
    RateLimiter,
    StageDefinition,
    aio,
    llm,
)

PRICES = {"local-model": (2.0, 8.0, 0.5)}  # $ per million input, output, cached input


class GroupPlan(pydantic.BaseModel):
    group: str
    effects: list[str]


async def plan_group(group: str, context: PipelineContext) -> GroupPlan:
    completion = await context.provider.chat(
        [{"role": "system", "content": "plan lights"}, {"role": "user", "content": group}],
        context,
        output_type=GroupPlan,
        temperature=0,
    )
    assert completion.parsed is not None
    parsed: GroupPlan = completion.parsed
    return parsed


async def groups(song: str, context: PipelineContext) -> list[str]:
    completion = await context.provider.complete(f"groups for {song}", context)
    return [f"{word}-{n}" for n, word in enumerate(completion.text.split()[:3])]


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


async def test_usage_and_cost_are_counted_per_stage_through_the_real_sdk() -> None:
    server = ChatServer(cached=2)
    async with served_trio(server.app) as url:
        provider = llm.OpenAIProvider(
            "local-model", base_url=f"{url}/v1", api_key="local", prices=PRICES
        )
        limiter = RateLimiter(60_000, tokens_per_minute=1_000_000)
        context = PipelineContext(provider=provider, rate_limiter=limiter)
        async with provider:
            result = await PipelineExecutor().execute(show(), "carol", context)
    assert result.success, result.error
    plans = result.outputs["plans"]
    assert [plan.group for plan in plans] == ["echo:-0", "groups-1", "for-2"]
    assert [request["model"] for request in server.requests] == ["local-model"] * 4
    schema = server.requests[1]["response_format"]["json_schema"]
    assert (schema["name"], schema["schema"]["title"]) == ("GroupPlan", "GroupPlan")
    by_stage = result.usage_by_stage
    assert (by_stage["groups"].requests, by_stage["plans"].requests) == (1, 3)
    total = result.usage
    assert total == by_stage["groups"] + by_stage["plans"]
    # exactly what the server billed, and priced from the table
    assert (total.input_tokens, total.output_tokens) == (server.billed_input, server.billed_output)
    assert total.cached_input_tokens == 2 * 4
    # the limiter counts what the answers said they used, not the estimates
    assert limiter.statistics().tokens_admitted == total.tokens
    fresh = total.input_tokens - total.cached_input_tokens
    expected = (fresh * 2.0 + total.cached_input_tokens * 0.5 + total.output_tokens * 8.0) / 1e6
    assert total.cost_usd == pytest.approx(expected)


async def test_a_model_without_a_price_has_no_cost_never_a_guess() -> None:
    server = ChatServer(model="dated-model-2026")
    async with (
        served_trio(server.app) as url,
        llm.OpenAIProvider("other", base_url=f"{url}/v1", prices=PRICES) as provider,
    ):
        completion = await provider.complete("hello there")
    assert (completion.model, completion.text) == ("dated-model-2026", "echo: hello there")
    assert (completion.input_tokens, completion.prompt_tokens) == (2, 2)
    assert completion.cost_usd is None


async def test_refusals_are_retried_as_asked_and_then_name_their_kind() -> None:
    server = ChatServer()
    async with contextlib.AsyncExitStack() as stack, served_trio(server.app) as url:
        provider = llm.OpenAIProvider("local-model", base_url=f"{url}/v1", max_retries=2)
        await stack.enter_async_context(provider)
        server.refusals = [(429, {"retry-after-ms": "5"}), (500, {"retry-after": "0"})]
        completion = await provider.complete("at last")
        assert (completion.text, len(server.requests)) == ("echo: at last", 3)
        server.refusals = [(429, {"retry-after": "0"})] * 3
        with pytest.raises(ProviderError, match=r"^rate_limit: local-model: HTTP 429"):
            await provider.complete("never")
        server.refusals = [(400, {})]
        before = len(server.requests)
        with pytest.raises(ProviderError, match=r"^bad_request: local-model: HTTP 400"):
            await provider.complete("malformed")
        assert len(server.requests) == before + 1  # the request's own fault: not retried


async def test_an_answer_that_does_not_match_the_output_type_is_a_provider_error() -> None:
    server = ChatServer()
    server.structured = lambda _prompt, _schema: {"group": 3}
    async with (
        served_trio(server.app) as url,
        llm.OpenAIProvider("local-model", base_url=f"{url}/v1") as provider,
    ):
        with pytest.raises(ProviderError, match="bad_output: local-model did not answer"):
            await provider.chat([{"role": "user", "content": "x"}], output_type=GroupPlan)


def test_asyncio_stages_call_it_from_an_aio_run() -> None:
    server = ChatServer()

    async def main() -> Any:
        async with served(server.app) as url:
            provider = llm.OpenAIProvider("local-model", base_url=f"{url}/v1", prices=PRICES)
            async with provider:  # (its asyncio client: the stages are asyncio code)
                return await aio.execute(show(), "carol", PipelineContext(provider=provider))

    result = asyncio.run(main())
    assert result.success, result.error
    assert result.usage.requests == 4
    assert (result.usage.input_tokens, result.usage.output_tokens) == (
        server.billed_input,
        server.billed_output,
    )


def test_bad_settings_are_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match="needs a model name, got ''"):
        llm.OpenAIProvider("")
    with pytest.raises(ValueError, match="max_retries must be a whole number >= 0, got -1"):
        llm.OpenAIProvider("m", max_retries=-1)
    with pytest.raises(TypeError, match="output_type must be a pydantic model class"):
        trio.run(
            lambda: llm.OpenAIProvider("m", base_url="http://127.0.0.1:9/v1").chat(
                [{"role": "user", "content": "x"}], output_type=dict
            )
        )


async def test_a_429_pauses_every_caller_of_the_limiter_then_retries() -> None:
    server = ChatServer()
    limiter = RateLimiter(requests_per_minute=6000)
    async with (
        served_trio(server.app) as url,
        llm.OpenAIProvider("local-model", base_url=f"{url}/v1") as provider,
    ):
        await provider.complete("warm up")  # (the SDK imported, a connection open)
        server.arrivals.clear()
        server.refusals = [(429, {"retry-after-ms": "500"})]
        context = PipelineContext(provider=provider, rate_limiter=limiter)
        answers: list[str] = []

        async def ask(prompt: str, delay: float) -> None:
            await trio.sleep(delay)
            answers.append((await provider.complete(prompt, context)).text)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first", 0)  # refused: the limiter pauses
            nursery.start_soon(ask, "second", 0.2)  # comes during the pause: waits too
    assert sorted(answers) == ["echo: first", "echo: second"]
    refused_at, *later = server.arrivals
    assert len(later) == 2
    assert min(later) >= refused_at + 0.5  # nobody went to the server during the pause
    assert limiter.statistics().admitted == 3  # the two calls and the retry


async def test_a_fallback_answers_when_the_first_cannot_and_says_which_model_did() -> None:
    primary, secondary = ChatServer(model="primary"), ChatServer(model="secondary")
    async with (
        served_trio(primary.app) as first_url,
        served_trio(secondary.app) as second_url,
        llm.OpenAIProvider("primary", base_url=f"{first_url}/v1", max_retries=0) as first,
        llm.OpenAIProvider("secondary", base_url=f"{second_url}/v1", prices=PRICES) as second,
    ):
        both = llm.FallbackProvider([first, second])
        primary.refusals = [(500, {})]
        completion = await both.complete("light the roof")
        assert (completion.model, completion.text) == ("secondary", "echo: light the roof")
        assert (len(primary.requests), len(secondary.requests)) == (1, 1)
        primary.refusals = [(400, {})]  # the request's own fault: nobody else is asked
        with pytest.raises(ProviderError, match=r"^bad_request: primary"):
            await both.complete("malformed")
        assert len(secondary.requests) == 1
        primary.refusals = [(429, {})]
        secondary.refusals = [(503, {"retry-after": "0"})] * 3  # (it retries twice)
        with pytest.raises(ProviderError, match=r"^server_error: every provider failed: rate_"):
            await both.complete("nobody")
    with pytest.raises(ValueError, match="needs at least one provider"):
        llm.FallbackProvider([])
    with pytest.raises(TypeError, match="has no complete"):
        llm.FallbackProvider([object()])


def test_without_a_table_the_price_database_prices_the_models_it_knows() -> None:
    from genai_prices import Usage, calc_price  # noqa: PLC0415 (the prices extra)

    from twinklr.core.pipeline._llm import _sdk  # noqa: PLC0415

    _sdk._load_database()  # (a provider's first call does it, in a worker thread)
    answered = llm.OpenAIProvider("gpt-4o")._answered("x", "gpt-4o", (1000, 100, 0), None)
    known = calc_price(Usage(input_tokens=1000, output_tokens=100), model_ref="gpt-4o")
    assert answered.cost_usd == float(known.total_price) > 0
    # A server the database does not know is not priced as OpenAI, nor an unknown model.
    local = llm.OpenAIProvider("gpt-4o", base_url="http://127.0.0.1:9/v1")
    assert local._answered("x", "gpt-4o", (1000, 100, 0), None).cost_usd is None
    import openai  # noqa: PLC0415 (the openai extra)

    # Nor a client's of your own (or one the SDK's OPENAI_BASE_URL variable points at).
    client = openai.AsyncOpenAI(base_url="http://127.0.0.1:9/v1", api_key="local")
    owned = llm.OpenAIProvider("gpt-4o", client=client)
    assert owned._answered("x", "gpt-4o", (1000, 100, 0), None).cost_usd is None
    unknown = llm.OpenAIProvider("no-such-model")._answered("x", None, (1, 1, 0), None)
    assert unknown.cost_usd is None
    # A table given wins over the database.
    tabled = llm.OpenAIProvider("gpt-4o", prices={"gpt-4o": (1.0, 1.0)})
    assert tabled._answered("x", "gpt-4o", (1000, 100, 0), None).cost_usd == 0.0011


# The SDK stops reading its own event iterator at [DONE] without closing it; Trio warns
# (a ResourceWarning, ignored by default) when that generator is collected.
@pytest.mark.filterwarnings("ignore:Async generator:ResourceWarning")
async def test_a_streamed_answer_comes_piece_by_piece_and_as_events() -> None:
    server = ChatServer()
    server.pause_s = 0.03  # (so the events gather more than one piece, a few a second)
    send, receive = trio.open_memory_channel[Any](1000)
    async with (
        served_trio(server.app) as url,
        llm.OpenAIProvider("local-model", base_url=f"{url}/v1", prices=PRICES) as provider,
    ):
        pieces: list[str] = []

        async def narrate(song: str, context: PipelineContext) -> str:
            stream = context.provider.stream(f"plan the lights for {song}", context)
            pieces.extend([delta async for delta in stream])
            assert stream.completion is not None
            return str(stream.completion.text)

        pipeline = PipelineDefinition("narrate", [StageDefinition("narrate", narrate)])
        context = PipelineContext(provider=provider)
        result = await PipelineExecutor().execute(pipeline, "carol", context, events=send)
    assert result.outputs["narrate"] == "Twinkle the roof, then fade the tree."
    assert len(pieces) == 7
    events = []
    while True:
        try:
            events.append(receive.receive_nowait())
        except trio.WouldBlock:
            break
    streamed = [e.text for e in events if e.kind.value == "stage_tokens"]
    assert "".join(streamed) == result.outputs["narrate"]
    assert 1 < len(streamed) < 7  # gathered: fewer events than pieces
    assert {e.stage for e in events if e.kind.value == "stage_tokens"} == {"narrate"}
    used = result.usage_by_stage["narrate"]
    assert (used.requests, used.output_tokens) == (1, 7)
    assert (used.input_tokens, used.output_tokens) == (server.billed_input, server.billed_output)
    assert used.cost_usd is not None
    gc.collect()  # (the SDK's leftover generators, while the warning is ignored)
