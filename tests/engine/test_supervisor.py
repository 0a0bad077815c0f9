"""Supervising a run: how it ended is what its record says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, RunStore, StageDefinition


def test_ctrl_c_is_recorded_as_a_cancelled_run(tmp_path: Path) -> None:
    async def interrupted(value: Any) -> Any:
        raise KeyboardInterrupt  # what Ctrl-C raises in a trio.run program

    async def slow(value: Any) -> Any:
        await trio.sleep(10)

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "p", [StageDefinition("stop", interrupted), StageDefinition("slow", slow)]
    )
    with pytest.raises(KeyboardInterrupt):
        trio.run(
            PipelineExecutor(runs=store).execute,
            pipeline,
            clock=trio.testing.MockClock(autojump_threshold=0),  # (slow never really waits)
        )
    (record,) = store.runs()
    assert (record.status, record.error) == ("cancelled", "KeyboardInterrupt")


def test_a_run_refused_before_it_starts_is_not_recorded(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(TypeError):
        trio.run(PipelineExecutor(runs=store).execute, "not a pipeline")  # type: ignore[arg-type]
    assert store.runs() == []  # refused before it started: nothing recorded
