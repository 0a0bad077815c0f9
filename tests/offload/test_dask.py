"""The Dask backend on a 2-worker LocalCluster the tests start themselves."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import Unpicklable
from twinklr.core.pipeline import (
    DaskRunner,
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    SyncStage,
)
from twinklr.core.pipeline._offload._dask import _Call, _fetch
from twinklr.core.pipeline.definition import RetryConfig

distributed = pytest.importorskip("distributed")
get_worker = distributed.get_worker


@pytest.fixture(scope="module")
def dask(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskRunner]:
    runner = DaskRunner(n_workers=2, local_directory=str(tmp_path_factory.mktemp("dask")))
    runner.connect()
    yield runner
    runner.close()


def worker_name(_value: object) -> str:
    time.sleep(0.2)
    return str(get_worker().address)


def cursed(value: int) -> int:
    if value == 3:
        msg = f"item {value} is cursed"
        raise KeyError(msg)
    time.sleep(0.05)
    return value * 10


def fan(stage: SyncStage, items: list[Any], **kwargs: Any) -> PipelineDefinition:
    return PipelineDefinition(
        "dask",
        [
            StageDefinition("items", SyncStage(lambda _: items, name="items")),
            StageDefinition(
                "work", stage, pattern=ExecutionPattern.FAN_OUT, inputs=["items"], **kwargs
            ),
        ],
    )


async def test_results_equal_in_process_results_and_use_both_workers(dask: DaskRunner) -> None:
    offset = 7  # a closure from a test module the workers never import
    local = await PipelineExecutor().execute(fan(SyncStage(lambda v: v + offset), list(range(20))))
    remote = await PipelineExecutor(runner=dask).execute(
        fan(SyncStage(lambda v: v + offset), list(range(20)))
    )
    assert remote.outputs["work"] == local.outputs["work"]
    spread = await PipelineExecutor(runner=dask).execute(
        fan(SyncStage(worker_name), list(range(50)))
    )
    assert len(set(spread.outputs["work"])) == 2


async def test_a_remote_failure_keeps_its_type_and_cancels_the_rest(dask: DaskRunner) -> None:
    start = time.monotonic()
    result = await PipelineExecutor(runner=dask).execute(fan(SyncStage(cursed), list(range(40))))
    failed = result.stage_results["work"]
    assert failed.error == "stage 'work' item 3 failed: KeyError: 'item 3 is cursed'"
    assert isinstance(failed.exception.__cause__, KeyError)  # type: ignore[union-attr]
    assert time.monotonic() - start < 10


async def test_retries_happen_in_the_executor(dask: DaskRunner, tmp_path: Path) -> None:
    marker = tmp_path / "tried"

    def once_flaky(value: int) -> int:
        if not marker.exists():
            marker.write_text("x")
            raise ConnectionError("worker hiccup")
        return value

    pipeline = PipelineDefinition(
        "retry",
        [
            StageDefinition(
                "work",
                SyncStage(once_flaky, runner=dask),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=1),
            )
        ],
    )
    result = await PipelineExecutor().execute(pipeline, 5)
    assert result.outputs["work"] == 5
    assert result.stage_results["work"].metadata["attempts"] == 2


async def test_an_unpicklable_argument_fails_clearly(dask: DaskRunner) -> None:
    pipeline = PipelineDefinition(
        "bad",
        [
            StageDefinition("make", SyncStage(lambda _: Unpicklable(), name="make")),
            StageDefinition("work", SyncStage(str, runner=dask), inputs=["make"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.stage_results["work"].error == (
        "TypeError: cannot send the work to the Dask cluster: TypeError: no pickling here"
    )


async def test_cancelling_the_run_does_not_wait_for_the_cluster(dask: DaskRunner) -> None:
    def slow(_value: object) -> int:
        time.sleep(3)
        return 0

    start = time.monotonic()
    with trio.move_on_after(0.5):
        await PipelineExecutor(runner=dask).execute(fan(SyncStage(slow), list(range(10))))
    assert time.monotonic() - start < 2


def test_describes_itself() -> None:
    assert repr(DaskRunner()) == "DaskRunner(LocalCluster(n_workers=2))"
    assert repr(DaskRunner("tcp://127.0.0.1:8786")) == "DaskRunner(tcp://127.0.0.1:8786)"


class FakeFuture:
    """A done Dask future: finished with a value, or errored."""

    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error
        self.status = "error" if error is not None else "finished"

    def done(self) -> bool:
        return True

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def release(self) -> None:
        self.released = True


class LostClient:
    """A client whose scheduler has gone: nothing can be submitted or gathered."""

    def map(self, *args: Any, **kwargs: Any) -> Any:
        msg = "scheduler gone"
        raise OSError(msg)

    def gather(self, futures: Any) -> Any:
        msg = "connection lost"
        raise OSError(msg)


async def test_a_failed_submission_fails_every_call_of_its_batch() -> None:
    runner = DaskRunner()
    runner._client = LostClient()
    with pytest.raises(OSError, match="scheduler gone"):
        await runner.run(str, 1)


async def test_a_failed_gather_falls_back_to_one_result_at_a_time() -> None:
    token = trio.lowlevel.current_trio_token()
    good, bad = _Call(b"", token), _Call(b"", token)
    good.future, bad.future = FakeFuture(7), FakeFuture(error=ValueError("remote"))
    await trio.to_thread.run_sync(_fetch, LostClient(), [good, bad])  # a callback thread
    await good.done.wait()
    await bad.done.wait()
    assert good.value == 7
    assert isinstance(bad.error, ValueError)
    assert (good.future, bad.future) == (None, None)  # released, not kept


async def test_work_that_kills_its_worker_runs_once_not_four_times(
    dask: DaskRunner, tmp_path: Path
) -> None:
    tries = tmp_path / "tries"

    def crashes(_value: int) -> int:
        with tries.open("a") as log:
            log.write("x")
        os._exit(1)  # the worker process dies with the work

    pipeline = PipelineDefinition(
        "crash", [StageDefinition("work", SyncStage(crashes, runner=dask))]
    )
    result = await PipelineExecutor().execute(pipeline, 5)
    assert result.failed_stages == ("work",)
    assert tries.read_text() == "x"  # Dask did not reschedule it (the executor owns retries)


def worker_pid(_value: object) -> int:
    return os.getpid()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def wait_gone(pids: set[int]) -> bool:
    for _ in range(100):  # a worker process exits just after the cluster closes
        if not any(alive(pid) for pid in pids):
            return True
        await trio.to_thread.run_sync(time.sleep, 0.1)
    return False


async def test_a_cluster_a_run_started_is_closed_when_that_run_ends(tmp_path: Path) -> None:
    runner = DaskRunner(n_workers=1, local_directory=str(tmp_path))
    pipeline = PipelineDefinition(
        "pid", [StageDefinition("pid", SyncStage(worker_pid, runner=runner))]
    )
    result = await PipelineExecutor().execute(pipeline, 0)
    pid = result.outputs["pid"]
    assert pid != os.getpid()
    assert runner._cluster is None
    assert await wait_gone({pid})  # its worker process is gone with the run


async def test_a_held_runner_keeps_its_cluster_across_runs(tmp_path: Path) -> None:
    def pipeline_of(runner: DaskRunner) -> PipelineDefinition:
        return PipelineDefinition(
            "pid", [StageDefinition("pid", SyncStage(worker_pid, runner=runner))]
        )

    async with DaskRunner(n_workers=1, local_directory=str(tmp_path)) as runner:
        first = await PipelineExecutor().execute(pipeline_of(runner), 0)
        second = await PipelineExecutor().execute(pipeline_of(runner), 0)
        assert first.outputs["pid"] == second.outputs["pid"]  # the same worker, still up
        assert alive(first.outputs["pid"])
    assert runner._cluster is None
    assert await wait_gone({first.outputs["pid"]})


def megabyte_or_curse(value: int) -> bytes:
    if value == 150:
        time.sleep(0.3)  # (most of the others are done by then)
        msg = f"item {value} is cursed"
        raise KeyError(msg)
    return bytes(100_000)


async def test_a_held_runner_keeps_nothing_of_a_run_that_failed(dask: DaskRunner) -> None:
    client = dask.connect()
    result = await PipelineExecutor(runner=dask).execute(
        fan(SyncStage(megabyte_or_curse), list(range(200)))
    )
    assert not result.success  # (and kept: its error must not hold the run's futures)

    def on_scheduler(dask_scheduler: Any) -> int:
        return len(dask_scheduler.tasks)

    held = tasks = -1
    for _ in range(100):  # releases reach the scheduler through its event loop
        held = len(client.futures)
        tasks = await trio.to_thread.run_sync(client.run_on_scheduler, on_scheduler)
        if held == tasks == 0:
            break
        await trio.sleep(0.1)
    assert (held, tasks) == (0, 0)
    assert isinstance(result.stage_results["work"].exception.__cause__, KeyError)  # type: ignore[union-attr]


async def test_two_runs_sharing_a_runner_nobody_holds_do_not_cut_each_other(
    tmp_path: Path,
) -> None:
    runner = DaskRunner(n_workers=1, local_directory=str(tmp_path))

    def slow(value: int) -> int:
        time.sleep(0.5)
        return value

    short = PipelineDefinition(
        "short", [StageDefinition("pid", SyncStage(worker_pid, runner=runner))]
    )
    long = PipelineDefinition(
        "long",
        [
            StageDefinition("items", SyncStage(lambda _: [1, 2, 3], name="items")),
            StageDefinition(
                "work",
                SyncStage(slow, runner=runner),
                inputs=["items"],
                pattern=ExecutionPattern.FAN_OUT,
                max_concurrent_fan_out=1,  # (it goes on using the runner after short ends)
            ),
        ],
    )
    results = {}

    async def execute(pipeline: PipelineDefinition) -> None:
        results[pipeline.name] = await PipelineExecutor().execute(pipeline, 0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(execute, long)
        nursery.start_soon(execute, short)
    assert results["short"].success, results["short"].error
    assert results["long"].success, results["long"].error
    assert results["long"].outputs["work"] == [1, 2, 3]
    assert runner._cluster is None  # the last run to end closed it
    assert await wait_gone({results["short"].outputs["pid"]})
