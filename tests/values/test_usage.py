"""What LLM calls used: a value that adds up, priced from a table (never guessed), and
counted for the stage whose task made the call, without passing anything."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    FakeLLMProvider,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineError,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
    llm,
)
from twinklr.core.pipeline._values._usage import cost_of, record_usage


def test_usage_adds_up_and_an_unknown_cost_stays_unknown() -> None:
    one = llm.Usage(requests=1, input_tokens=10, output_tokens=5, cost_usd=0.5)
    other = llm.Usage(requests=2, input_tokens=1, output_tokens=1, cached_input_tokens=1)
    assert one + other == llm.Usage(
        requests=3, input_tokens=11, output_tokens=6, cached_input_tokens=1, cost_usd=0.5
    )
    assert (one + llm.Usage(requests=1, cost_usd=None)).cost_usd is None
    assert sum([one, one], llm.Usage()).tokens == 30
    with pytest.raises(TypeError):
        one + 3


def test_a_cost_comes_from_the_table_or_is_none() -> None:
    prices: llm.Prices = {"m": (2.0, 8.0), "c": (2.0, 8.0, 0.5)}
    assert cost_of("m", 1_000_000, 500_000, prices=prices) == 6.0
    assert cost_of("c", 1_000_000, 0, cached_input_tokens=400_000, prices=prices) == 1.4
    assert cost_of("unknown", 10, 10, prices=prices) is None
    assert cost_of("m", 10, 10) is None
    assert record_usage(llm.Usage(requests=1)) is False  # outside a run: nowhere to count


async def plan(group: str, context: PipelineContext) -> str:
    answer = await context.provider.complete(f"plan {group}", context)
    context.record_usage(model="own-client", input_tokens=100, output_tokens=10)
    return str(answer.text)


async def groups(song: str, context: PipelineContext) -> list[str]:
    async with trio.open_nursery() as nursery:  # a call from a task the stage started
        nursery.start_soon(context.provider.complete, f"groups of {song}", context)
    return ["roof", "tree"]


async def test_calls_are_counted_for_the_stage_and_item_that_made_them() -> None:
    pipeline = PipelineDefinition(
        "show",
        [
            StageDefinition("groups", groups),
            StageDefinition("plans", plan, inputs=["groups"], pattern=ExecutionPattern.FAN_OUT),
            StageDefinition("quiet", groups, cache=False),  # (a second stage alike)
        ],
    )
    context = PipelineContext(
        provider=FakeLLMProvider(prices={"fake-llm": (1.0, 1.0)}),
        prices={"own-client": (10.0, 20.0)},
    )
    result = await PipelineExecutor().execute(pipeline, "carol", context)
    by_stage = result.usage_by_stage
    assert set(by_stage) == {"groups", "plans", "quiet"}
    assert by_stage["groups"].requests == by_stage["quiet"].requests == 1
    plans = by_stage["plans"]
    assert plans.requests == 4  # two fake calls and two recorded by the stage itself
    assert plans.input_tokens == 2 * 2 + 2 * 100
    own = 2 * (100 * 10.0 + 10 * 20.0) / 1e6
    assert plans.cost_usd == pytest.approx(own + (plans.tokens - 2 * 110) / 1e6)
    assert result.usage == by_stage["groups"] + by_stage["plans"] + by_stage["quiet"]


def test_record_usage_refuses_a_count_that_is_not_one() -> None:
    context = PipelineContext()
    with pytest.raises(ValueError, match="input_tokens must be a whole number >= 0, got -1"):
        context.record_usage(input_tokens=-1)
    with pytest.raises(ValueError, match=r"requests must be a whole number >= 0, got 1\.5"):
        context.record_usage(requests=1.5)  # type: ignore[arg-type]
    assert context.record_usage(model="m", input_tokens=3).cost_usd is None


async def ask(value: str, context: PipelineContext) -> str:
    answer = await context.provider.complete(f"{value} again and again", context)
    return str(answer.text)


def chain_of_calls(count: int) -> PipelineDefinition:
    retry = RetryConfig(max_attempts=3, initial_delay_ms=1)  # every error retryable
    return PipelineDefinition(
        "calls",
        [
            StageDefinition(f"s{n}", ask, inputs=[f"s{n - 1}"] if n else [], retry_config=retry)
            for n in range(count)
        ],
    )


async def test_a_budget_refuses_the_call_after_it_is_spent_and_is_never_retried() -> None:
    provider = FakeLLMProvider(prices={"fake-llm": (1.0, 1.0)})
    context = PipelineContext(provider=provider, budget=llm.Budget(max_tokens=25))
    store = MemoryCacheStore()
    result = await PipelineExecutor(cache=store).execute(chain_of_calls(5), "carol", context)
    assert not result.success
    assert result.usage.tokens >= 25
    failed = result.failed_stages[0]
    assert result.not_started_stages  # fail-fast: nothing after it ran
    assert len(provider.calls) == int(failed[1:])  # the refused call was never sent
    error = result.stage_results[failed].error
    assert error is not None
    assert f"stage '{failed}': the run has spent {result.usage.tokens} tokens" in error
    assert "its budget is 25 tokens" in error
    assert result.stage_results[failed].metadata["attempts"] == 1  # not retried
    # A rerun counts only what it spends itself: the cached stages cost it nothing.
    again = await PipelineExecutor(cache=store).execute(chain_of_calls(5), "carol", context)
    assert len(again.cached_stages) == int(failed[1:])
    assert again.usage.requests >= 1


async def test_a_cost_budget_counts_dollars_and_an_unknown_price_does_not_count() -> None:
    priced = PipelineContext(
        provider=FakeLLMProvider(prices={"fake-llm": (100_000.0, 100_000.0)}),
        budget=llm.Budget(max_cost_usd=2.0),
    )
    result = await PipelineExecutor().execute(chain_of_calls(3), "carol", priced)
    assert not result.success
    assert "its budget is $2.000000" in str(result.error)
    unpriced = PipelineContext(provider=FakeLLMProvider(), budget=llm.Budget(max_cost_usd=0.01))
    assert (await PipelineExecutor().execute(chain_of_calls(3), "carol", unpriced)).success


def test_a_budget_limit_is_a_positive_number() -> None:
    for bad in (0, -1, float("nan"), "10", True):
        with pytest.raises(ValueError, match="Budget max_tokens must be a number > 0 or None"):
            llm.Budget(max_tokens=bad)  # type: ignore[arg-type]
    assert issubclass(llm.BudgetExceededError, PipelineError)


async def test_a_rerun_reports_what_the_cache_saved_it(
    store: Any, autojump_clock: trio.testing.MockClock
) -> None:
    flaky = {"fail": True}

    async def plan_or_fail(group: str, context: PipelineContext) -> str:
        answer = await context.provider.complete(f"plan {group}", context)
        if group == "tree" and flaky["fail"]:
            await trio.sleep(1)  # (the roof's item has finished, and is kept)
            raise RuntimeError("the tree's plan failed")
        return str(answer.text)

    pipeline = PipelineDefinition(
        "show",
        [
            StageDefinition("groups", groups),
            StageDefinition(
                "plans", plan_or_fail, inputs=["groups"], pattern=ExecutionPattern.FAN_OUT
            ),
        ],
    )
    context = PipelineContext(provider=FakeLLMProvider(prices={"fake-llm": (1.0, 1.0)}))
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(pipeline, "carol", context)
    assert not first.success  # the tree's item failed; "groups" and the roof's item were kept
    flaky["fail"] = False
    second = await executor.execute(pipeline, "carol", context)
    assert second.success
    assert second.usage.requests == 1  # only the tree's item ran again
    assert second.usage_saved.requests == 2  # groups' call and the roof's
    # what the kept entries had cost: groups' call, and the roof's ("plan roof": 2 tokens)
    assert second.usage_saved.input_tokens == first.usage_by_stage["groups"].input_tokens + 2
    third = await executor.execute(pipeline, "carol", context)
    assert (third.usage.requests, third.usage_saved.requests) == (0, 3)
    assert third.usage_saved.tokens == second.usage_saved.tokens + second.usage.tokens


async def test_a_sub_pipelines_calls_count_for_the_stage_it_runs_in_and_its_budget() -> None:
    inner = PipelineDefinition("inner", [StageDefinition("ask", ask)])
    outer = PipelineDefinition(
        "outer",
        [
            StageDefinition("first", ask),
            StageDefinition("nested", inner, inputs=["first"]),
        ],
    )
    context = PipelineContext(provider=FakeLLMProvider(prices={"fake-llm": (1.0, 1.0)}))
    result = await PipelineExecutor().execute(outer, "carol", context)
    assert result.success, result.error
    by_stage = result.usage_by_stage
    assert (by_stage["first"].requests, by_stage["nested"].requests) == (1, 1)
    assert result.usage == by_stage["first"] + by_stage["nested"]
    # The budget counts the whole run, the sub-pipeline's calls with the rest.
    spent = result.usage.tokens
    context.budget = llm.Budget(max_tokens=by_stage["first"].tokens)
    refused = await PipelineExecutor().execute(outer, "carol", context)
    assert not refused.success
    assert "its budget is" in str(refused.error)
    assert refused.usage.tokens < spent
