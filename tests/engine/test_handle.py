"""Background runs in a caller's nursery: RunHandle, RunStatus, the run's event history."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from conftest import const, stub
from twinklr.core.pipeline import (
    EventKind,
    PipelineDefinition,
    PipelineEvent,
    PipelineExecutor,
    PipelineStage,
    PipelineValidationError,
    RunHandle,
    RunStatus,
    StageDefinition,
)


def chain(*stages: PipelineStage[Any], name: str = "chain") -> PipelineDefinition:
    """``s0 -> s1 -> ...`` over the given stubs."""
    return PipelineDefinition(
        name=name,
        stages=[
            StageDefinition(f"s{i}", stage, inputs=[f"s{i - 1}"] if i else [])
            for i, stage in enumerate(stages)
        ],
    )


async def test_ten_runs_in_one_nursery_three_cancelled_mid_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stubs = [(stub(const(n), delay=1.0), stub(lambda x: x * 10, delay=1.0)) for n in range(10)]
    handles: list[RunHandle] = []
    async with trio.open_nursery() as nursery:
        for first, second in stubs:
            handles.append(await PipelineExecutor().start(nursery, chain(first, second)))
        assert all(handle.status is RunStatus.RUNNING for handle in handles)
        await trio.sleep(1.5)  # every run is in its second stage
        for n in (2, 5, 7):
            handles[n].cancel()
            handles[n].cancel()  # idempotent
        # cancel() returns at once; the runs end promptly, at the same instant
        for n in (2, 5, 7):
            result = await handles[n].wait()
            assert trio.current_time() == 1.5
            assert handles[n].status is RunStatus.CANCELLED
            assert result.cancelled
            assert not result.success
            assert result.error == "the run was cancelled"
            assert result.cancelled_stages == ("s1",)
            assert result.outputs == {"s0": n}
    assert trio.current_time() == 2.0
    for n, (handle, (first, second)) in enumerate(zip(handles, stubs, strict=True)):
        assert handle.result is not None
        if n in {2, 5, 7}:
            assert second.cancelled == [1.5]  # nothing left running
            assert second.finished == []
            continue
        assert handle.status is RunStatus.SUCCEEDED
        assert handle.result.outputs == {"s0": n, "s1": n * 10}
        assert not handle.result.cancelled
        assert first.calls[0][0] == 0.0


async def test_cancelling_the_callers_nursery_cancels_every_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stubs = [stub(const(n), delay=5.0) for n in range(4)]
    handles = []
    async with trio.open_nursery() as nursery:
        for n, stage in enumerate(stubs):
            handles.append(await PipelineExecutor().start(nursery, chain(stage, name=f"p{n}")))
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert trio.current_time() == 2.0
    for handle, stage in zip(handles, stubs, strict=True):
        result = await handle.wait()
        assert handle.status is RunStatus.CANCELLED
        assert result.cancelled
        assert result.cancelled_stages == ("s0",)
        assert stage.cancelled == [2.0]


async def test_start_returns_once_the_run_has_started() -> None:
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, chain(stub(1)), 7)
        assert handle.status.value == "running"
        assert handle.result is None
        assert repr(handle) == f"<RunHandle 'chain' run_id={handle.run_id} status=running>"
        first = await handle.events().__anext__()
        assert first.kind is EventKind.RUN_STARTED
        assert first.run_id == handle.run_id
    result = await handle.wait()
    assert result.run_id == handle.run_id
    assert handle.status is RunStatus.SUCCEEDED


async def test_a_failed_run_is_a_result_not_an_exception_in_the_nursery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failing = stub(delay=1.0, fail_times=1, error="bad input")
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, chain(stub(1), failing))
    result = await handle.wait()
    assert handle.status is RunStatus.FAILED
    assert result.error == "stage 's1' failed: bad input"
    assert not result.cancelled
    handle.cancel()  # after the end: nothing changes
    assert handle.status is RunStatus.FAILED


async def test_an_invalid_definition_raises_from_start_before_anything_runs() -> None:
    bad = PipelineDefinition(name="bad", stages=[StageDefinition("a", stub(), inputs=["nowhere"])])
    async with trio.open_nursery() as nursery:
        with pytest.raises(PipelineValidationError, match="nowhere"):
            await PipelineExecutor().start(nursery, bad)
        assert nursery.child_tasks == frozenset()


async def test_every_reader_sees_every_event_in_order_however_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = chain(stub(1, delay=0.1), stub(2, delay=0.1), stub(3, delay=0.1))
    seen: dict[str, list[PipelineEvent]] = {"fast": [], "slow": []}

    async def read(name: str, handle: RunHandle, pause: float) -> None:
        async for event in handle.events():
            seen[name].append(event)
            await trio.sleep(pause)

    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, pipeline)
        nursery.start_soon(read, "fast", handle, 0.0)
        nursery.start_soon(read, "slow", handle, 1.0)
        result = await handle.wait()
        assert result.total_duration_ms == pytest.approx(300.0)
    kinds = [event.kind for event in seen["fast"]]
    assert kinds[0] is EventKind.RUN_STARTED
    assert kinds[-1] is EventKind.RUN_FINISHED
    assert kinds.count(EventKind.STAGE_SUCCEEDED) == 3
    assert seen["slow"] == seen["fast"]  # the slow reader lagged and lost nothing
    late = [event async for event in handle.events()]  # after the end: the whole history
    assert late == seen["fast"]


async def test_events_also_go_to_the_callers_channel() -> None:
    send, receive = trio.open_memory_channel[PipelineEvent](math.inf)
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, chain(stub(1), stub(2)), events=send)
        await handle.wait()
    relayed = [receive.receive_nowait() for _ in range(receive.statistics().current_buffer_used)]
    history = [event async for event in handle.events()]
    assert relayed == history
    assert relayed[-1].dropped == 0


async def test_many_tasks_can_wait_for_one_run(autojump_clock: trio.testing.MockClock) -> None:
    results: list[Any] = []

    async def waiter(handle: RunHandle) -> None:
        results.append(await handle.wait())

    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, chain(stub(5, delay=1.0)))
        for _ in range(3):
            nursery.start_soon(waiter, handle)
    assert len(results) == 3
    assert all(result is results[0] for result in results)
    assert results[0].outputs == {"s0": 5}


async def test_a_crashing_run_reaches_the_nursery_and_the_handle_says_failed() -> None:
    class Interrupting:
        name = "interrupting"

        async def execute(self, input: Any, context: Any) -> Any:
            raise KeyboardInterrupt

    handle: RunHandle | None = None
    with pytest.raises(BaseExceptionGroup) as caught:
        async with trio.open_nursery() as nursery:
            handle = await PipelineExecutor().start(nursery, chain(Interrupting()))
    assert caught.value.subgroup(KeyboardInterrupt) is not None
    assert handle is not None
    result = await handle.wait()
    assert handle.status is RunStatus.FAILED
    assert result.error == "the run task ended with KeyboardInterrupt: "


async def test_streamed_text_is_kept_by_stage_and_item_as_it_grows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from twinklr.core.pipeline import ExecutionPattern  # noqa: PLC0415
    from twinklr.core.pipeline._values._usage import record_streamed  # noqa: PLC0415

    async def narrate(song: str) -> str:
        for word in ("Twinkle ", "the ", "roof."):
            record_streamed(word)  # (what a provider's stream does with each piece)
            await trio.sleep(1)
        return song

    async def groups(_song: str) -> list[str]:
        return ["roof", "tree"]

    async def plan(group: str) -> str:
        record_streamed(f"plan {group}")
        return group

    pipeline = PipelineDefinition(
        "narrated",
        [
            StageDefinition("narrate", narrate),
            StageDefinition("groups", groups),
            StageDefinition("plans", plan, inputs=["groups"], pattern=ExecutionPattern.FAN_OUT),
        ],
    )
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, pipeline, "carol")
        await trio.sleep(1.5)
        assert handle.streamed()[("narrate", None)] == "Twinkle the "
        await handle.wait()
    assert handle.streamed() == {
        ("narrate", None): "Twinkle the roof.",
        ("plans", 0): "plan roof",
        ("plans", 1): "plan tree",
    }
