"""PipelineContext: services, shared state, metrics, frozen snapshots."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    SyncStage,
)


def test_services_are_injected() -> None:
    provider, config, job = object(), {"a": 1}, {"song": "x"}
    context = PipelineContext(provider=provider, config=config, job_config=job)
    assert context.provider is provider
    assert context.config is config
    assert context.job_config is job


def test_state_and_metrics() -> None:
    context = PipelineContext()
    assert context.get_state("has_lyrics", False) is False  # noqa: FBT003 (the seed's spelling)
    context.set_state("has_lyrics", True)  # noqa: FBT003
    assert context.get_state("has_lyrics") is True
    context.add_metric("duration_ms", 1200)
    context.increment_metric("llm_calls")
    context.increment_metric("llm_calls", 2)
    assert context.metrics == {"duration_ms": 1200, "llm_calls": 3}
    assert context.get_metric("llm_calls") == 3
    assert context.get_metric("nope", 0) == 0
    assert context.state == {"has_lyrics": True}


def test_snapshot_is_a_frozen_copy() -> None:
    context = PipelineContext()
    context.set_state("k", 1)
    context.add_metric("m", 2)
    snapshot = context.snapshot()
    context.set_state("k", 5)
    assert snapshot.state == {"k": 1}
    assert snapshot.metrics == {"m": 2}
    with pytest.raises(TypeError):
        snapshot.state["k"] = 3  # type: ignore[index]


def test_services_may_be_given_positionally() -> None:
    context = PipelineContext("llm", {"c": 1}, {"j": 2})
    assert (context.provider, context.config, context.job_config) == ("llm", {"c": 1}, {"j": 2})


async def test_an_unset_rate_limiter_is_false_and_says_what_to_configure_when_used() -> None:
    for context in (PipelineContext(), PipelineContext(rate_limiter=None)):
        assert not context.rate_limiter
        assert "rate_limiter=None" in repr(context)
        with pytest.raises(LookupError, match=r"no rate limiter is configured: .*rate_limiter="):
            async with context.rate_limiter.acquire(tokens=5):
                pass
        with pytest.raises(LookupError, match="no rate limiter is configured"):
            await context.rate_limiter.wait_for_capacity()
        with pytest.raises(LookupError, match="no rate limiter is configured"):
            context.rate_limiter.statistics()  # type: ignore[attr-defined]
    assert not copy.deepcopy(PipelineContext()).rate_limiter


def test_the_original_twinklr_context_fields_are_accepted() -> None:
    cancel = asyncio.Event()
    context = PipelineContext(
        "provider",
        app_config={"app": 1},
        job_config={"job": 2},
        session="session",
        output_dir=Path("artifacts"),
        checkpoint_dir=Path("checkpoints"),
        cache="app cache",
        llm_logger="logger",
        cancel_token=cancel,
    )
    assert context.config == context.app_config == {"app": 1}
    assert PipelineContext(config={"a": 1}).app_config == {"a": 1}
    assert PipelineContext(None, {"positional": 1}).app_config == {"positional": 1}
    assert (context.session, context.cache, context.llm_logger) == (
        "session",
        "app cache",
        "logger",
    )
    assert context.output_dir == Path("artifacts")
    assert context.checkpoint_dir == Path("checkpoints")
    assert not context.is_cancelled()
    cancel.set()
    assert context.is_cancelled()


async def test_is_cancelled_tells_a_stage_its_run_is_being_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, bool]] = []

    async def slow(value: int, context: PipelineContext) -> int:
        seen.append(("slow before", context.is_cancelled()))
        try:
            await trio.sleep(10)
        finally:
            seen.append(("slow after", context.is_cancelled()))
        return value

    async def fails(value: int) -> int:
        await trio.sleep(1)
        raise ValueError("broken")

    context = PipelineContext()
    pipeline = PipelineDefinition(
        "p", [StageDefinition("slow", slow), StageDefinition("fails", fails)]
    )
    result = await PipelineExecutor().execute(pipeline, 1, context)
    assert result.failed_stages == ("fails",)
    assert seen == [("slow before", False), ("slow after", True)]
    assert not context.is_cancelled()  # the run is over: nothing is being cancelled


def test_is_cancelled_can_be_polled_from_work_off_the_trio_thread() -> None:
    polls: list[bool] = []

    def crunch(value: int) -> int:
        context = current[0]
        for _ in range(2000):  # until the run is cancelled, then stop early
            polls.append(context.is_cancelled())
            if polls[-1]:
                return -1
            time.sleep(0.001)
        return value

    async def fails(value: int) -> int:
        await trio.sleep(0.05)
        raise ValueError("broken")

    current = [PipelineContext()]
    pipeline = PipelineDefinition(
        "p", [StageDefinition("crunch", SyncStage(crunch)), StageDefinition("fails", fails)]
    )
    result = trio.run(PipelineExecutor().execute, pipeline, 1, current[0])
    assert result.failed_stages == ("fails",)
    deadline = time.monotonic() + 5
    while not (polls and polls[-1]) and time.monotonic() < deadline:
        time.sleep(0.005)  # the abandoned thread sees the cancellation and stops
    assert polls[-1] is True
