"""Offloaded stages: a thread or worker processes run fn(input); the executor orchestrates."""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any

import pytest
import trio

from conftest import Unpicklable
from twinklr.core.pipeline import (
    DaskRunner,
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    ProcessRunner,
    Runner,
    StageDefinition,
    SyncStage,
    ThreadRunner,
)
from twinklr.core.pipeline.definition import RetryConfig


def square(value: int) -> int:
    return value * value


def pid_of(_value: object) -> int:
    time.sleep(0.2)  # long enough that both workers get items
    return os.getpid()


def explode(value: int) -> int:
    if value == 3:
        msg = f"item {value} is cursed"
        raise KeyError(msg)
    return value


def fan(stage: SyncStage, items: list[Any], **kwargs: Any) -> PipelineDefinition:
    return PipelineDefinition(
        "offload",
        [
            StageDefinition("items", SyncStage(lambda _: items, name="items")),
            StageDefinition(
                "work", stage, pattern=ExecutionPattern.FAN_OUT, inputs=["items"], **kwargs
            ),
        ],
    )


async def test_a_sync_stage_runs_in_a_thread_by_default() -> None:
    stage = SyncStage(square)
    assert stage.name == "square"
    assert isinstance(ThreadRunner(), Runner)
    result = await PipelineExecutor().execute(fan(stage, [1, 2, 3]))
    assert result.outputs["work"] == [1, 4, 9]


async def test_worker_processes_give_the_same_results_and_share_the_items() -> None:
    runner = ProcessRunner(max_workers=2)
    same = await PipelineExecutor(runner=runner).execute(fan(SyncStage(square), list(range(10))))
    assert same.outputs["work"] == [v * v for v in range(10)]
    spread = await PipelineExecutor().execute(fan(SyncStage(pid_of, runner=runner), list(range(8))))
    pids = set(spread.outputs["work"])
    assert len(pids) == 2
    assert os.getpid() not in pids


async def test_closures_travel_to_workers() -> None:
    offset = 100
    stage = SyncStage(lambda value: value + offset, runner=ProcessRunner(max_workers=1))
    result = await PipelineExecutor().execute(fan(stage, [1, 2]))
    assert result.outputs["work"] == [101, 102]


async def test_a_remote_failure_keeps_its_type_and_message() -> None:
    result = await PipelineExecutor(runner=ProcessRunner(max_workers=2)).execute(
        fan(SyncStage(explode), [1, 2, 3, 4])
    )
    failed = result.stage_results["work"]
    assert failed.error == "stage 'work' item 2 failed: KeyError: 'item 3 is cursed'"


async def test_retries_of_remote_work_happen_in_the_executor() -> None:
    calls = []

    def flaky(value: int) -> int:
        calls.append(value)
        if len(calls) == 1:
            raise ConnectionError("worker hiccup")
        return value

    pipeline = PipelineDefinition(
        "retry",
        [
            StageDefinition(
                "work",
                SyncStage(flaky),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=1),
            )
        ],
    )
    result = await PipelineExecutor().execute(pipeline, 7)  # threads share `calls`
    assert result.outputs["work"] == 7
    assert result.stage_results["work"].metadata["attempts"] == 2


async def test_an_unpicklable_argument_fails_clearly() -> None:
    pipeline = PipelineDefinition(
        "bad",
        [
            StageDefinition("make", SyncStage(lambda _: Unpicklable(), name="make")),
            StageDefinition(
                "work", SyncStage(square, runner=ProcessRunner(max_workers=1)), inputs=["make"]
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.stage_results["work"].error == (
        "TypeError: cannot send the work to a worker process: TypeError: no pickling here"
    )


def sleep_long(_value: object) -> int:
    time.sleep(60)
    return 0


async def test_a_cancelled_run_kills_running_worker_jobs() -> None:
    pipeline = PipelineDefinition(
        "cancel",
        [StageDefinition("work", SyncStage(sleep_long, runner=ProcessRunner(max_workers=1)))],
    )
    start = time.monotonic()
    with trio.move_on_after(2):
        await PipelineExecutor().execute(pipeline)
    assert time.monotonic() - start < 10  # the 60 s job did not hold the run


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="SyncStage needs a callable, got int"):
        SyncStage(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_workers must be an int >= 1"):
        ProcessRunner(max_workers=0)
    assert "ProcessRunner(max_workers=2)" in repr(SyncStage(square, runner=ProcessRunner(2)))
    assert repr(ThreadRunner()) == "ThreadRunner()"


@pytest.mark.parametrize(
    ("make", "extra"),
    [
        (ProcessRunner, "processes"),
        (DaskRunner, "dask"),
    ],
    ids=["processes", "dask"],
)
def test_a_runner_without_its_extra_fails_at_construction_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch, make: Any, extra: str
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "cloudpickle" else real(name, *a),
    )
    with pytest.raises(ModuleNotFoundError, match=rf'pip install "twinklr-pipeline\[{extra}\]"'):
        make()
