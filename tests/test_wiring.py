"""Channels reused across runs never carry a value from one run into the next."""

from __future__ import annotations

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition
from twinklr.core.pipeline._wiring import Wiring


def test_one_channel_per_edge() -> None:
    wiring = Wiring([[], [0], [0, 1]])
    assert [len(r) for r in wiring.inbox] == [0, 1, 2]
    assert [len(s) for s in wiring.outbox] == [2, 1, 0]


async def test_reruns_after_a_failure_get_fresh_values(
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
    first = await executor.execute(pipeline, 1)  # "fails" fails: "sink" never reads
    assert not first.success
    assert pipeline.plan().spare_wiring  # emptied and kept
    second = await executor.execute(pipeline, 2)
    assert second.success
    assert sink.calls == [(2, {"source": 2, "fails": None})]


async def test_concurrent_runs_of_one_definition_do_not_share_channels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub(lambda x: x, delay=1)),
            StageDefinition("b", stub(lambda x: x * 10, delay=1), inputs=["a"]),
        ],
    )
    executor = PipelineExecutor()
    outputs: dict[int, object] = {}

    async def one(value: int) -> None:
        outputs[value] = (await executor.execute(pipeline, value)).outputs["b"]

    async with trio.open_nursery() as nursery:
        for value in range(5):
            nursery.start_soon(one, value)
    assert outputs == {v: v * 10 for v in range(5)}
    assert len(pipeline.plan().spare_wiring) == 1
