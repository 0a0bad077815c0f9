"""What a task inside a run can reach: its run's context and executor, and the slot of
an output that comes back as the run is cancelled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    SyncStage,
)
from twinklr.core.pipeline._values import _context, _current


class Reports:
    """A stage that reports which executor and context its run makes current."""

    name = "reports"

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def execute(self, input: object, context: PipelineContext) -> StageResult[None]:
        self.seen += [_current.current_executor.get(), _context.current_context.get()]
        return StageResult.success(None)


async def test_a_stage_reaches_the_executor_and_context_of_its_run() -> None:
    reports = Reports()
    executor, context = PipelineExecutor(), PipelineContext()
    pipeline = PipelineDefinition("p", [StageDefinition("a", reports)])
    result = await executor.execute(pipeline, None, context)
    assert result.success
    assert reports.seen == [executor, context]
    assert _current.current_executor.get() is None  # reset when the run ended


async def test_outside_a_run_a_cleanup_is_refused_and_nothing_is_current() -> None:
    async def cleanup() -> None:
        pass

    assert _current.current_executor.get() is None
    assert _context.current_context.get() is None
    assert _current.on_run_end(cleanup) is False
    assert _current.current_run() is None


class ComesBackLate:
    """A runner whose work is done at once but whose results come back only after the
    run is cancelled (a result on its way at fail-fast); its errors take a second."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        self.calls.append(value)
        try:
            output = fn(value)
        except ValueError:
            await trio.sleep(1)
            raise
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            _current.offer_late(output)
            raise


def halves(value: int) -> int:
    if value % 2:
        raise ValueError(value)
    return value // 2


async def given(value: object) -> object:
    return value


async def fails_later(value: object) -> None:
    await trio.sleep(1)
    raise RuntimeError("boom")


def fails_fast_beside(stage: StageDefinition[Any]) -> PipelineDefinition:
    return PipelineDefinition("p", [stage, StageDefinition("boom", fails_later)])


async def test_an_output_on_its_way_when_the_run_fails_fast_is_cached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner, store = ComesBackLate(), MemoryCacheStore()
    pipeline = fails_fast_beside(StageDefinition("half", SyncStage(halves, runner=runner)))
    first = await PipelineExecutor(cache=store).execute(pipeline, 8)
    assert first.failed_stages == ("boom",)
    assert "half" in first.cancelled_stages
    again = await PipelineExecutor(cache=store).execute(pipeline, 8)
    assert again.outputs["half"] == 4
    assert "half" in again.cached_stages
    assert runner.calls == [8]  # not sent again


async def test_fan_out_items_on_their_way_when_a_sibling_fails_are_cached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner, store = ComesBackLate(), MemoryCacheStore()
    stage = StageDefinition(
        "half",
        SyncStage(halves, runner=runner),
        pattern=ExecutionPattern.FAN_OUT,
        inputs=["numbers"],
    )
    pipeline = PipelineDefinition("p", [StageDefinition("numbers", given), stage])
    first = await PipelineExecutor(cache=store).execute(pipeline, [2, 4, 5, 6])
    assert first.failed_stages == ("half",)
    assert sorted(runner.calls) == [2, 4, 5, 6]
    runner.calls.clear()
    again = await PipelineExecutor(cache=store).execute(pipeline, [2, 4, 5, 6])
    assert runner.calls == [5]  # the three that came back late were kept
    assert again.stage_results["half"].metadata["failed_item"] == 2


class Rounds:
    """A stage of its own that calls a runner and makes something else of its value:
    the runner's value is not the stage's output."""

    name = "rounds"

    def __init__(self, runner: ComesBackLate) -> None:
        self.runner = runner

    async def execute(self, input: int, context: PipelineContext) -> StageResult[int]:
        return StageResult.success(await self.runner.run(halves, input) + 1)


async def test_a_late_value_that_is_not_the_stages_output_is_not_cached(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runner, store = ComesBackLate(), MemoryCacheStore()
    pipeline = fails_fast_beside(StageDefinition("rounds", Rounds(runner)))
    await PipelineExecutor(cache=store).execute(pipeline, 8)
    again = await PipelineExecutor(cache=store).execute(pipeline, 8)
    assert "rounds" in again.cancelled_stages
    assert runner.calls == [8, 8]


async def test_a_late_value_offered_outside_a_run_or_a_cached_stage_is_ignored() -> None:
    _current.offer_late("nobody asked")  # (outside any run: nothing to keep it in)
    runner = ComesBackLate()
    pipeline = fails_fast_beside(StageDefinition("half", SyncStage(halves, runner=runner)))
    result = await PipelineExecutor(cache=None).execute(pipeline, 8)
    assert "half" in result.cancelled_stages
