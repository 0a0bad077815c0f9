"""Edge channels: one per edge in flight, pooled only once empty."""

from __future__ import annotations

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition, _wiring


def test_a_channel_carries_one_value_and_returns_empty() -> None:
    before = _wiring.idle_channels()
    channel = _wiring.send_on_new_channel("v")
    assert _wiring.receive_and_recycle(channel) == "v"
    assert _wiring.idle_channels() in {before, before + 1}
    assert channel[0].statistics().current_buffer_used == 0


def test_the_pool_is_bounded() -> None:
    channels = [_wiring.send_on_new_channel(i) for i in range(_wiring.POOL_LIMIT + 10)]
    for channel in channels:
        _wiring.receive_and_recycle(channel)
    assert _wiring.idle_channels() == _wiring.POOL_LIMIT


async def test_a_stopped_run_never_pools_a_full_channel(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failing = stub(delay=1, fail_times=1)
    sink = stub(lambda x: x)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("source", stub(lambda x: x)),
            StageDefinition("fails", failing, inputs=["source"]),
            StageDefinition("sink", sink, inputs=["source", "fails"]),
        ],
    )
    executor = PipelineExecutor()
    first = await executor.execute(pipeline, 1)  # "sink" never starts: its input is dropped
    assert not first.success
    second = await executor.execute(pipeline, 2)
    assert second.success
    assert sink.calls == [(2, {"source": 2, "fails": None})]
    pooled = list(_wiring._pool)
    assert all(send.statistics().current_buffer_used == 0 for send, _ in pooled)


async def test_concurrent_runs_of_one_definition_keep_their_values_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub(lambda x: x, delay=1)),
            StageDefinition("b", stub(lambda x: x * 10, delay=1), inputs=["a"]),
            StageDefinition("c", stub(lambda x: x, delay=1), inputs=["a", "b"]),
        ],
    )
    executor = PipelineExecutor()
    outputs: dict[int, object] = {}

    async def one(value: int) -> None:
        outputs[value] = (await executor.execute(pipeline, value)).outputs["c"]

    async with trio.open_nursery() as nursery:
        for value in range(20):
            nursery.start_soon(one, value)
    assert outputs == {v: {"a": v, "b": v * 10} for v in range(20)}
