"""The Trio run an asyncio loop hosts: cancelled at any moment, ended with the loop,
it leaves the loop (and the thread) usable and nothing running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio

from twinklr.core.pipeline import (
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    RunStatus,
    RunStore,
    StageDefinition,
    aio,
)
from twinklr.core.pipeline._engine import _guest


async def double(value: int) -> int:
    await asyncio.sleep(0)
    return value * 2


async def asyncio_nap(value: int) -> int:
    await asyncio.sleep(30)
    return value


@aio.trio_native
async def trio_nap(value: int) -> int:
    await trio.sleep(30)
    return value


PIPELINE = PipelineDefinition("double", [StageDefinition("d", double)])


def test_cancelling_execute_at_any_iteration_leaves_the_loop_usable() -> None:
    async def main() -> list[str]:
        before = asyncio.all_tasks()
        seen: list[str] = []
        while "finished" not in seen:  # from at once to after the run has ended
            iterations = len(seen)
            task = asyncio.create_task(aio.execute(PIPELINE, 1))
            for _ in range(iterations):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await task
                seen.append("finished")
            except asyncio.CancelledError:
                seen.append("cancelled")
            assert (await aio.execute(PIPELINE, 2)).outputs == {"d": 4}
            assert asyncio.all_tasks() == before, f"left running after {iterations}"
            assert not _guest.guests
            assert iterations < 1000
        return seen

    seen = asyncio.run(main())
    assert seen[:4] == ["cancelled"] * 4  # the one to three iterations that broke it


@pytest.mark.parametrize("nap", [asyncio_nap, trio_nap], ids=["asyncio stage", "trio stage"])
def test_the_loop_ending_cancels_its_runs_and_sees_them_end(nap: Any, tmp_path: Any) -> None:
    handles: list[aio.AsyncioRunHandle] = []
    runs = RunStore(tmp_path)
    executor = PipelineExecutor(cache=MemoryCacheStore(), runs=runs)

    async def main() -> None:
        pipeline = PipelineDefinition("nap", [StageDefinition("nap", nap)])
        handles.append(await aio.start(pipeline, 1, executor=executor))
        handles.append(await aio.start(pipeline, 2, executor=executor))
        await asyncio.sleep(0.01)
        # main returns with both runs going: asyncio.run shuts the loop down

    asyncio.run(main())
    for handle in handles:
        assert handle.status is RunStatus.CANCELLED
        assert handle.result is not None
        assert (handle.result.cancelled, handle.result.cancelled_stages) == (True, ("nap",))
        record = runs.get(handle.run_id)
        assert record is not None
        assert record.status == "cancelled"
    assert not _guest.guests
    assert trio.run(trio.sleep, 0) is None  # the thread can run Trio again
