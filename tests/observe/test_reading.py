"""Reading the run history: a run watched while it runs, its events rebuilt, listing and
filtering, and runs whose process died read as interrupted."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from conftest import Stub, chain, stub
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    RunStore,
    StageDefinition,
)


async def test_a_running_run_can_be_watched_and_its_events_rebuilt(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    gate = trio.Event()

    async def waits(value: int) -> int:
        await gate.wait()
        return value

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("fast", stub(1, delay=1)),
            StageDefinition("slow", waits, inputs=["fast"]),
            StageDefinition("last", stub(3), inputs=["slow"]),
        ],
    )
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        watched = []
        for _ in range(1000):  # as a watcher would: poll (the writer's thread is off the clock)
            await trio.sleep(0.25)
            stages = await trio.to_thread.run_sync(store.stages, handle.run_id)
            watched = [s.status for s in stages]
            if watched == ["succeeded", "running", "pending"]:
                break
        assert watched == ["succeeded", "running", "pending"]
        record = await trio.to_thread.run_sync(store.get, handle.run_id)
        assert record is not None
        assert record.status == "running"
        assert record.finished_at is None
        gate.set()
        result = await handle.wait()
    live = [(e.kind, e.stage, e.item, e.time_ms) async for e in handle.events()]
    rebuilt = [(e.kind, e.stage, e.item, e.time_ms) for e in store.events(result.run_id)]
    assert rebuilt == live


async def test_listing_filters_by_pipeline_and_status_newest_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    executor = PipelineExecutor(runs=store)
    ok = await executor.execute(chain(stub(1), name="a"))
    bad = await executor.execute(chain(Stub(fail_times=1), name="a"))
    other = await executor.execute(chain(stub(1), name="b"))
    assert [r.run_id for r in store.runs()] == [other.run_id, bad.run_id, ok.run_id]
    assert [r.run_id for r in store.runs(pipeline="a")] == [bad.run_id, ok.run_id]
    assert [r.run_id for r in store.runs(status="failed")] == [bad.run_id]
    assert [r.run_id for r in store.runs(limit=1)] == [other.run_id]
    assert store.runs(status="running") == []
    prefix = ok.run_id[:5]
    found = store.get(prefix)
    assert found is not None
    assert found.run_id == ok.run_id
    assert store.get("zzz") is None
    assert store.stages("zzz") == []
    assert RunStore(tmp_path / "none").runs() == []
    for bad_limit in (0, -1, 10**23, True):
        with pytest.raises(ValueError, match="limit must be a whole number"):
            store.runs(limit=bad_limit)


CHILD = textwrap.dedent(
    """
    import sys, time, trio
    from twinklr.core.pipeline import (
        PipelineDefinition, PipelineExecutor, RunStore, StageDefinition
    )

    store = RunStore(sys.argv[1])

    async def first(value):
        return 1

    async def forever(value):
        await trio.sleep_forever()

    async def main():
        stages = [
            StageDefinition("first", first),
            StageDefinition("forever", forever, inputs=["first"]),
        ]
        pipeline = PipelineDefinition("killed", stages)
        async with trio.open_nursery() as nursery:
            handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
            while True:  # until the first stage's end is in the file
                await trio.sleep(0.05)
                stages = await trio.to_thread.run_sync(store.stages, handle.run_id)
                if stages and stages[0].status == "succeeded":
                    print(handle.run_id, flush=True)
                    break

    trio.run(main)
    """
)


def test_a_run_killed_with_sigkill_reads_as_interrupted_with_what_it_wrote(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        assert run_id, "the child never saw its first stage recorded"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    store = RunStore(tmp_path)
    record = store.get(run_id)
    assert record is not None
    assert record.status == "interrupted"
    assert record.finished_at is None
    assert [s.status for s in store.stages(run_id)] == ["succeeded", "running"]
    assert [r.run_id for r in store.runs(status="interrupted")] == [run_id]
    assert store.runs(status="running") == []


def test_a_run_whose_writer_went_quiet_reads_as_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    trio.run(PipelineExecutor(runs=store).execute, chain(stub(1)))
    (record,) = store.runs()
    db = sqlite3.connect(store.path)
    with db:  # as if a process on another host stopped writing an hour ago
        db.execute(
            "UPDATE runs SET status = 'running', host = 'elsewhere', updated_at = ?",
            (time.time() - 3600,),
        )
    db.close()
    assert store.get(record.run_id).status == "interrupted"  # type: ignore[union-attr]


async def test_a_run_is_found_by_a_hex_prefix_of_four_or_more_and_nothing_else(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    run_id = (await PipelineExecutor(runs=store).execute(chain(stub(1)))).run_id
    found = store.get(run_id[:4])
    assert found is not None
    assert found.run_id == run_id
    # A prefix is literal hex: SQL's wildcards match nothing, and nor does a short one.
    wilds = ["%", "____", "_" * 12, f"{run_id[:3]}%", run_id[:3]]
    if run_id.upper() != run_id:  # (an id of digits only has no other case)
        wilds.append(run_id.upper())
    for wild in wilds:
        assert store.get(wild) is None, wild
    with pytest.raises(LookupError):
        store.respond("%", "s0", value=True)


async def test_a_file_of_the_version_before_gains_what_this_one_added(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    with db:  # (version 3: definitions had no written_at)
        db.execute(
            "CREATE TABLE definitions (fingerprint TEXT PRIMARY KEY, pipeline TEXT NOT NULL,"
            " graph TEXT NOT NULL)"
        )
        db.execute("INSERT INTO definitions VALUES ('f', 'old', '{\"stages\": []}')")
        db.execute("PRAGMA user_version = 3")
    db.close()
    store = RunStore(path)
    result = await PipelineExecutor(runs=store).execute(chain(stub(1), name="new"))
    record = store.get(result.run_id)
    assert record is not None
    assert record.status == "succeeded"
    assert store.graph_of("f") == {"stages": []}  # what the file had is still there
    assert store.prune() == 1  # the run
    # and the old definition (named by no run, written long ago); not the new one yet
    assert store.graph_of("f") == {"pipeline": "", "stages": []}
    assert store.graph_of(record.definition)["pipeline"] == "new"
    store.close()
