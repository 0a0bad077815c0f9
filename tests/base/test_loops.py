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
