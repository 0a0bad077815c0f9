"""Live events: complete, ordered, and never able to stall a run."""

from __future__ import annotations

import math
import pickle
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings

from conftest import RandomDag, Stub, random_dags, stub
from twinklr.core.pipeline import (
    EventKind,
    ExecutionPattern,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineEvent,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
)
from twinklr.core.pipeline._observe._events import TERMINAL_KINDS, EventRelay, stage_event


async def run_collecting(
    pipeline: PipelineDefinition, executor: PipelineExecutor | None = None, initial: Any = None
) -> tuple[PipelineResult, list[PipelineEvent]]:
    send, receive = trio.open_memory_channel[PipelineEvent](math.inf)
    result = await (executor or PipelineExecutor()).execute(pipeline, initial, events=send)
    events = []
    while True:
        try:
            events.append(receive.receive_nowait())
        except trio.WouldBlock:
            return result, events


async def test_a_run_tells_every_transition(autojump_clock: trio.testing.MockClock) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition(
                "flaky",
                stub(1, delay=1, fail_times=1, error="rate_limit"),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=500),
            ),
            StageDefinition("skip", stub(), inputs=["flaky"], condition=lambda _: False),
        ],
    )
    result, events = await run_collecting(pipeline)
    assert [(e.kind, e.stage, e.time_ms) for e in events] == [
        (EventKind.RUN_STARTED, None, 0),
        (EventKind.STAGE_QUEUED, "flaky", 0),
        (EventKind.STAGE_STARTED, "flaky", 0),
        (EventKind.ATTEMPT_FAILED, "flaky", 1000),
        (EventKind.STAGE_RETRYING, "flaky", 1000),
        (EventKind.STAGE_SUCCEEDED, "flaky", 2500),
        (EventKind.STAGE_QUEUED, "skip", 2500),
        (EventKind.STAGE_STARTED, "skip", 2500),
        (EventKind.STAGE_SKIPPED, "skip", 2500),
        (EventKind.RUN_FINISHED, None, 2500),
    ]
    retrying = events[4]
    assert (retrying.attempt, retrying.delay_ms, retrying.error) == (1, 500, "rate_limit")
    assert events[5].attempt == 2
    assert events[-1].success is True
    assert events[-1].dropped == 0
    assert all(e.run_id == result.run_id and e.pipeline == "p" for e in events)
    assert events[4].as_log_fields() == {
        "stage": "flaky",
        "attempt": 1,
        "error": "rate_limit",
        "delay_ms": 500,
    }


async def test_fan_out_progress_counts_done_of_total(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", stub([3, 1, 2])),
            StageDefinition(
                "each",
                stub(lambda x: x, delay=1),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["items"],
            ),
        ],
    )
    _, events = await run_collecting(pipeline)
    progress = [(e.item, e.done, e.total) for e in events if e.kind is EventKind.ITEM_FINISHED]
    assert sorted(p[0] or 0 for p in progress) == [0, 1, 2]
    assert [(p[1], p[2]) for p in progress] == [(1, 3), (2, 3), (3, 3)]


async def test_failures_cancellations_and_cache_hits_are_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryCacheStore()
    slow = Stub(delay=5)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("cached", stub(1)),
            StageDefinition("slow", slow, inputs=["cached"]),
            StageDefinition("boom", stub(delay=1, fail_times=9, error="kaput"), inputs=["cached"]),
        ],
    )
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 0)
    _, events = await run_collecting(pipeline, executor, 0)
    terminal = {e.stage: (e.kind, e.error) for e in events if e.kind in TERMINAL_KINDS}
    assert terminal == {
        "cached": (EventKind.STAGE_CACHE_HIT, None),
        "boom": (EventKind.STAGE_FAILED, "kaput"),
        "slow": (EventKind.STAGE_CANCELLED, "stage 'boom' failed: kaput"),
    }
    assert events[-1].success is False


