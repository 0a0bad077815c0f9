"""_loops: which loop a stage runs on, and asyncio-marked stages in a plain Trio run
(through trio-asyncio)."""

from __future__ import annotations

import trio
import trio.lowlevel

from twinklr.core.pipeline import (
    PipelineContext,
    RefineStage,
    StageDefinition,
    aio,
    stage,
)
from twinklr.core.pipeline._base._loops import loop_of, run_in_trio


def test_a_mark_is_found_on_the_stage_its_class_its_function_or_its_object() -> None:
    async def plain(value: int) -> int:
        return value

    class Stage:
        name = "s"

        async def execute(self, value: int, context: PipelineContext) -> int:
            return value

    assert loop_of(plain) is None
    assert loop_of(aio.trio_native(plain)) == "trio"
    assert loop_of(StageDefinition("a", plain).stage) == "trio"  # the function stage's
    marked_class = aio.asyncio_native(Stage)
    assert loop_of(Stage()) == "asyncio"
    assert loop_of(Stage().execute) == "asyncio"  # a bound method: its object's
    assert marked_class is Stage

    @stage(name="decorated")
    async def decorated(value: int) -> int:
        return value

    aio.asyncio_native(decorated)  # a slotted function stage: its function is marked
    assert loop_of(decorated) == "asyncio"
    assert loop_of(RefineStage.__new__(RefineStage)) == "trio"  # the library's own


async def test_trio_code_called_through_run_in_trio_from_trio_is_just_awaited() -> None:
    async def add(a: int, b: int) -> int:
        await trio.lowlevel.checkpoint()
        return a + b

    assert await run_in_trio(add, 1, 2) == 3


async def test_asyncio_code_in_a_trio_run_says_how_to_run_it() -> None:
    import asyncio  # noqa: PLC0415

    from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor  # noqa: PLC0415

    async def fetch(value: int) -> int:
        await asyncio.sleep(0)  # (a bare yield, which Trio refuses)
        return value

    async def connect(value: int) -> int:
        await asyncio.sleep(1)  # (no running loop to make a future on)
        return value

    executor = PipelineExecutor()
    result = await executor.execute(PipelineDefinition("p", [StageDefinition("fetch", fetch)]))
    ended = await executor.execute(PipelineDefinition("q", [StageDefinition("connect", connect)]))
    assert ended.stage_results["connect"].error == (
        "stage 'connect' awaited asyncio code in a Trio run, where no asyncio loop runs: "
        "mark it with aio.asyncio_native (it then runs on a trio-asyncio loop: the "
        "'asyncio' extra), or run the pipeline from asyncio with aio.execute"
    )
    assert result.stage_results["fetch"].error == (
        "stage 'fetch' awaited asyncio code in a Trio run, where no asyncio loop runs: mark "
        "it with aio.asyncio_native (it then runs on a trio-asyncio loop: the 'asyncio' "
        "extra), or run the pipeline from asyncio with aio.execute"
    )
    raised = ended.stage_results["connect"].exception
    assert raised is not None
    assert isinstance(raised.__cause__, RuntimeError)  # asyncio's own error, kept as cause


async def test_a_runtime_error_of_the_stages_own_is_left_as_it_is() -> None:
    from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor  # noqa: PLC0415

    async def own(value: int) -> int:
        msg = "no running event loop"  # (its own words, not asyncio's)
        raise RuntimeError(msg)

    pipeline = PipelineDefinition("p", [StageDefinition("own", own)])
    result = await PipelineExecutor().execute(pipeline, 1)
    assert result.stage_results["own"].error == "RuntimeError: no running event loop"
