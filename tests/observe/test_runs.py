"""The run store: what an executor given ``runs=RunStore(...)`` records, gates answered
through it as another process would, suspended runs claimed once, and prune."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings

from conftest import RandomDag, chain, random_dags, random_pipeline, stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    FakeLLMProvider,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    RunStore,
    StageDefinition,
    WaitForInput,
)
from twinklr.core.pipeline._observe._reading import DEFAULT_FILENAME


async def test_a_run_is_recorded_with_each_stages_times_on_the_runs_clock(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    pipeline = chain(stub(1, delay=1), stub(2, delay=2), name="songs")
    result = await PipelineExecutor(runs=store).execute(pipeline, "jingle")
    assert store.path == tmp_path / DEFAULT_FILENAME
    (record,) = store.runs()
    assert record.run_id == result.run_id
    assert record.pipeline == "songs"
    assert record.status == "succeeded"
    assert record.duration_ms == 3000.0
    assert record.stage_count == 2
    assert record.error is None
    assert record.finished_at is not None
    assert record.started_at <= record.finished_at
    assert record.pid == os.getpid()
    stages = store.stages(result.run_id)
    assert [
        (s.id, s.status, s.queued_ms, s.started_ms, s.finished_ms, s.attempts) for s in stages
    ] == [
        ("s0", "succeeded", 0.0, 0.0, 1000.0, 1),
        ("s1", "succeeded", 1000.0, 1000.0, 3000.0, 1),
    ]
    assert [s.duration_ms for s in stages] == [1000.0, 2000.0]


async def test_fingerprints_tell_definitions_and_inputs_apart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    executor = PipelineExecutor(runs=store)
    one = chain(stub(1), stub(2))
    await executor.execute(one, {"song": "a"})
    await executor.execute(chain(stub(1), stub(2)), {"song": "a"})  # the same, rebuilt
    await executor.execute(one, {"song": "b"})
    longer = chain(stub(1), stub(2), stub(3))
    await executor.execute(longer, {"song": "a"})
    newest_first = store.runs()
    assert [r.stage_count for r in newest_first] == [3, 2, 2, 2]
    longer_run, other_input, rebuilt, first = newest_first
    assert first.definition == rebuilt.definition == other_input.definition
    assert longer_run.definition != first.definition
    assert first.input_fingerprint == rebuilt.input_fingerprint != other_input.input_fingerprint
    assert store.graph(first.run_id) == {
        "pipeline": "p",
        "stages": [
            {
                "id": "s0",
                "inputs": [],
                "pattern": "sequential",
                "critical": True,
                "conditional": False,
                "code": "conftest.Stub",
            },
            {
                "id": "s1",
                "inputs": ["s0"],
                "pattern": "sequential",
                "critical": True,
                "conditional": False,
                "code": "conftest.Stub",
            },
        ],
    }


async def test_a_failure_is_recorded_with_its_attempts_traceback_and_retries(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def flaky(value: int) -> int:
        await trio.sleep(1)
        raise ValueError(f"no luck with {value}")

    store = RunStore(tmp_path)
    retry = RetryConfig(max_attempts=2, initial_delay_ms=500)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("first", stub(7, delay=1)),
            StageDefinition("flaky", flaky, inputs=["first"], retry_config=retry),
            StageDefinition("after", stub(1), inputs=["flaky"]),
        ],
    )
    result = await PipelineExecutor(runs=store).execute(pipeline)
    record = store.get(result.run_id)
    assert record is not None
    assert record.status == "failed"
    assert record.error == result.error
    first, failed, after = store.stages(result.run_id)
    assert first.status == "succeeded"
    assert failed.status == "failed"
    assert failed.attempts == 2
    assert failed.error == "ValueError: no luck with 7"
    assert failed.attempt_errors == ("ValueError: no luck with 7",) * 2
    assert failed.traceback is not None
    assert failed.traceback.endswith("ValueError: no luck with 7\n")
    assert 'in flaky\n    raise ValueError(f"no luck with {value}")' in failed.traceback
    assert "tenacity" not in failed.traceback  # the machinery's frames are left out
    assert (failed.started_ms, failed.finished_ms) == (1000.0, 3500.0)
    assert after.status == "not_started"
    assert after.queued_ms is after.started_ms is None
    kinds = [(e.kind.value, e.stage, e.time_ms) for e in store.events(result.run_id)]
    assert ("attempt_failed", "flaky", 2000.0) in kinds
    assert ("stage_retrying", "flaky", 2000.0) in kinds
    assert kinds[-1] == ("run_finished", None, 3500.0)


async def test_cache_hits_and_fan_out_items_are_recorded(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async def square(value: int, context: PipelineContext) -> int:
        await trio.sleep(value)
        if value == 2 and context.state.get("fail"):
            raise RuntimeError("item two")
        return value * value

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", stub([1, 2, 3])),
            StageDefinition("squares", square, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
        ],
    )
    executor = PipelineExecutor(cache=MemoryCacheStore(), runs=store)
    failing = await executor.execute(pipeline, context=PipelineContext(state={"fail": True}))
    resumed = await executor.execute(pipeline)
    _, squares = store.stages(failing.run_id)
    assert squares.status == "failed"
    assert squares.items_total == 3
    assert {(i.index, i.status.value, i.started_ms, i.finished_ms) for i in squares.items} == {
        (0, "succeeded", 0.0, 1000.0),
        (1, "failed", 0.0, 2000.0),
        (2, "cancelled", 0.0, 2000.0),
    }
    items, squares = store.stages(resumed.run_id)
    assert items.status == "cached"
    assert items.cached
    assert squares.status == "succeeded"
    assert {(i.index, i.status.value) for i in squares.items} == {
        (0, "cached"),
        (1, "succeeded"),
        (2, "succeeded"),
    }


async def test_cancelled_runs_are_recorded_as_cancelled(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    pipeline = chain(stub(1, delay=1), stub(2, delay=10))
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        await trio.sleep(2)
        handle.cancel()
        await handle.wait()
    with trio.move_on_after(3):
        await PipelineExecutor(runs=store).execute(pipeline)
    outer, by_handle = store.runs()
    for record in (outer, by_handle):
        assert record.status == "cancelled"
        assert record.error == "the run was cancelled"
        assert [s.status for s in store.stages(record.run_id)] == ["succeeded", "cancelled"]
    assert by_handle.duration_ms == 2000.0
    assert outer.duration_ms == 3000.0


def test_the_executor_refuses_a_path_for_runs(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"runs=RunStore\("):
        PipelineExecutor(runs=str(tmp_path))


async def test_prune_forgets_runs_that_ended_long_enough_ago(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    executor = PipelineExecutor(runs=store)
    old = await executor.execute(chain(stub(1), name="old"))
    await executor.execute(chain(stub(1), name="new"))
    db = sqlite3.connect(store.path)
    with db:
        db.execute(
            "UPDATE runs SET started_at = started_at - 40 * 86400, "
            "finished_at = finished_at - 40 * 86400 WHERE run_id = ?",
            (old.run_id,),
        )
        db.execute("UPDATE definitions SET written_at = written_at - 40 * 86400")
    db.close()
    assert store.prune(older_than=dt.timedelta(days=30)) == 1
    assert [r.pipeline for r in store.runs()] == ["new"]
    assert store.graph(old.run_id) is None
    remaining = sqlite3.connect(store.path).execute("SELECT pipeline FROM definitions").fetchall()
    # the definition went with its last run (not written for the last hour: one a store
    # wrote lately may be named by the run it is writing now)
    assert remaining == [("new",)]
    assert store.prune() == 1


@settings(max_examples=40, deadline=None)
@given(dag=random_dags())
def test_a_random_dags_record_matches_its_result(tmp_path_factory: Any, dag: RandomDag) -> None:
    pipeline, _ = random_pipeline(dag)
    store = RunStore(tmp_path_factory.mktemp("runs"))
    result = trio.run(
        PipelineExecutor(runs=store).execute,
        pipeline,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    (record,) = store.runs()
    assert record.status == ("succeeded" if result.success else "failed")
    assert record.duration_ms == result.total_duration_ms
    for stage in store.stages(result.run_id):
        ended = result.stage_results.get(stage.id)
        if ended is None:
            assert stage.status == "not_started"
            continue
        assert stage.status == ended.status.value
        timing = result.timeline[stage.id]
        assert (stage.queued_ms, stage.started_ms, stage.finished_ms) == (
            timing.queued_ms,
            timing.started_ms,
            timing.finished_ms,
        )
        assert stage.attempts == timing.attempts


async def test_a_routing_stage_records_its_routes_and_the_branches_it_took(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "routed",
        [
            StageDefinition("kind", stub("b"), routes={"a": ["left"], "b": ["right"]}),
            StageDefinition("left", stub(1), inputs=["kind"]),
            StageDefinition("right", stub(2), inputs=["kind"]),
        ],
    )
    result = await PipelineExecutor(runs=store).execute(pipeline)
    graph = store.graph(result.run_id)
    assert graph is not None
    assert graph["stages"][0]["routes"] == {"a": ["left"], "b": ["right"]}
    assert "routes" not in graph["stages"][1]
    kind, left, right = store.stages(result.run_id)
    assert (kind.branches, left.branches) == (("b",), None)
    assert (left.status, right.status) == ("skipped", "succeeded")
    assert kind.as_json()["branches"] == ("b",)


async def test_a_gate_is_answered_through_the_store_as_another_process_would(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    from twinklr.core.pipeline import WaitForInput  # noqa: PLC0415

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "gated",
        [
            StageDefinition("plan", stub("the plan")),
            StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
        ],
    )
    other = RunStore(tmp_path)  # its own connection, as another process has
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        waiting: list[dict[str, Any]] = []
        for _ in range(1000):  # until the store shows the gate waiting
            await trio.sleep(0.25)
            waiting = await trio.to_thread.run_sync(other.waiting, handle.run_id)
            if waiting:
                break
        (gate,) = waiting
        assert (gate["stage_id"], gate["prompt"]) == ("approve", "Render?")
        with pytest.raises(
            LookupError, match=r"no gate 'plan' waits for input \(waiting: 'approve'\)"
        ):
            other.respond(handle.run_id, "plan", "yes")
        with pytest.raises(LookupError, match="no run 'nope'"):
            other.respond("nope", "approve", "yes")
        full = await trio.to_thread.run_sync(other.respond, handle.run_id[:6], "approve", {"ok": 1})
        assert full == handle.run_id
        result = await handle.wait()
    assert result.outputs["approve"] == {"ok": 1}
    assert other.waiting(handle.run_id) == []
    with pytest.raises(LookupError, match="is not running"):
        other.respond(handle.run_id, "approve", "yes")
    assert other.take_responses(handle.run_id) == []  # taken once


async def suspended_run(tmp_path: Path, store: RunStore) -> str:
    """A run of plan -> approve (a gate) suspended waiting at approve; its id."""
    pipeline = PipelineDefinition(
        "suspended",
        [
            StageDefinition("plan", stub("the plan")),
            StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
        ],
    )
    executor = PipelineExecutor(cache=MemoryCacheStore(), runs=store, suspend_on_wait=True)
    result = await executor.execute(pipeline)
    assert result.waiting_stages == ("approve",)
    return result.run_id


async def test_a_suspended_run_is_kept_answerable_and_claimed_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    run_id = await suspended_run(tmp_path, store)
    other = RunStore(tmp_path)  # another process's connection
    assert [gate["stage_id"] for gate in other.waiting(run_id)] == ["approve"]
    assert other.respond(run_id, "approve", [1, 2]) == run_id  # kept for the resumption
    record, state, answers = other.suspension(run_id)
    assert (record.status, answers) == ("waiting", {"approve": [1, 2]})
    assert state  # the input and answers, encoded by the engine
    other.claim(run_id)
    assert store.get(run_id).status == "running"  # type: ignore[union-attr]
    with pytest.raises(LookupError, match="is running: another process resumed it"):
        store.claim(run_id)
    with pytest.raises(LookupError, match="is running: it is being resumed"):
        store.suspension(run_id)
    assert store.take_responses(run_id) == []  # the claim took them


async def test_prune_keeps_suspended_runs_and_forgets_what_pruned_runs_left(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    waiting = await suspended_run(tmp_path, store)
    done = (await PipelineExecutor(runs=store).execute(chain(stub(1)))).run_id
    assert store.prune() == 1
    assert store.get(done) is None
    assert store.get(waiting) is not None
    with sqlite3.connect(store.path) as db:
        (suspensions,) = db.execute("SELECT COUNT(*) FROM suspensions").fetchone()
    assert suspensions == 1


async def test_a_gate_of_a_suspended_run_is_answered_once(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    run_id = await suspended_run(tmp_path, store)
    store.respond(run_id, "approve", "first")
    with pytest.raises(LookupError, match=r"'approve' of run .* has already been answered"):
        store.respond(run_id, "approve", "second")
    assert store.suspension(run_id)[2] == {"approve": "first"}


async def test_prune_keeps_a_suspended_run_whose_resumption_was_cancelled(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    store = RunStore(tmp_path)
    run_id = await suspended_run(tmp_path, store)
    store.claim(run_id)
    # What a resumption cancelled after it recorded leaves: the run ended "cancelled",
    # its suspension kept (it can be resumed again).
    with sqlite3.connect(store.path) as db:
        db.execute(
            "UPDATE runs SET status = 'cancelled', finished_at = 0 WHERE run_id = ?", (run_id,)
        )
    assert store.prune() == 0
    record, _, _ = store.suspension(run_id)
    assert record.status == "cancelled"


async def test_a_run_is_recorded_whatever_its_strings_hold(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    async def broken(path: str) -> str:
        raise ValueError(f"cannot read {path}")

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition("files", [StageDefinition("read", broken)])
    result = await PipelineExecutor(runs=store).execute(pipeline, "carol\udcff.wav")
    assert not result.success
    (record,) = store.runs()
    assert record.run_id == result.run_id
    (stage,) = store.stages(record.run_id)
    assert stage.error is not None
    assert stage.error.startswith("ValueError: cannot read carol")


async def test_each_stages_llm_usage_is_recorded_and_served(tmp_path: Path) -> None:
    async def plan(song: str, context: PipelineContext) -> str:
        answer = await context.provider.complete(f"plan the lights for {song}", context)
        return str(answer.text)

    store = RunStore(tmp_path)
    pipeline = PipelineDefinition(
        "llm", [StageDefinition("plan", plan), StageDefinition("quiet", stub(1))]
    )
    context = PipelineContext(provider=FakeLLMProvider(prices={"fake-llm": (1.0, 2.0)}))
    result = await PipelineExecutor(runs=store).execute(pipeline, "carol", context)
    planned, quiet = store.stages(result.run_id)
    assert planned.usage == result.usage_by_stage["plan"]
    assert planned.as_json()["usage"]["requests"] == 1
    assert quiet.usage is None
    # A record another program wrote over is shown without it, not refused.
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE runs SET details = json_set(details, '$.usage.plan', 'garbled')")
    assert store.stages(result.run_id)[0].usage is None
