"""Edge channels: a one-shot memory channel per edge, carrying one value."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition
from twinklr.core.pipeline._engine._wiring import NOT_SENT, OneShotChannel


def test_a_channel_made_with_its_value_gives_it_once() -> None:
    channel = OneShotChannel("v")
    assert isinstance(channel, trio.abc.Channel)
    assert channel.receive_nowait() == "v"
    with pytest.raises(trio.EndOfChannel):
        channel.receive_nowait()


def test_a_falsy_or_none_value_is_a_value() -> None:
    values: tuple[object, ...] = (None, 0, "", [])
    for value in values:
        assert OneShotChannel(value).receive_nowait() == value


def test_an_empty_channel_would_block_until_sent() -> None:
    channel = OneShotChannel()
    with pytest.raises(trio.WouldBlock):
        channel.receive_nowait()
    channel.send_nowait(3)
    assert channel.receive_nowait() == 3


def test_a_second_send_is_refused() -> None:
    channel = OneShotChannel(1)
    with pytest.raises(trio.ClosedResourceError, match="carries one value"):
        channel.send_nowait(2)
    assert channel.receive_nowait() == 1
    with pytest.raises(trio.ClosedResourceError):
        channel.send_nowait(2)  # taken: still one value per channel


def test_a_closed_channel_drops_its_value_and_refuses_everything() -> None:
    channel = OneShotChannel("unread")
    channel.close()
    with pytest.raises(trio.ClosedResourceError):
        channel.receive_nowait()
    with pytest.raises(trio.ClosedResourceError):
        channel.send_nowait(1)


def test_the_unsent_placeholder_refuses_a_read() -> None:
    with pytest.raises(trio.ClosedResourceError):
        NOT_SENT.receive_nowait()


async def test_receive_parks_until_the_value_is_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = OneShotChannel()
    got: list[tuple[float, object]] = []

    async def receiver() -> None:
        value = await channel.receive()
        got.append((trio.current_time(), value))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(2)
        await channel.send("late")
    assert got == [(2.0, "late")]


async def test_async_for_ends_after_the_one_value() -> None:
    channel = OneShotChannel("only")
    assert [value async for value in channel] == ["only"]


async def test_a_second_receiver_is_busy() -> None:
    channel = OneShotChannel()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(channel.receive)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await channel.receive()
        channel.send_nowait("x")


async def test_closing_wakes_a_parked_receiver(autojump_clock: trio.testing.MockClock) -> None:
    channel = OneShotChannel()
    raised: list[type[BaseException]] = []

    async def receiver() -> None:
        try:
            await channel.receive()
        except trio.ClosedResourceError as exc:
            raised.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.sleep(1)
        await channel.aclose()
    assert raised == [trio.ClosedResourceError]


async def test_a_cancelled_receiver_leaves_the_channel_usable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = OneShotChannel()
    with trio.move_on_after(1) as scope:
        await channel.receive()
    assert scope.cancelled_caught
    channel.send_nowait("after")
    assert await channel.receive() == "after"


async def test_a_stopped_run_leaves_nothing_for_the_next(
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
