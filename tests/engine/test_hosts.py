"""_hosts: asyncio-marked stages in a plain Trio run, through trio-asyncio (the stages of
an asyncio program's run are tested with ``aio``)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import trio
import trio.lowlevel

from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    aio,
)


def test_asyncio_marked_stages_run_in_a_plain_trio_run_through_trio_asyncio() -> None:
    @aio.asyncio_native
    async def fetch(value: int, context: PipelineContext) -> list[int]:
        await asyncio.sleep(0.001)
        context.increment_metric("fetched")
        return list(range(value))

    @aio.asyncio_native
    async def square(value: int) -> int:
        await asyncio.sleep(0)
        return value * value

    @aio.asyncio_native
    async def stream(value: list[int]) -> AsyncIterator[int]:
        for item in value:
            await asyncio.sleep(0)
            yield item + 100

    async def on_trio(value: list[int]) -> int:
        await trio.sleep(0.001)
        return sum(value)

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("fetch", fetch),
            StageDefinition("squares", square, inputs=["fetch"], pattern=ExecutionPattern.FAN_OUT),
            StageDefinition("streamed", stream, inputs=["fetch"]),
            StageDefinition("sum", on_trio, inputs=["squares"]),
        ],
    )
    result = trio.run(PipelineExecutor().execute, pipeline, 4)
    assert result.success, result.error
    assert result.outputs["squares"] == [0, 1, 4, 9]
    assert result.outputs["streamed"] == [100, 101, 102, 103]
    assert result.outputs["sum"] == 14
    assert result.metrics["fetched"] == 1


def test_fail_fast_cancels_an_asyncio_marked_stage_in_a_trio_run() -> None:
    saw: list[str] = []

    @aio.asyncio_native
    async def slow(value: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise
        return value

    async def fails(value: int) -> int:
        await trio.sleep(0.01)
        raise ValueError("broken")

    pipeline = PipelineDefinition(
        "p", [StageDefinition("slow", slow), StageDefinition("fails", fails)]
    )
    result = trio.run(PipelineExecutor().execute, pipeline, 1)
    assert result.failed_stages == ("fails",)
    assert result.cancelled_stages == ("slow",)
    assert saw == ["cancelled"]


def test_without_trio_asyncio_an_asyncio_marked_stage_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    @aio.asyncio_native
    async def fetch(value: int) -> int:
        return value

    monkeypatch.setitem(sys.modules, "trio_asyncio", None)  # not installed
    pipeline = PipelineDefinition("p", [StageDefinition("fetch", fetch)])
    with pytest.raises(ModuleNotFoundError, match=r"twinklr-pipeline\[asyncio\]"):
        trio.run(PipelineExecutor().execute, pipeline, 1)


def test_loading_trio_asyncio_leaves_asyncio_outside_trio_as_it_was() -> None:
    # Imported by itself, trio-asyncio makes every loop asyncio creates outside Trio its
    # own (asyncio.run then runs in a Trio run, and Dask's client thread breaks). Run
    # in a fresh interpreter, since the suite's own may have loaded it already.
    program = (
        "import asyncio, threading\n"
        "from twinklr.core.pipeline._engine._hosts import load_trio_asyncio\n"
        "load_trio_asyncio()\n"
        "kinds = [type(asyncio.new_event_loop()).__module__]\n"
        "thread = threading.Thread(target=lambda: kinds.append("
        "type(asyncio.new_event_loop()).__module__))\n"
        "thread.start(); thread.join()\n"
        "print(kinds)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "['asyncio.unix_events', 'asyncio.unix_events']"
