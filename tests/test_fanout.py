"""Fan-out: a child task per item, input order kept, limits, per-item policy, fail-fast."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    FanOutInputError,
    FanOutItemError,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    StageStatus,
)
from twinklr.core.pipeline.definition import RetryConfig

FAN = ExecutionPattern.FAN_OUT


class PerItem:
    """Sleeps ``delays[item]`` seconds; fails items in ``failing``; tracks concurrency."""

    name = "per_item"

    def __init__(self, delays: dict[Any, float], failing: frozenset[Any] = frozenset()) -> None:
        self.delays = delays
        self.failing = failing
        self.running = 0
        self.peak = 0
        self.started: dict[Any, float] = {}
        self.cancelled: list[Any] = []

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        self.started[input] = trio.current_time()
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(self.delays.get(input, 0))
        except trio.Cancelled:
            self.cancelled.append(input)
            raise
        finally:
            self.running -= 1
        if input in self.failing:
            return StageResult.failure(f"item {input!r} is bad")
        return StageResult.success(f"plan-{input}")


def fan_pipeline(items: Any, stage: Any, **kwargs: Any) -> PipelineDefinition:
    return PipelineDefinition(
        "fan",
        [
            StageDefinition("source", stub(lambda _: items)),
            StageDefinition("groups", stage, pattern=FAN, inputs=["source"], **kwargs),
        ],
    )


async def test_outputs_keep_input_order_whatever_finishes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = PerItem({"a": 3, "b": 1, "c": 2})
    result = await PipelineExecutor().execute(fan_pipeline(["a", "b", "c"], stage))
    assert result.outputs["groups"] == ["plan-a", "plan-b", "plan-c"]
    assert stage.started == {"a": 0, "b": 0, "c": 0}
    assert result.total_duration_ms == 3000
    assert result.stage_results["groups"].metadata["items"] == 3


async def test_max_concurrent_fan_out_bounds_running_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = PerItem(dict.fromkeys(range(7), 1.0))
    result = await PipelineExecutor().execute(
        fan_pipeline(list(range(7)), stage, max_concurrent_fan_out=3)
    )
    assert result.success
    assert stage.peak == 3
    assert sorted(stage.started.values()) == [0, 0, 0, 1, 1, 1, 2]
    assert result.total_duration_ms == 3000


async def test_the_first_failed_item_cancels_its_siblings_and_is_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = PerItem({0: 5, 1: 1, 2: 5}, failing=frozenset({1}))
    result = await PipelineExecutor().execute(fan_pipeline([0, 1, 2], stage))
    assert not result.success
    failed = result.stage_results["groups"]
    assert failed.error == "stage 'groups' item 1 failed: item 1 is bad"
    assert isinstance(failed.exception, FanOutItemError)
    assert failed.exception.item == 1
    assert failed.metadata["failed_item"] == 1
    assert sorted(stage.cancelled) == [0, 2]
    assert result.total_duration_ms == 1000


async def test_items_beyond_the_limit_never_start_after_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = PerItem({0: 1, 1: 5}, failing=frozenset({0}))
    result = await PipelineExecutor().execute(
        fan_pipeline([0, 1, 2, 3], stage, max_concurrent_fan_out=2)
    )
    assert not result.success
    assert set(stage.started) == {0, 1}
    assert stage.cancelled == [1]


async def test_retry_and_timeout_apply_per_item(autojump_clock: trio.testing.MockClock) -> None:
    flaky = stub(lambda x: x * 2, delay=1, fail_times=1)
    result = await PipelineExecutor().execute(
        fan_pipeline(
            [1, 2, 3],
            flaky,
            retry_config=RetryConfig(max_attempts=2, initial_delay_ms=500),
            timeout_ms=1500,
        )
    )
    assert result.outputs["groups"] == [2, 4, 6]
    # only the first call failed: one item retried after 1 s + 0.5 s backoff
    assert sorted(t for t, _ in flaky.calls) == [0, 0, 0, 1.5]
    assert sorted(result.stage_results["groups"].metadata["item_attempts"]) == [1, 1, 2]
    assert result.timeline["groups"].attempts == 2


async def test_a_non_list_input_fails_naming_the_stage_and_type() -> None:
    result = await PipelineExecutor().execute(fan_pipeline({"not": "a list"}, stub()))
    failed = result.stage_results["groups"]
    assert failed.error == "fan-out stage 'groups' needs a list or tuple input, got dict"
    assert isinstance(failed.exception, FanOutInputError)
    assert isinstance(failed.exception, TypeError)


async def test_fan_out_over_one_of_several_inputs() -> None:
    echo = stub(lambda x: x)
    pipeline = PipelineDefinition(
        "fan",
        [
            StageDefinition("style", stub("neon")),
            StageDefinition("groups_list", stub(("roof", "tree"))),
            StageDefinition(
                "plan",
                echo,
                pattern=FAN,
                inputs=["style", "groups_list"],
                fan_out_over="groups_list",
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.outputs["plan"] == [
        {"style": "neon", "groups_list": "roof"},
        {"style": "neon", "groups_list": "tree"},
    ]


async def test_fan_out_over_a_non_list_input_names_the_input() -> None:
    pipeline = PipelineDefinition(
        "fan",
        [
            StageDefinition("a", stub(1)),
            StageDefinition("b", stub(2)),
            StageDefinition("c", stub(), pattern=FAN, inputs=["a", "b"], fan_out_over="b"),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.stage_results["c"].error == (
        "fan-out stage 'c' needs a list or tuple input (from 'b'), got int"
    )


async def test_an_empty_list_gives_an_empty_output() -> None:
    result = await PipelineExecutor().execute(fan_pipeline([], stub()))
    assert result.success
    assert result.outputs["groups"] == []


async def test_soft_failed_items_make_a_soft_failed_stage() -> None:
    class Soft:
        name = "soft"

        async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
            if input == 1:
                return StageResult.soft_failure("best", "budget reached")
            return StageResult.success(input)

    result = await PipelineExecutor().execute(fan_pipeline([0, 1], Soft()))
    assert result.success
    groups = result.stage_results["groups"]
    assert groups.status is StageStatus.SOFT_FAILED
    assert groups.output == [0, "best"]
    assert groups.error == "items [1] soft-failed"
    assert result.soft_failed_stages == ("groups",)


async def test_fail_fast_elsewhere_cancels_every_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = PerItem(dict.fromkeys(range(3), 10.0))
    pipeline = PipelineDefinition(
        "fan",
        [
            StageDefinition("source", stub([0, 1, 2])),
            StageDefinition("groups", stage, pattern=FAN, inputs=["source"]),
            StageDefinition("boom", stub(delay=2, fail_times=1), inputs=["source"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.cancelled_stages == ("groups",)
    assert sorted(stage.cancelled) == [0, 1, 2]
    assert stage.running == 0
    assert result.total_duration_ms == 2000


async def test_a_raising_item_names_its_exception() -> None:
    raising = stub(fail_times=1, raises=ValueError, error="bad group")
    result = await PipelineExecutor().execute(fan_pipeline(["only"], raising))
    assert result.stage_results["groups"].error == (
        "stage 'groups' item 0 failed: ValueError: bad group"
    )
