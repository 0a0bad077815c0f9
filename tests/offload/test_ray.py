"""The Ray backend, on a local Ray (``ray.init(num_cpus=2)``) in a child process: Ray
starts processes of its own and handles signals, which a test process should not share."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from twinklr.core.pipeline import RayRunner

pytest.importorskip("ray")

SCENARIO = r"""
import json, os, sys, time
from pathlib import Path
import trio
from twinklr.core.pipeline import (
    ExecutionPattern, PipelineDefinition, PipelineExecutor, RayRunner, StageDefinition,
    SyncStage,
)

scratch = Path(sys.argv[1])


def fan(name, stage, items):
    return PipelineDefinition(name, [
        StageDefinition("items", SyncStage(lambda _: items, name="items")),
        StageDefinition("work", stage, pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
    ])


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def main():
    out = {}
    runner = RayRunner(num_cpus=4)  # (the four calls of "cursed" run at once)
    offset = 7

    def named(value):  # a closure, by value: Ray's workers never import this script
        import ray
        return value + offset, ray.get_runtime_context().get_task_name(), os.getpid()

    async with runner:
        def cursed(value):
            if value == 3:
                raise KeyError(f"item {value} is cursed")
            (scratch / str(os.getpid())).write_text("started")
            time.sleep(30)
            return value

        started = time.monotonic()
        cursed_stage = SyncStage(cursed, runner=runner)
        result = await PipelineExecutor().execute(fan("cursed", cursed_stage, list(range(4))))
        failed = result.stage_results["work"]
        out["error"] = failed.error
        out["cause"] = type(failed.exception.__cause__).__name__
        out["failed_within_s"] = time.monotonic() - started
        pids = [int(path.name) for path in scratch.iterdir() if path.name.isdigit()]
        out["killed"] = pids
        out["alive_after_run"] = [pid for pid in pids if alive(pid)]
        for _ in range(100):  # (a killed process's exit trails its task's end by a little)
            if not any(alive(pid) for pid in pids):
                break
            time.sleep(0.05)
        out["alive_after_5s"] = [pid for pid in pids if alive(pid)]

        table = bytes(5_000_000)
        put = runner._put
        sent = []

        def counted(client, payload):
            sent.append(len(payload))
            return put(client, payload)

        runner._put = counted
        on_one_cpu = runner.options(num_cpus=1)
        big = SyncStage(lambda v: len(table) + v, runner=on_one_cpu)
        result = await PipelineExecutor().execute(fan("big", big, list(range(20))))
        out["big"] = result.outputs["work"]
        out["sent"] = sent
    out["shut_down_after_the_block"] = runner._conn.client is None
    import ray
    out["ray_down_after_the_block"] = not ray.is_initialized()
    # a run that starts Ray shuts it down when it ends
    show = SyncStage(named, runner=runner)
    result = await PipelineExecutor().execute(fan("show", show, list(range(6))))
    out["outputs"] = result.outputs["work"]
    out["driver"] = os.getpid()
    out["shut_down_after_the_run"] = runner._conn.client is None and not ray.is_initialized()

    print(json.dumps(out), flush=True)


trio.run(main)
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    scratch = tmp_path_factory.mktemp("ray")
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(scratch)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=scratch,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_results_come_back_in_order_from_worker_processes_named_by_task(
    scenario: dict[str, Any],
) -> None:
    outputs = scenario["outputs"]
    assert [value for value, _, _ in outputs] == [7, 8, 9, 10, 11, 12]
    for item, (_, name, pid) in enumerate(outputs):
        assert name.startswith(f"show-work-{item}-")
        assert pid != scenario["driver"]
    assert scenario["shut_down_after_the_run"]  # a run started Ray: it shut it down


def test_a_failure_keeps_its_type_and_kills_the_running_tasks(scenario: dict[str, Any]) -> None:
    assert scenario["error"] == "stage 'work' item 3 failed: KeyError: 'item 3 is cursed'"
    assert scenario["cause"] == "KeyError"
    assert scenario["failed_within_s"] < 25  # the others sleep 30 s: force-cancelled
    assert scenario["alive_after_5s"] == [], scenario["alive_after_run"]


def test_a_big_closure_goes_in_the_object_store_once(scenario: dict[str, Any]) -> None:
    assert scenario["big"] == [5_000_000 + v for v in range(20)]
    assert len(scenario["sent"]) == 1
    assert scenario["shut_down_after_the_block"]
    assert scenario["ray_down_after_the_block"]


def test_options_are_checked_and_shown() -> None:
    runner = RayRunner(num_cpus=2)
    assert repr(runner) == "RayRunner(num_cpus=2)"
    assert repr(runner.options(num_gpus=1, resources={"disk": 1})) == (
        "RayRunner(num_cpus=2, num_gpus=1, resources={'disk': 1})"
    )
    with pytest.raises(
        TypeError, match=r"RayRunner.options num_gpus must be a number >= 0, got -1"
    ):
        runner.options(num_gpus=-1)
    with pytest.raises(TypeError, match="resources must map names to numbers, got"):
        runner.options(resources={"disk": "lots"})  # type: ignore[dict-item]


def test_without_the_extra_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModuleNotFoundError, match=r"twinklr-pipeline\[ray\]"):
        RayRunner()
