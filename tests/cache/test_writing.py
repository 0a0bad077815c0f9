"""The run's write-behind, and the durability it gives: ``"batched"`` saves beside the
run, ``"sync"`` commits a stage's entry before any dependent starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)


class SlowStore(MemoryCacheStore):
    """Saves take a second (of virtual time), like a busy disk; it says when each
    stage's entry was saved."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: dict[str, float] = {}

    async def save(self, records: Any) -> None:
        await trio.sleep(1)
        await super().save(records)
        for record in records:
            self.saved[record.stage] = trio.current_time()


async def wait_then(value: int) -> int:
    await trio.sleep(1)
    return value + 1


async def items(value: int) -> list[int]:
    await trio.sleep(1)
    return [value, value + 1]


def chain() -> PipelineDefinition:
    return PipelineDefinition(
        "chain",
        [
            StageDefinition("a", wait_then),
            StageDefinition("b", wait_then, inputs=["a"]),
            StageDefinition("spread", items, inputs=["b"]),
            StageDefinition("each", wait_then, inputs=["spread"], pattern=ExecutionPattern.FAN_OUT),
            StageDefinition("c", wait_then, inputs=["b"]),
        ],
    )


@pytest.mark.parametrize(
    ("durability", "starts"),
    [
        # each stage starts as its inputs land; the saves go on beside the run
        ("batched", {"a": 0, "b": 1000, "spread": 2000, "c": 2000, "each": 3000}),
        # each waits for its inputs' entries (1 s a save): c and spread share one batch
        ("sync", {"a": 0, "b": 2000, "spread": 4000, "c": 4000, "each": 6000}),
    ],
)
async def test_sync_commits_each_entry_before_any_dependent_starts(
    autojump_clock: trio.testing.MockClock, durability: Any, starts: dict[str, float]
) -> None:
    store = SlowStore()
    result = await PipelineExecutor(cache=store, durability=durability).execute(chain(), 0)
    assert result.success
    assert {stage: timing.started_ms for stage, timing in result.timeline.items()} == starts
    if durability == "sync":
        for stage, dependent in [("a", "b"), ("b", "c"), ("spread", "each")]:
            assert store.saved[stage] * 1000 <= starts[dependent]
    again = await PipelineExecutor(cache=store, durability=durability).execute(chain(), 0)
    assert set(again.cached_stages) == set(starts)


def test_durability_is_batched_or_sync() -> None:
    assert PipelineExecutor().durability == "batched"
    with pytest.raises(ValueError, match="durability must be 'batched' or 'sync', not 'fast'"):
        PipelineExecutor(durability="fast")  # type: ignore[arg-type]


KILLED = """
import os, signal, sys, trio
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, SQLiteCacheStore
from twinklr.core.pipeline import StageDefinition

async def first(value):
    return value + 1

async def second(value):
    if sys.argv[2] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # the moment a dependent has begun
    return value * 10

pipeline = PipelineDefinition(
    "killed", [StageDefinition("first", first), StageDefinition("second", second, inputs=["first"])]
)
executor = PipelineExecutor(cache=SQLiteCacheStore(sys.argv[1]), durability="sync")
result = trio.run(executor.execute, pipeline, 1)
print(",".join(result.cached_stages), result.outputs["second"])
"""


def test_a_process_killed_once_a_dependent_began_never_recomputes_what_it_read(
    tmp_path: Path,
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED))
    cache = str(tmp_path / "cache")

    def run(mode: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, str(script), cache, mode]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    killed = run("kill")
    assert killed.returncode == -9, killed.stderr
    again = run("go")
    assert again.stdout.split() == ["first", "20"]  # first came from the cache
