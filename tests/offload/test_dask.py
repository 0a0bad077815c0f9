"""The Dask backend on a 2-worker LocalCluster the tests start themselves."""

from __future__ import annotations

import importlib
import os
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import Unpicklable
from fixtures.dask_cluster import standalone_cluster
from twinklr.core.pipeline import (
    DaskRunner,
    ExecutionPattern,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageDefinition,
    SyncStage,
)
from twinklr.core.pipeline._offload import _dask
from twinklr.core.pipeline._offload._dask import _Call, _fetch
from twinklr.core.pipeline.definition import RetryConfig

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
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


async def test_results_on_their_way_at_fail_fast_are_cached_not_thrown_away(
    dask: DaskRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"

    def the_last_to_start_fails(value: int) -> int:
        with calls.open("a") as log:
            log.write(f"{value}\n")
        ticket = 0
        while True:  # (the n-th to start gets ticket n)
            try:
                os.close(os.open(tmp_path / f"ticket-{ticket}", os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                ticket += 1
        if ticket != 5:
            (tmp_path / f"done-{value}").touch()
            return value * 10
        while len(list(tmp_path.glob("done-*"))) < 5:  # (the others have started)
            time.sleep(0.01)
        time.sleep(0.3)  # (their futures finished on the client meanwhile)
        raise KeyError("cursed")

    # A slow fetch (a big result, a far cluster): results that finished are still on
    # their way when the failure cancels the items waiting for them. The callback
    # thread stays free (it delivers the failure); the fetch waits until every item
    # waiting for a result has been cancelled.
    gate, cancelled = threading.Event(), []
    real_fetch, real_cancelled = _dask._fetch, DaskRunner._cancelled

    def slow_fetch(client: Any, batch: list[_Call]) -> None:
        if any(call.future.status != "finished" or "-work-" not in call.key for call in batch):
            return real_fetch(client, batch)
        waits = threading.Thread(target=lambda: (gate.wait(30), real_fetch(client, batch)))
        return waits.start()

    def counted(self: DaskRunner, call: _Call) -> bool:
        cancelled.append(call)
        if len(cancelled) == 5:
            gate.set()
        return real_cancelled(self, call)

    monkeypatch.setattr(_dask, "_fetch", slow_fetch)
    monkeypatch.setattr(DaskRunner, "_cancelled", counted)
    store = MemoryCacheStore()
    pipeline = fan(SyncStage(the_last_to_start_fails), list(range(6)))
    first = await PipelineExecutor(runner=dask, cache=store).execute(pipeline)
    failed = first.stage_results["work"].metadata["failed_item"]
    assert sorted(calls.read_text().split()) == ["0", "1", "2", "3", "4", "5"]
    assert len(cancelled) == 5
    calls.unlink()
    again = await PipelineExecutor(runner=dask, cache=store).execute(pipeline)
    assert calls.read_text().split() == [str(failed)]  # the five on their way were kept
    assert again.outputs["work"] == [value * 10 for value in range(6)]


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
    runner._conn.client = LostClient()
    with pytest.raises(OSError, match="scheduler gone"):
        await runner.run(str, 1)


async def test_a_failed_gather_falls_back_to_one_result_at_a_time() -> None:
    token = trio.lowlevel.current_trio_token()
    good, bad = _Call((), "good", token), _Call((), "bad", token)
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
    assert runner._conn.cluster is None
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
    assert runner._conn.cluster is None
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
    assert runner._conn.cluster is None  # the last run to end closed it
    assert await wait_gone({results["short"].outputs["pid"]})


# -- a standalone cluster: `dask scheduler` and `dask worker` processes, one of them bare


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workers = [
        {"name": "gpu", "resources": "GPU=1"},
        {"name": "cpu"},
        {"name": "bare", "bare": "1"},
    ]
    with standalone_cluster(tmp_path_factory.mktemp("cluster"), workers) as (address, _):
        yield address


@pytest.fixture
async def remote(cluster: str) -> AsyncIterator[DaskRunner]:
    async with DaskRunner(cluster) as runner:
        client = runner.connect()
        await trio.to_thread.run_sync(client.wait_for_workers, 3, 60)
        yield runner


async def bounded(pipeline: PipelineDefinition, value: Any = None) -> PipelineResult:
    with trio.fail_after(120):  # (a task no worker can take waits for one forever)
        return await PipelineExecutor().execute(pipeline, value)


def where_and_what(_value: object) -> tuple[str, str]:
    worker = get_worker()
    return str(worker.name), str(worker.get_current_task())


async def test_a_bare_worker_runs_closures_and_tasks_are_named_by_pipeline_stage_item(
    remote: DaskRunner,
) -> None:
    offset = 5
    on_bare = remote.options(workers="bare")
    pipeline = PipelineDefinition(
        "show",
        [
            StageDefinition("items", SyncStage(lambda _: list(range(6)), name="items")),
            StageDefinition(
                "render",
                SyncStage(lambda v: (v + offset, *where_and_what(v)), runner=on_bare),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["items"],
            ),
        ],
    )
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # (where_and_what)
    try:
        result = await bounded(pipeline)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert result.success, result.error
    for item, (value, worker, key) in enumerate(result.outputs["render"]):
        assert (value, worker) == (item + 5, "bare")
        assert re.fullmatch(rf"show-render-{item}-[0-9a-f]{{12}}", key), key


async def test_a_module_missing_on_the_workers_is_named_with_both_fixes(
    remote: DaskRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shapes.py").write_text("def triple(value):\n    return value * 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the client has it, no worker does
    shapes = importlib.import_module("shapes")
    pipeline = PipelineDefinition(
        "shapes", [StageDefinition("work", SyncStage(shapes.triple, runner=remote))]
    )
    failed = await bounded(pipeline, 2)
    error = failed.stage_results["work"].error or ""
    assert error.startswith(
        "ModuleNotFoundError: module 'shapes' is not installed where the stage's function"
        " was unpacked (a worker on host "
    ), error
    assert "cloudpickle.register_pickle_by_value(shapes) before the run" in error
    assert "Client.upload_file('shapes.py')" in error
    cloudpickle.register_pickle_by_value(shapes)
    try:
        assert (await bounded(pipeline, 2)).outputs["work"] == 6
    finally:
        cloudpickle.unregister_pickle_by_value(shapes)


async def test_per_stage_resources_choose_the_workers(remote: DaskRunner) -> None:
    on_gpu = remote.options(resources={"GPU": 1})
    assert repr(on_gpu).endswith(", resources={'GPU': 1})")
    pipeline = fan(SyncStage(lambda _: get_worker().name, runner=on_gpu), list(range(8)))
    result = await bounded(pipeline)
    assert result.outputs["work"] == ["gpu"] * 8


async def test_a_big_closure_is_sent_once_per_run_and_a_big_input_apart(
    remote: DaskRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = bytes(range(256)) * 20_000  # 5 MB: fifty copies in the graph would be 250 MB
    sent: list[int] = []
    put = remote._put

    def counted(client: Any, payload: bytes) -> Any:
        sent.append(len(payload))
        return put(client, payload)

    monkeypatch.setattr(remote, "_put", counted)
    pipeline = fan(SyncStage(lambda v: table[v] + len(table), runner=remote), list(range(50)))
    result = await bounded(pipeline)
    assert result.outputs["work"] == [v + len(table) for v in range(50)]
    assert len(sent) == 1
    assert sent[0] > len(table)
    sent.clear()
    solo = PipelineDefinition("big", [StageDefinition("size", SyncStage(len, runner=remote))])
    assert (await bounded(solo, table)).outputs["size"] == len(table)
    assert len(sent) == 1  # the input, scattered (len goes with the call)
    client = remote.connect()
    for _ in range(100):  # (released through the client's event loop)
        if not client.futures:
            break
        await trio.sleep(0.05)
    assert not client.futures


async def test_fail_fast_returns_once_the_scheduler_has_let_the_run_go(
    remote: DaskRunner, tmp_path: Path
) -> None:
    first = str(tmp_path / "first")

    def slow_unless_first(value: int) -> int:
        try:
            os.close(os.open(first, os.O_CREAT | os.O_EXCL))  # (whichever runs first)
        except FileExistsError:
            time.sleep(0.5)
            return value
        raise KeyError("cursed")

    result = await bounded(fan(SyncStage(slow_unless_first, runner=remote), list(range(2000))))
    assert result.failed_stages == ("work",)
    client = remote.connect()
    left = await trio.to_thread.run_sync(
        client.run_on_scheduler,
        lambda dask_scheduler: [k for k in dask_scheduler.tasks if str(k).startswith("dask-")],
    )
    assert left == []  # at once: no polling
