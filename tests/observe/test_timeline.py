"""The per-stage timeline: waits, retries, fan-out items, the critical path."""

from __future__ import annotations

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
    critical_path,
)


async def test_wait_on_inputs_and_time_in_retries(autojump_clock: trio.testing.MockClock) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("fast", stub(delay=1)),
            StageDefinition("slow", stub(delay=3)),
            StageDefinition(
                "join",
                stub(delay=1, fail_times=2),
                inputs=["fast", "slow"],
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=100),
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    join = result.timeline["join"]
    assert join.wait_ms == 2000  # first input at 1 s, last at 3 s
    assert join.retry_ms == 300  # 100 + 200 ms of backoff
    assert join.attempts == 3
    assert join.finished_ms == 3000 + 1000 + 100 + 1000 + 200 + 1000
    assert result.timeline["fast"].wait_ms == 0


async def test_fan_out_items_have_their_own_timings(autojump_clock: trio.testing.MockClock) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", stub([1, 2, 3, 4, 5])),
            StageDefinition(
                "each",
                stub(lambda x: x, delay=1),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["items"],
                max_concurrent_fan_out=2,
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    items = result.timeline["each"].items
    assert [i.index for i in items] == [0, 1, 2, 3, 4]
    assert sorted(i.started_ms for i in items) == [0, 0, 1000, 1000, 2000]
    assert all(i.duration_ms == 1000 and i.status is StageStatus.SUCCEEDED for i in items)
    assert result.timeline["items"].items == ()


async def test_cancelled_items_are_recorded_as_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Item:
        name = "item"

        async def execute(self, input: int, context: object) -> StageResult[int]:
            await trio.sleep(input)
            if input == 1:
                raise RuntimeError("one is bad")
            return StageResult.success(input)

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", stub([0, 1, 5])),
            StageDefinition("each", Item(), pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    statuses = [(i.index, i.status, i.finished_ms) for i in result.timeline["each"].items]
    assert statuses == [
        (0, StageStatus.SUCCEEDED, 0),
        (1, StageStatus.FAILED, 1000),
        (2, StageStatus.CANCELLED, 1000),
    ]


async def test_the_critical_path_follows_the_inputs_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("audio", stub(delay=1)),
            StageDefinition("profile", stub(delay=4), inputs=["audio"]),
            StageDefinition("lyrics", stub(delay=2), inputs=["audio"]),
            StageDefinition("macro", stub(delay=1), inputs=["profile", "lyrics"]),
            StageDefinition("side", stub(delay=1), inputs=["audio"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    path = critical_path(result)
    assert [(s.stage, s.start_ms, s.finished_ms, s.share_ms) for s in path] == [
        ("audio", 0, 1000, 1000),
        ("profile", 1000, 5000, 4000),
        ("macro", 5000, 6000, 1000),
    ]


async def test_a_stopped_run_has_a_critical_path_through_what_ended(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub(delay=1)),
            StageDefinition("boom", stub(delay=2, fail_times=1), inputs=["a"]),
            StageDefinition("after", stub(), inputs=["boom"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert [s.stage for s in critical_path(result)] == ["a", "boom"]


def test_the_critical_path_begins_when_its_first_stage_was_queued() -> None:
    from twinklr.core.pipeline._observe._timeline import RunRecords, Timeline  # noqa: PLC0415

    # The run began at 10.0 s; its set-up (a cache opened) took 0.088 s before the
    # first stage was queued: no stage's share (a cached run said "a 89 ms (97%)").
    records = RunRecords(
        queued=[10.088, 10.0883], started=[10.0881, 10.0884], finished=[10.0883, 10.0885]
    )
    results = [StageResult.success(1), StageResult.success(2)]
    timeline = Timeline(
        ids=["a", "b"], deps=[[], [0]], results=results, records=records, start=10.0
    )
    steps = [
        (s.stage, round(s.start_ms, 1), round(s.share_ms, 1)) for s in timeline.critical_path()
    ]
    assert steps == [("a", 88.0, 0.3), ("b", 88.3, 0.2)]