async def test_a_slow_consumer_cannot_stall_the_run(autojump_clock: trio.testing.MockClock) -> None:
    send, receive = trio.open_memory_channel[PipelineEvent](0)
    received: list[PipelineEvent] = []

    async def sluggish() -> None:
        async for event in receive:
            received.append(event)
            await trio.sleep(10)

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition(f"s{i}", stub(delay=1), inputs=[f"s{i - 1}"] if i else [])
            for i in range(5)
        ],
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sluggish)
        result = await PipelineExecutor().execute(pipeline, events=send)
        finished_at = trio.current_time()
        nursery.cancel_scope.cancel()
    assert result.total_duration_ms == 5000  # the stages ran at their own pace
    assert finished_at <= 5 + 1  # plus at most the relay's flush timeout
    assert len(received) < 22  # most of the 22 events could not be delivered in time
    send.send_nowait  # the caller's channel was not closed by the executor  # noqa: B018
    assert not send._closed


async def test_a_full_buffer_drops_the_oldest_and_says_how_many() -> None:
    send, receive = trio.open_memory_channel[PipelineEvent](0)
    relay = EventRelay(send, buffer_size=3, flush_timeout_s=0)
    for n in range(5):
        relay.emit(PipelineEvent(kind=EventKind.STAGE_QUEUED, pipeline="p", run_id="r", time_ms=n))
    assert [e.time_ms for e in relay.buffer] == [2, 3, 4]
    assert relay.dropped == 2
    relay.close()
    await relay.relay()  # nobody receives: the flush gives up at once
    assert relay.dropped == 5
    del receive


async def test_a_consumer_that_went_away_is_no_problem() -> None:
    send, receive = trio.open_memory_channel[PipelineEvent](0)
    await receive.aclose()
    result = await PipelineExecutor().execute(
        PipelineDefinition("p", [StageDefinition("a", stub(1))]), events=send
    )
    assert result.success


@settings(max_examples=50, deadline=None)
@given(random_dags(max_size=20, max_duration=3))
def test_each_stage_ends_once_and_starts_after_its_inputs_ended(
    dag: RandomDag,
) -> None:
    deps, durations, failing = dag
    pipeline = PipelineDefinition(
        "random",
        [
            StageDefinition(
                str(i),
                Stub(delay=durations[i], fail_times=int(i == failing)),
                inputs=[str(d) for d in deps[i]],
            )
            for i in range(len(deps))
        ],
    )
    result, events = trio.run(
        run_collecting, pipeline, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    assert events[0].kind is EventKind.RUN_STARTED
    assert events[-1].kind is EventKind.RUN_FINISHED
    assert events[-1].dropped == 0
    position: dict[tuple[str, EventKind], int] = {}
    ended_at: dict[str, int] = {}
    for n, event in enumerate(events):
        if event.stage is None:
            continue
        position.setdefault((event.stage, event.kind), n)
        if event.kind in TERMINAL_KINDS:
            assert event.stage not in ended_at, "a stage ended twice"
            ended_at[event.stage] = n
    started = {stage for stage, kind in position if kind is EventKind.STAGE_STARTED}
    assert started == set(ended_at)  # every stage that started ended exactly once
    assert started == set(result.stage_results)
    for stage in started:
        begin = position[(stage, EventKind.STAGE_STARTED)]
        assert position[(stage, EventKind.STAGE_QUEUED)] < begin
        assert all(ended_at[str(d)] < begin for d in deps[int(stage)])


def test_the_fast_stage_event_equals_the_constructed_one() -> None:
    made = stage_event(EventKind.STAGE_STARTED, "p", "r", 1.5, "s", 2, "e")
    assert made == PipelineEvent(
        kind=EventKind.STAGE_STARTED, pipeline="p", run_id="r", time_ms=1.5, stage="s",
        attempt=2, error="e",
    )  # fmt: skip
    assert hash(made) == hash(
        PipelineEvent(
            kind=EventKind.STAGE_STARTED, pipeline="p", run_id="r", time_ms=1.5, stage="s",
            attempt=2, error="e",
        )
    )  # fmt: skip
    assert repr(made) == repr(
        PipelineEvent(
            kind=EventKind.STAGE_STARTED, pipeline="p", run_id="r", time_ms=1.5, stage="s",
            attempt=2, error="e",
        )
    )  # fmt: skip
    assert made.item is None
    assert made.done is None
    assert made.as_log_fields() == {"stage": "s", "attempt": 2, "error": "e"}
    assert pickle.loads(pickle.dumps(made)) == made  # noqa: S301 (our own bytes)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.item = 3  # type: ignore[misc]
