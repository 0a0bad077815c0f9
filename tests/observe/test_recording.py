"""The run recorder: one writer beside the run, and a store that fails never fails the
run (one warning, then the run goes on unrecorded, and is recorded again once the store
is back)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RunStore,
    StageDefinition,
    StageResult,
)
from twinklr.core.pipeline._observe._reading import HEARTBEAT_S
from twinklr.core.pipeline._observe._recording import FIRST_WRITE_S, RETRY_S
from twinklr.core.pipeline._observe._records import RunState


async def test_a_store_that_cannot_be_written_never_fails_the_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # A store that could never record says so when it is made, not by every run ...
    with pytest.raises(ValueError, match=r"cannot record runs: .*file is a file, not a dir"):
        RunStore(blocker / "runs")
    with pytest.raises(ValueError, match=r"cannot record runs: .*file is not a SQLite data"):
        RunStore(blocker)
    # ... and one that breaks later loses the record, never the run.
    store = RunStore(tmp_path / "runs")
    (tmp_path / "runs").write_text("made a file meanwhile: its directory cannot be made")
    with structlog.testing.capture_logs() as logs:
        result = await PipelineExecutor(runs=store).execute(
            PipelineDefinition("p", [StageDefinition("s0", stub(1, delay=1))])
        )
    assert result.success
    (warning,) = [log for log in logs if log["event"] == "run_record_failed"]
    assert warning["log_level"] == "warning"
    assert str(store.path) == warning["store"]


async def test_a_store_that_fails_midway_loses_the_record_not_the_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    writes: list[str] = []
    failed = trio.Event()

    def write(*args: Any, status: RunState, **fields: Any) -> None:
        writes.append(status)
        if len(writes) > 1:
            trio.from_thread.run_sync(failed.set)
            raise sqlite3.OperationalError("disk I/O error")
        RunStore.write(store, *args, status=status, **fields)

    async def slow(context: PipelineContext) -> StageResult[int]:
        await failed.wait()  # (the writer's thread is off the virtual clock)
        return StageResult.success(1)

    monkeypatch.setattr(store, "write", write)
    with structlog.testing.capture_logs() as logs:
        pipeline = PipelineDefinition("p", [StageDefinition("s0", slow)])
        result = await PipelineExecutor(runs=store).execute(pipeline)
    assert result.success
    # Then it tries again only every RETRY_S, and for how the run ended: no second warning.
    assert writes == ["running", "running", "succeeded"]
    assert [log["error"] for log in logs if log["event"] == "run_record_failed"] == [
        "OperationalError: disk I/O error"
    ]
    monkeypatch.undo()
    (record,) = store.runs()
    assert record.status == "running"  # what was written stays: its last heartbeat is new
    db = sqlite3.connect(store.path)
    with db:
        db.execute("UPDATE runs SET updated_at = updated_at - 120")
    db.close()
    (record,) = store.runs()
    assert record.status == "interrupted"  # and once the heartbeat is old, it says so


def counting(
    store: RunStore, monkeypatch: pytest.MonkeyPatch, until: int = 1
) -> tuple[list[RunState], trio.Event]:
    """The statuses ``store`` is written with, and an event set at the ``until``-th."""
    writes: list[RunState] = []
    written = trio.Event()
    write = store.write

    def wrapper(*args: Any, status: RunState, **fields: Any) -> None:
        writes.append(status)
        write(*args, status=status, **fields)
        if len(writes) == until:
            trio.from_thread.run_sync(written.set)

    monkeypatch.setattr(store, "write", wrapper)
    return writes, written


async def test_a_short_run_is_written_once_at_its_end(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    writes, _ = counting(store, monkeypatch)
    pipeline = PipelineDefinition("p", [StageDefinition("s0", stub(1, delay=0.01))])
    await PipelineExecutor(runs=store).execute(pipeline)
    assert writes == ["succeeded"]


async def test_a_quiet_long_run_is_written_on_change_and_on_the_heartbeat(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    writes, thrice = counting(store, monkeypatch, until=3)
    seen: list[float] = []

    async def waits(context: PipelineContext) -> StageResult[int]:
        await thrice.wait()  # (the writer's thread is off the virtual clock)
        seen.append(trio.current_time())
        return StageResult.success(1)

    pipeline = PipelineDefinition("p", [StageDefinition("s0", waits)])
    await PipelineExecutor(runs=store).execute(pipeline)
    assert writes == ["running"] * 3 + ["succeeded"]
    # nothing changed after the first write, so the next two waited for the heartbeat
    # (the writes' own times are not exact: the clock jumps while a thread writes)
    assert seen[0] >= FIRST_WRITE_S + 2 * HEARTBEAT_S


async def test_a_store_that_comes_back_is_written_again_from_where_the_run_is(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path)
    tried: list[RunState] = []
    back = trio.Event()

    def write(*args: Any, status: RunState, **fields: Any) -> None:
        tried.append(status)
        if len(tried) <= 2:  # (a server restarting: down for the first two tries)
            raise sqlite3.OperationalError("server closed the connection unexpectedly")
        RunStore.write(store, *args, status=status, **fields)
        trio.from_thread.run_sync(back.set)

    async def waits(context: PipelineContext) -> StageResult[int]:
        await back.wait()  # (the writer's thread is off the virtual clock)
        return StageResult.success(1)

    monkeypatch.setattr(store, "write", write)
    pipeline = PipelineDefinition("p", [StageDefinition("s0", waits)])
    with structlog.testing.capture_logs() as logs:
        result = await PipelineExecutor(runs=store).execute(pipeline)
    assert result.success
    events = [log["event"] for log in logs if log["event"].startswith("run_record")]
    assert events == ["run_record_failed", "run_record_resumed"]
    # Tried again every RETRY_S (10 s down: not the forty snapshots of the time).
    assert tried == ["running", "running", "running", "succeeded"]
    assert trio.current_time() >= FIRST_WRITE_S + 2 * RETRY_S
    (record,) = store.runs()
    assert record.status == "succeeded"
