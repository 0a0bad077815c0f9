"""The lifecycle and the sending the cluster runners share, on an in-process cluster of
threads (the real ones: test_dask, test_ray)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    ClusterRunner,
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    SyncStage,
    on_run_end,
)
from twinklr.core.pipeline._offload._remote import call_remote

pytest.importorskip("cloudpickle")


class Threads(ClusterRunner):
    """A cluster whose workers are threads, recording what the runner asks of it."""

    where = "the threads"
    kind = "dask"

    def __init__(self) -> None:
        super().__init__(startup_timeout_s=5, shutdown_timeout_s=5, input_apart=1_000_000)
        self.log: list[str] = []
        self.put: list[int] = []
        self.cancelled: list[list[Any]] = []
        self.cancel_threads: set[str] = set()
        self.in_flight = 0

    def _start(self) -> tuple[Any, Any]:
        self.log.append("start")
        return object(), None

    def _stop(self, client: Any, cluster: Any) -> None:
        self.log.append("stop")

    def _put(self, client: Any, payload: bytes) -> Any:
        self.put.append(len(payload))
        return payload  # (the "object" is the payload itself)

    def _release(self, client: Any, objects: list[Any]) -> None:
        self.log.append(f"release {len(objects)}")

    def _cancel(self, client: Any, handles: list[Any]) -> None:
        self.cancel_threads.add(threading.current_thread().name)
        self.cancelled.append(handles)

    async def run(self, fn: Any, value: Any) -> Any:
        client, state = await self._client()
        args = await self._prepare(client, state, fn, value)
        key = self._key(fn)
        self.in_flight += 1
        try:
            result = await trio.to_thread.run_sync(call_remote, *args, abandon_on_cancel=True)
        except trio.Cancelled:
            self._cancel_soon(key)
            raise
        return key, result


def fan(runner: Threads, fn: Any, items: list[Any]) -> PipelineDefinition:
    return PipelineDefinition(
        "show",
        [
            StageDefinition("items", SyncStage(lambda _: items, name="items")),
            StageDefinition(
                "render",
                SyncStage(fn, runner=runner),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["items"],
            ),
        ],
    )


async def test_a_run_opens_and_closes_and_names_its_tasks() -> None:
    runner = Threads()
    result = await PipelineExecutor().execute(fan(runner, lambda v: v + 1, [1, 2, 3]))
    assert [value for _, value in result.outputs["render"]] == [2, 3, 4]
    for item, (key, _) in enumerate(result.outputs["render"]):
        assert re.fullmatch(rf"show-render-{item}-[0-9a-f]{{12}}", key)
    assert runner.log == ["start", "stop"]
    key, value = await runner.run(len, "outside")  # outside a run: the function's name
    assert re.fullmatch(r"len-[0-9a-f]{12}", key)
    assert value == 7


async def test_a_big_function_is_sent_once_per_run_and_released_at_its_end() -> None:
    table = bytes(300_000)
    runner = Threads()
    async with runner:
        for _ in range(2):
            result = await PipelineExecutor().execute(
                fan(runner, lambda v: len(table) + v, list(range(10)))
            )
            assert [value for _, value in result.outputs["render"]] == [
                300_000 + v for v in range(10)
            ]
        big = PipelineDefinition("big", [StageDefinition("size", SyncStage(len, runner=runner))])
        wide = bytes(2_000_000)  # an input over input_apart
        assert (await PipelineExecutor().execute(big, wide)).outputs["size"][1] == 2_000_000
    assert len(runner.put) == 3  # once per run (twice), and the big input
    assert runner.log == ["start", "release 1", "release 1", "stop"]


GATE = threading.Event()


def wait(value: int) -> int:
    GATE.wait(5)
    return value


async def test_cancelled_calls_are_cancelled_in_batches_off_the_trio_thread() -> None:
    runner = Threads()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(PipelineExecutor().execute, fan(runner, wait, list(range(20))))
        while runner.in_flight < 20:  # (every call waits in its thread: cancel them all)
            await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    GATE.set()
    assert sum(map(len, runner.cancelled)) == 20
    assert len(runner.cancelled) < 20  # batched
    assert runner.cancel_threads == {"twinklr-cancel"}
    assert runner.log == ["start", "stop"]  # (after the cancelling: the run waited)


async def test_on_run_end_runs_a_cleanup_once_per_run() -> None:
    ended: list[str] = []

    async def cleanup() -> None:
        ended.append("end")

    async def asks_twice(_: object) -> None:
        assert on_run_end(cleanup)
        assert on_run_end(cleanup)

    from twinklr.core.pipeline import stage  # noqa: PLC0415

    pipeline = PipelineDefinition("p", [StageDefinition("a", stage(asks_twice))])
    await PipelineExecutor().execute(pipeline)
    assert ended == ["end"]
    assert on_run_end(cleanup) is False  # outside any run
