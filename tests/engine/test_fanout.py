"""Fan-out: a child task per item, input order kept, limits, per-item policy, fail-fast."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    FanOutInputError,
    FanOutItemError,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    StageStatus,
)
from twinklr.core.pipeline._engine._run import STREAM_BUFFER
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


# -- pipelining: a fan-out over a streaming stage starts each item as it is yielded -------


class Producer:
    """Yields ``count`` items one second apart, then works ``tail`` seconds more."""

    name = "producer"

    def __init__(self, count: int, tail: float = 0, fail_after: int | None = None) -> None:
        self.count, self.tail, self.fail_after = count, tail, fail_after
        self.yielded: list[float] = []

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        for item in range(self.count):
            await trio.sleep(1)
            if item == self.fail_after:
                raise RuntimeError(f"producer broke at item {item}")
            self.yielded.append(trio.current_time())
            yield item
        await trio.sleep(self.tail)


def pipelined(producer: Producer, per_item: Any, **kwargs: Any) -> PipelineDefinition:
    return PipelineDefinition(
        "stream",
        [
            StageDefinition("produce", producer),
            StageDefinition("each", per_item, pattern=FAN, inputs=["produce"], **kwargs),
            StageDefinition("all", stub(lambda items: items), inputs=["produce"]),
        ],
    )


async def test_items_start_as_they_are_yielded(autojump_clock: trio.testing.MockClock) -> None:
    per_item = PerItem(dict.fromkeys(range(5), 2.0))
    result = await PipelineExecutor().execute(pipelined(Producer(5, tail=3), per_item))
    assert result.success
    assert per_item.started == {0: 1, 1: 2, 2: 3, 3: 4, 4: 5}  # not at t=8
    assert result.outputs["each"] == [f"plan-{i}" for i in range(5)]
    assert result.outputs["all"] == [0, 1, 2, 3, 4]  # non-streaming consumers: the list
    assert result.timeline["each"].started_ms == 0
    assert result.timeline["all"].started_ms == 8000
    assert result.total_duration_ms == 8000  # without pipelining: 8 + 2 = 10


async def test_outputs_keep_the_yield_order(autojump_clock: trio.testing.MockClock) -> None:
    per_item = PerItem({0: 5, 1: 1, 2: 3})
    result = await PipelineExecutor().execute(pipelined(Producer(3), per_item))
    assert result.outputs["each"] == ["plan-0", "plan-1", "plan-2"]
    assert [i.index for i in result.timeline["each"].items] == [0, 1, 2]


async def test_a_slow_consumer_holds_the_producer_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Fast(Producer):
        async def execute(self, input: Any, context: PipelineContext) -> Any:
            for item in range(self.count):
                await trio.lowlevel.checkpoint()
                self.yielded.append(trio.current_time())
                yield item

    fast = Fast(40)
    per_item = PerItem(dict.fromkeys(range(40), 1.0))
    result = await PipelineExecutor().execute(pipelined(fast, per_item, max_concurrent_fan_out=1))
    assert result.success
    # One item a second downstream: the producer may run ahead by the stream's buffer plus
    # the item in hand on each side, never through all 40 at t=0.
    assert fast.yielded[-1] >= 40 - (STREAM_BUFFER + 4)
    assert fast.yielded[STREAM_BUFFER + 4] > 0


async def test_a_producer_failure_stops_the_pipelined_fan_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    per_item = PerItem(dict.fromkeys(range(5), 10.0))
    result = await PipelineExecutor().execute(pipelined(Producer(5, fail_after=2), per_item))
    assert not result.success
    assert result.failed_stages == ("produce",)
    assert result.cancelled_stages == ("each",)
    assert sorted(per_item.cancelled) == [0, 1]
    assert result.total_duration_ms == 3000


async def test_a_skipped_producer_fails_its_pipelined_fan_out_as_without_pipelining() -> None:
    pipeline = PipelineDefinition(
        "stream",
        [
            StageDefinition("produce", Producer(3), condition=lambda _: False),
            StageDefinition("each", stub(), pattern=FAN, inputs=["produce"], critical=False),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.stage_results["each"].error == (
        "fan-out stage 'each' needs a list or tuple input, got NoneType"
    )


async def test_a_cached_producer_hands_its_items_on(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryCacheStore()
    per_item = PerItem(dict.fromkeys(range(3), 1.0))
    executor = PipelineExecutor(cache=store)
    producer = Producer(3)
    await executor.execute(pipelined(producer, per_item), "x")
    again = await executor.execute(pipelined(producer, per_item), "x")
    assert again.outputs["each"] == ["plan-0", "plan-1", "plan-2"]
    assert "produce" in again.cached_stages
    assert len(producer.yielded) == 3  # the producer did not run again


async def test_a_failed_item_cancels_the_producer(autojump_clock: trio.testing.MockClock) -> None:
    producer = Producer(10, tail=5)
    per_item = PerItem(dict.fromkeys(range(10), 0.5), failing=frozenset({2}))
    result = await PipelineExecutor().execute(pipelined(producer, per_item))
    assert result.failed_stages == ("each",)
    assert result.cancelled_stages == ("produce",)
    assert len(producer.yielded) == 3  # items 0..2 yielded at 1, 2, 3 s; then it stopped
    assert result.total_duration_ms == 3500


async def test_a_subscriber_sees_every_item_once_as_it_is_yielded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    send, receive = trio.open_memory_channel[Any](0)
    seen: list[tuple[Any, float]] = []

    async def subscriber() -> None:
        async with receive:
            seen.extend([(item, trio.current_time()) async for item in receive])

    pipeline = PipelineDefinition("sub", [StageDefinition("produce", Producer(3, tail=2))])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        async with send:  # ours closed: the stream ends when the stage does
            result = await PipelineExecutor().execute(pipeline, subscriptions={"produce": send})
    assert seen == [(0, 1), (1, 2), (2, 3)]
    assert result.outputs["produce"] == [0, 1, 2]


async def test_only_streaming_stages_can_be_subscribed_to() -> None:
    send, _receive = trio.open_memory_channel[Any](1)
    pipeline = PipelineDefinition(
        "sub",
        [
            StageDefinition("plain", stub()),
            StageDefinition(
                "retried", Producer(1), retry_config=RetryConfig(max_attempts=2), inputs=["plain"]
            ),
        ],
    )
    executor = PipelineExecutor()
    for stage, message in [
        ("ghost", "has no such stage"),
        ("plain", "it does not stream"),
        ("retried", "it is retried, so items could repeat"),
    ]:
        with pytest.raises(ValueError, match=message):
            await executor.execute(pipeline, subscriptions={stage: send})


class Sequenced:
    """Items sleep a second, except item 25, which fails at once; calls are logged."""

    name = "sequenced"

    def __init__(self) -> None:
        self.log: list[int] = []

    async def execute(self, input: int, context: PipelineContext) -> StageResult[int]:
        self.log.append(input)
        if input == 25:
            return StageResult.failure("item 25 is bad")
        await trio.sleep(1)
        return StageResult.success(input)


@pytest.mark.parametrize("limit", [None, 50])
async def test_items_queued_with_a_failing_item_never_start_after_it(
    autojump_clock: trio.testing.MockClock, limit: int | None
) -> None:
    # Fifty items start in the same instant; whatever order Trio runs them in (it
    # shuffles them), no item's code runs after item 25 has failed.
    stage = Sequenced()
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", stub(list(range(50)))),
            StageDefinition(
                "each",
                stage,
                inputs=["items"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrent_fan_out=limit,
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert stage.log[-1] == 25
    assert result.error == "stage 'each' failed: stage 'each' item 25 failed: item 25 is bad"
    items = result.timeline["each"].items
    assert {item.index for item in items} == set(stage.log)  # the rest never started
    assert trio.current_time() == 0


async def test_plain_items_count_one_attempt_each_whatever_they_return(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Mixed:
        name = "mixed"

        async def execute(self, input: int, context: PipelineContext) -> StageResult[int]:
            await trio.sleep(input)
            if input == 1:
                return StageResult.success(10, metadata={"model": "m"})
            if input == 2:
                return StageResult.soft_failure(20, "partial")
            return StageResult.success(input * 10)

    result = await PipelineExecutor().execute(fan_pipeline([0, 1, 2, 3], Mixed()))
    fanned = result.stage_results["groups"]
    assert result.outputs["groups"] == [0, 10, 20, 30]
    assert fanned.status is StageStatus.SOFT_FAILED
    assert fanned.metadata["item_attempts"] == (1, 1, 1, 1)
    assert fanned.metadata["attempts"] == 1
    items = result.timeline["groups"].items
    assert [(i.index, i.status, i.attempts, i.finished_ms) for i in items] == [
        (0, StageStatus.SUCCEEDED, 1, 0.0),
        (1, StageStatus.SUCCEEDED, 1, 1000.0),
        (2, StageStatus.SOFT_FAILED, 1, 2000.0),
        (3, StageStatus.SUCCEEDED, 1, 3000.0),
    ]
