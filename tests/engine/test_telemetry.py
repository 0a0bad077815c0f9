"""A run's telemetry: transitions cost nothing when nobody listens."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineEvent,
    StageDefinition,
)
from twinklr.core.pipeline._engine._plan import Plan, plan_of
from twinklr.core.pipeline._engine._telemetry import RunTelemetry, _logs_debug
from twinklr.core.pipeline._observe._events import EventRelay


@pytest.fixture
def warnings_only() -> Iterator[None]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


def plan() -> Plan:
    return plan_of(PipelineDefinition("p", [StageDefinition("a", stub())]))


async def test_an_unwatched_run_skips_per_stage_transitions(warnings_only: None) -> None:
    run = RunTelemetry(plan(), "r")
    assert not run.watched
    send, _receive = trio.open_memory_channel[PipelineEvent](1)
    run.listen(EventRelay(send))
    assert run.watched


async def test_a_debug_logger_watches_every_transition() -> None:
    structlog.configure()  # an application's structlog, at its default level: debug
    try:
        run = RunTelemetry(plan(), "r")
        assert run.watched
    finally:
        structlog.reset_defaults()


async def test_with_no_logging_configured_nothing_is_watched() -> None:
    structlog.reset_defaults()
    run = RunTelemetry(plan(), "r")
    assert not run.watched  # the stdlib logger, at the default WARNING level


def test_a_logger_that_cannot_say_is_assumed_to_log_debug() -> None:
    assert _logs_debug(object())
    info = structlog.make_filtering_bound_logger(logging.INFO)
    assert not _logs_debug(info(structlog.PrintLogger(), [], {}))  # type: ignore[call-arg]


async def test_streamed_pieces_are_gathered_sent_after_a_stall_and_before_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from twinklr.core.pipeline import EventKind, PipelineExecutor  # noqa: PLC0415
    from twinklr.core.pipeline._values._usage import record_streamed  # noqa: PLC0415

    async def narrate(_value: object) -> str:
        for word in ("Twinkle ", "the ", "roof, "):  # three pieces at once: one event
            record_streamed(word)
        await trio.sleep(1)  # a stall: what came is sent after 50 ms all the same
        record_streamed("then fade.")  # the stage's end sends it at once
        return "done"

    send, receive = trio.open_memory_channel[PipelineEvent](100)
    pipeline = PipelineDefinition("p", [StageDefinition("narrate", narrate)])
    result = await PipelineExecutor().execute(pipeline, events=send)
    assert result.success
    events = []
    while True:
        try:
            events.append(receive.receive_nowait())
        except trio.WouldBlock:
            break
    shown = [
        (event.kind, event.time_ms, event.text)
        for event in events
        if event.kind in (EventKind.STAGE_TOKENS, EventKind.STAGE_SUCCEEDED)
    ]
    assert shown == [
        (EventKind.STAGE_TOKENS, 50.0, "Twinkle the roof, "),
        (EventKind.STAGE_TOKENS, 1000.0, "then fade."),
        (EventKind.STAGE_SUCCEEDED, 1000.0, None),
    ]
    assert trio.current_time() == 1.0  # no task left waiting to send: the run ended at once
