"""Suspending a run whose only remaining work waits for input, and resuming it later
(in this process or another) from the cache and the run store."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import gc
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog.testing
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RandomDag, Stub, cache_warnings, random_dags, run_virtual, stub
from twinklr.core.pipeline import (
    EventKind,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RecordedRun,
    RunStatus,
    RunStore,
    SQLiteCacheStore,
    StageDefinition,
    StageStatus,
    WaitForInput,
)
from twinklr.core.pipeline._cache._serialize import NotSerializableError
from twinklr.core.pipeline._engine import _resume


def show(**stubs: Stub) -> PipelineDefinition:
    """plan (1 s) -> approve (a gate) -> render (1 s); lights (3 s) beside them."""
    return PipelineDefinition(
        "show",
        [
            StageDefinition("plan", stubs["plan"]),
            StageDefinition("approve", WaitForInput("Render this plan?"), inputs=["plan"]),
            StageDefinition("render", stubs["render"], inputs=["approve"]),
            StageDefinition("lights", stubs["lights"]),
        ],
    )


def stubs() -> dict[str, Stub]:
    return {
        "plan": stub("the plan", delay=1),
        "render": stub(lambda answer: f"rendered ({answer})", delay=1),
        "lights": stub("lights ready", delay=3),
    }


@pytest.fixture
def stores(tmp_path: Path) -> tuple[MemoryCacheStore, RunStore]:
    return MemoryCacheStore(), RunStore(tmp_path)


async def suspend(
    stores: tuple[MemoryCacheStore, RunStore], pipeline: PipelineDefinition
) -> tuple[PipelineExecutor, PipelineResult]:
    """A suspending executor over ``stores``, and the run of ``pipeline`` it suspended."""
    cache, runs = stores
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    result = await executor.execute(pipeline)
    assert result.waiting_stages
    return executor, result


async def test_a_run_down_to_its_gate_ends_waiting_when_the_rest_has_finished(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    stages = stubs()
    result = await executor.execute(show(**stages))
    # The gate opened at 1 s; the run went on with lights and suspended at exactly 3 s.
    assert trio.current_time() == 3.0
    assert result.total_duration_ms == 3000.0
    assert result.waiting_stages == ("approve",)
    assert result.waiting
    assert (result.success, result.error, result.cancelled) == (False, None, False)
    assert result.cancelled_stages == ()
    assert result.not_started_stages == ("render",)
    assert result.outputs == {"plan": "the plan", "lights": "lights ready"}
    assert stages["render"].calls == []
    record = runs.get(result.run_id)
    assert record is not None
    assert record.status == "waiting"
    statuses = {stage.id: stage.status for stage in runs.stages(result.run_id)}
    assert statuses == {
        "plan": "succeeded",
        "approve": "waiting",
        "render": "not_started",
        "lights": "succeeded",
    }
    assert [gate["stage_id"] for gate in runs.waiting(result.run_id)] == ["approve"]


async def test_resuming_serves_what_finished_from_the_cache_and_runs_the_rest(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    first = stubs()
    suspended = await PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True).execute(
        show(**first)
    )
    again = stubs()  # the stage code of a later process: nothing has run there yet
    pipeline = show(**again)
    start = trio.current_time()
    result = await PipelineExecutor(cache=cache, runs=runs).resume(
        suspended.run_id, responses={"approve": "yes"}, pipeline=pipeline
    )
    assert result.success, result.error
    assert result.run_id == suspended.run_id  # the same run, gone on
    assert result.outputs["render"] == "rendered (yes)"
    assert result.cached_stages == ("plan", "lights")
    assert result.stage_results["approve"].status is StageStatus.SUCCEEDED
    assert [len(s.calls) for s in again.values()] == [0, 1, 0]  # only render ran
    assert result.timeline["render"].started_ms == 0.0  # no stage waited for anything
    assert trio.current_time() - start == 1.0
    record = runs.get(result.run_id)
    assert record is not None
    assert record.status == "succeeded"
    with pytest.raises(LookupError, match=r"is not suspended \(succeeded\): there is nothing"):
        await PipelineExecutor(cache=cache, runs=runs).resume(result.run_id, pipeline=pipeline)


async def test_without_a_pipeline_resume_finds_the_same_definition_in_this_process(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    pipeline = show(**stubs())
    executor, suspended = await suspend(stores, pipeline)
    result = await executor.resume(suspended.run_id[:6], responses={"approve": True})
    assert result.success
    assert result.outputs["render"] == "rendered (True)"


async def test_resume_says_when_the_definition_is_not_in_this_process(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)

    def definition(*extra: StageDefinition[Any]) -> PipelineDefinition:
        gate = StageDefinition("approve", WaitForInput("?"))
        return PipelineDefinition("edited-since", [gate, *extra])

    suspended = await executor.execute(definition())
    gc.collect()  # the definition it ran is gone; only an edited one is defined now
    edited = definition(StageDefinition("more", stub("x")))
    with pytest.raises(LookupError, match=r"differ from the one run \w+ ran \(edited since\?\)"):
        await executor.resume(suspended.run_id, responses={"approve": 1})
    with pytest.raises(ValueError, match="is of pipeline 'edited-since', not 'other'"):
        await executor.resume(suspended.run_id, pipeline=PipelineDefinition("other", []))
    with pytest.raises(LookupError, match="no run 'nope'"):
        await executor.resume("nope")
    resumed = await executor.resume(suspended.run_id, responses={"approve": 1}, pipeline=edited)
    assert resumed.outputs == {"approve": 1, "more": "x"}


def test_a_run_store_without_a_definition_of_that_name_says_to_build_it() -> None:
    record = recorded_run(pipeline="never-defined")
    with pytest.raises(LookupError, match="no pipeline 'never-defined' is defined in this"):
        _resume.find_definition(record, None)


def recorded_run(**fields: Any) -> RecordedRun:
    defaults: dict[str, Any] = {
        "run_id": "r1",
        "pipeline": "p",
        "definition": "d",
        "input_fingerprint": None,
        "status": "waiting",
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "error": None,
        "stage_count": 0,
        "host": "h",
        "pid": 1,
    }
    return RecordedRun(**{**defaults, **fields})


async def test_answers_are_checked_against_the_gates(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    pipeline = show(**stubs())
    executor, suspended = await suspend(stores, pipeline)
    with pytest.raises(ValueError, match=r"'render': it is not a gate .* \(its gates: 'approve'\)"):
        await executor.resume(suspended.run_id, responses={"render": 1})
    with pytest.raises(ValueError, match="'ghost': it is not a stage"):
        await executor.resume(suspended.run_id, responses={"ghost": 1})
    record = stores[1].get(suspended.run_id)
    assert record is not None
    assert record.status == "waiting"  # a refused resume leaves the run as it was


async def test_an_answer_given_through_the_store_while_suspended_is_used(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    pipeline = show(**stubs())
    executor, suspended = await suspend(stores, pipeline)
    stores[1].respond(suspended.run_id, "approve", {"ok": True})  # as runs respond does
    result = await executor.resume(suspended.run_id)
    assert result.outputs["render"] == "rendered ({'ok': True})"


async def test_a_gate_without_an_answer_suspends_again_and_earlier_answers_are_kept(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    render = stub(lambda both: f"{both['first']}+{both['second']}")
    pipeline = PipelineDefinition(
        "two-gates",
        [
            StageDefinition("plan", stub("p", delay=1)),
            StageDefinition("first", WaitForInput("1?"), inputs=["plan"]),
            StageDefinition("middle", stub(lambda x: f"m({x})", delay=1), inputs=["first"]),
            StageDefinition("second", WaitForInput("2?"), inputs=["middle"]),
            StageDefinition("render", render, inputs=["first", "second"]),
        ],
    )
    one = await executor.execute(pipeline)
    assert one.waiting_stages == ("first",)
    two = await executor.resume(one.run_id, responses={"first": "A"})
    assert two.waiting_stages == ("second",)
    assert two.run_id == one.run_id
    assert two.outputs["middle"] == "m(A)"
    assert [gate["stage_id"] for gate in runs.waiting(one.run_id)] == ["second"]
    three = await executor.resume(one.run_id, responses={"second": "B"})
    assert three.success
    assert three.outputs["render"] == "A+B"  # the first answer, given two legs ago
    assert three.cached_stages == ("plan", "middle")


async def test_handle_suspend_waits_for_the_other_stages_then_ends_the_run_waiting(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    stages = stubs()
    pipeline = show(**stages)  # (resume finds it: it is defined in this process)
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(cache=cache, runs=runs).start(nursery, pipeline)
        await trio.sleep(2)
        assert [request.stage_id for request in handle.waiting()] == ["approve"]
        handle.suspend()  # lights still has a second to go: it is not cancelled
        result = await handle.wait()
    assert trio.current_time() == 3.0
    assert handle.status is RunStatus.WAITING
    events = [event async for event in handle.events()]
    assert events[-1].kind is EventKind.RUN_FINISHED
    assert events[-1].success is False
    assert [e.kind for e in events if e.stage == "approve"][-1] is EventKind.INPUT_REQUESTED
    assert result.waiting_stages == ("approve",)
    assert result.outputs["lights"] == "lights ready"
    assert stages["lights"].cancelled == []
    resumed = await PipelineExecutor(cache=cache, runs=runs).resume(
        result.run_id, responses={"approve": "go"}
    )
    assert resumed.outputs["render"] == "rendered (go)"


async def test_suspending_a_run_without_gates_changes_nothing(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    pipeline = PipelineDefinition("no-gates", [StageDefinition("a", stub(1, delay=1))])
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(cache=cache, runs=runs).start(nursery, pipeline)
        handle.suspend()  # nothing will ever wait for input: the run just ends
        result = await handle.wait()
    assert (result.success, result.waiting_stages, handle.status) == (
        True,
        (),
        RunStatus.SUCCEEDED,
    )


async def test_an_answer_given_to_the_handle_before_suspending_is_kept(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    pipeline = PipelineDefinition(
        "kept",
        [
            StageDefinition("first", WaitForInput("1?")),
            StageDefinition("second", WaitForInput("2?")),
            StageDefinition("both", stub(lambda x: x), inputs=["first", "second"]),
        ],
    )
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(cache=cache, runs=runs).start(nursery, pipeline)
        await trio.sleep(1)
        handle.respond("first", 1)
        await trio.sleep(1)
        handle.suspend()
        result = await handle.wait()
    assert result.waiting_stages == ("second",)
    assert result.outputs == {"first": 1}
    resumed = await PipelineExecutor(cache=cache, runs=runs).resume(
        result.run_id, responses={"second": 2}
    )
    assert resumed.outputs["both"] == {"first": 1, "second": 2}


async def test_suspend_needs_a_cache_and_a_run_store(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="suspend_on_wait needs a cache"):
        PipelineExecutor(runs=RunStore(tmp_path), suspend_on_wait=True)
    with pytest.raises(ValueError, match="suspend_on_wait needs a cache"):
        PipelineExecutor(cache=MemoryCacheStore(), suspend_on_wait=True)
    with pytest.raises(ValueError, match="resume needs the run store"):
        await PipelineExecutor(cache=MemoryCacheStore()).resume("abc")
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, show(**stubs()))
        with pytest.raises(RuntimeError, match="cannot be suspended: its executor needs a cache"):
            handle.suspend()
        await trio.sleep(1.5)
        handle.respond("approve", "fine")
        assert (await handle.wait()).success


class Opaque:
    """An initial input the cache cannot describe."""


async def test_an_input_that_cannot_be_kept_refuses_the_suspension_and_the_run_waits_on(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        async with trio.open_nursery() as nursery:
            handle = await executor.start(nursery, show(**stubs()), Opaque())
            await trio.sleep(10)
            assert handle.status is RunStatus.RUNNING
            handle.respond("approve", "still here")
            result = await handle.wait()
    assert result.success
    assert "no stage was cached: the initial input has no fingerprint" in said[0]
    (refused,) = [entry for entry in logs if entry["event"] == "run_not_suspended"]
    assert "initial input cannot be kept for resuming" in refused["reason"]


async def test_a_cancelled_resumption_can_be_resumed_again(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    stages = stubs()
    rendering = trio.Event()

    async def slow_render(answer: Any) -> str:
        rendering.set()
        await trio.sleep(10)
        return f"rendered ({answer})"

    pipeline = PipelineDefinition(
        "show",
        [
            *show(**stages).stages[:2],
            # (cache=False: it closes over an Event, which has no fingerprint)
            StageDefinition("render", slow_render, inputs=["approve"], cache=False),
            StageDefinition("lights", stages["lights"]),
        ],
    )
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    suspended = await executor.execute(pipeline)

    async def resume_then_cancel() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(executor.resume, suspended.run_id, responses={"approve": 1})
            )
            await rendering.wait()
            nursery.cancel_scope.cancel()

    await resume_then_cancel()
    record = stores[1].get(suspended.run_id)
    assert record is not None
    assert record.status == "cancelled"
    result = await executor.resume(suspended.run_id)  # the answer was kept
    assert result.outputs["render"] == "rendered (1)"


async def test_a_resumption_that_never_started_gives_the_run_back(
    autojump_clock: trio.testing.MockClock,
    stores: tuple[MemoryCacheStore, RunStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline = show(**stubs())
    executor, suspended = await suspend(stores, pipeline)

    async def gone_before_it_began(*_: object, **__: object) -> None:
        msg = "the loop went away"
        raise RuntimeError(msg)

    monkeypatch.setattr(executor, "execute", gone_before_it_began)
    with pytest.raises(RuntimeError, match="the loop went away"):
        await executor.resume(suspended.run_id, responses={"approve": 1})
    assert stores[1].get(suspended.run_id).status == "waiting"  # type: ignore[union-attr]
    monkeypatch.undo()
    resumed = await executor.resume(suspended.run_id)
    assert resumed.outputs["render"] == "rendered (1)"  # the answer was kept by the claim


async def test_a_resumption_cancelled_while_it_claims_gives_the_run_back(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    pipeline = show(**stubs())
    executor, suspended = await suspend(stores, pipeline)
    runs = stores[1]
    claim = runs.claim

    with trio.CancelScope() as scope:

        def claimed_then_cancelled(run_id: str, state: bytes | None = None) -> None:
            claim(run_id, state)  # the claim is taken in the store...
            trio.from_thread.run_sync(scope.cancel)  # ...and the caller cancelled meanwhile

        runs.claim = claimed_then_cancelled  # type: ignore[method-assign]
        await executor.resume(suspended.run_id, responses={"approve": 1})
    assert scope.cancelled_caught
    runs.claim = claim  # type: ignore[method-assign]
    # Never left claimed ("running"): given back, or recorded as a cancelled resumption.
    assert runs.get(suspended.run_id).status in ("waiting", "cancelled")  # type: ignore[union-attr]
    resumed = await executor.resume(suspended.run_id)
    assert resumed.outputs["render"] == "rendered (1)"


async def test_a_gate_is_never_served_from_the_cache_to_a_new_run(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    pipeline = show(**stubs())
    executor, suspended = await suspend(stores, pipeline)
    assert (await executor.resume(suspended.run_id, responses={"approve": "yes"})).success
    fresh = await executor.execute(pipeline)  # the same input: it must be asked again
    assert fresh.waiting_stages == ("approve",)
    assert fresh.cached_stages == ("plan", "lights")


@dataclasses.dataclass(frozen=True)
class Song:
    title: str
    bpm: int


async def test_the_initial_input_comes_back_with_its_type(
    autojump_clock: trio.testing.MockClock, stores: tuple[MemoryCacheStore, RunStore]
) -> None:
    cache, runs = stores
    seen = stub(lambda song: (type(song).__name__, song.bpm))
    pipeline = PipelineDefinition(
        "typed",
        [
            StageDefinition("gate", WaitForInput("?")),
            StageDefinition("after", seen, inputs=["gate"]),
            StageDefinition("entry", stub(lambda song: song), cache=False),
            StageDefinition("use", seen, inputs=["entry"], cache=False),
        ],
    )
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    suspended = await executor.execute(pipeline, Song("Carol", 120))
    result = await executor.resume(suspended.run_id, responses={"gate": Song("Noel", 90)})
    assert result.outputs["use"] == ("Song", 120)  # a stage the cache does not keep ran again
    assert result.outputs["after"] == ("Song", 90)


def test_a_resumption_in_another_process_recomputes_only_the_stages_after_the_gate(
    tmp_path: Path,
) -> None:
    """The run suspends in one process and a second one resumes it: both build the
    pipeline from the same module, and each stage call is logged to a file."""
    module = tmp_path / "approval_show.py"
    module.write_text(
        textwrap.dedent(
            """
            import os
            from twinklr.core.pipeline import PipelineDefinition, StageDefinition, WaitForInput

            LOG = os.environ["CALLS"]

            def logged(name, make):
                async def stage(value):
                    with open(LOG, "a") as log:
                        log.write(f"{os.getpid()} {name}\\n")
                    return make(value)
                stage.__name__ = name
                return stage

            pipeline = PipelineDefinition(
                "approval-show",
                [
                    StageDefinition("plan", logged("plan", lambda song: f"plan of {song}")),
                    StageDefinition("lights", logged("lights", lambda song: f"lights for {song}")),
                    StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
                    StageDefinition(
                        "render",
                        logged("render", lambda both: f"{both['approve']}: {both['lights']}"),
                        inputs=["approve", "lights"],
                    ),
                ],
            )
            """
        )
    )
    script = textwrap.dedent(
        """
        import sys, trio
        from approval_show import pipeline
        from twinklr.core.pipeline import PipelineExecutor, RunStore, SQLiteCacheStore

        store = sys.argv[1]
        executor = PipelineExecutor(
            cache=SQLiteCacheStore(store), runs=RunStore(store), suspend_on_wait=True
        )

        async def main():
            if sys.argv[2] == "start":
                result = await executor.execute(pipeline, "Silent Night")
                print(result.run_id, ",".join(result.waiting_stages))
            else:
                result = await executor.resume(sys.argv[3], responses={"approve": "approved"})
                print(result.success, result.outputs["render"], ",".join(result.cached_stages))

        trio.run(main)
        """
    )
    calls = tmp_path / "calls.log"
    env = {**os.environ, "CALLS": str(calls), "PYTHONPATH": str(tmp_path)}
    (tmp_path / "store").mkdir()
    store = str(tmp_path / "store")

    def run(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script, store, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    run_id, waiting = run("start")
    assert waiting == "approve"
    first = calls.read_text().split("\n")
    assert sorted(line.split()[1] for line in first if line) == ["lights", "plan"]
    resumed = run("resume", run_id)
    assert resumed == ["True", "approved:", "lights", "for", "Silent", "Night", "plan,lights"]
    logged = [line.split() for line in calls.read_text().splitlines()]
    assert len(logged) == 3  # nothing recomputed but render
    assert logged[-1][1] == "render"
    assert logged[-1][0] != logged[0][0]  # in another process


def test_resume_from_asyncio(tmp_path: Path) -> None:
    cache, runs = SQLiteCacheStore(tmp_path), RunStore(tmp_path)
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)

    async def plan(_: object) -> str:
        await asyncio.sleep(0)  # a stage written for asyncio
        return "the plan"

    async def render(answer: str) -> str:
        await asyncio.sleep(0)
        return f"rendered {answer}"

    pipeline = PipelineDefinition(
        "from-asyncio",
        [
            StageDefinition("plan", plan),
            StageDefinition("approve", WaitForInput("?"), inputs=["plan"]),
            StageDefinition("render", render, inputs=["approve"]),
        ],
    )

    async def main() -> tuple[Any, Any]:
        suspended = await executor.execute(pipeline)
        resumed = await executor.resume(suspended.run_id, responses={"approve": "ok"})
        return suspended, resumed

    suspended, resumed = asyncio.run(main())
    assert suspended.waiting_stages == ("approve",)
    assert resumed.outputs["render"] == "rendered ok"
    assert resumed.cached_stages == ("plan",)


def test_the_suspension_round_trips_and_an_unreadable_one_is_named() -> None:
    kept = _resume.Suspension(
        initial_input=Song("Carol", 120), answers={"gate": [1, 2.5, None]}, source="m:a"
    )
    assert _resume.decode(_resume.encode(kept)) == kept
    with pytest.raises(ValueError, match="the suspended run's state cannot be read"):
        _resume.decode(b'{"format": 99}')
    with pytest.raises(NotSerializableError, match="the answer to gate 'gate' cannot be kept"):
        _resume.encode(
            _resume.Suspension(initial_input=None, answers={"gate": Opaque()}, source=None)
        )


@settings(max_examples=40, deadline=None)
@given(dag=random_dags(max_size=12, max_duration=3), gated=st.sets(st.integers(0, 11), max_size=4))
def test_suspending_and_resuming_a_random_dag_runs_each_stage_once_to_the_same_result(
    tmp_path_factory: pytest.TempPathFactory, dag: RandomDag, gated: set[int]
) -> None:
    deps, durations, _ = dag
    gates = {i for i in gated if i < len(deps)}
    calls: collections.Counter[int] = collections.Counter()

    def node(i: int) -> Any:
        async def stage(value: Any, context: Any) -> str:
            calls[i] += 1
            await trio.sleep(durations[i])
            return f"{i}:{hashlib.sha256(repr(value).encode()).hexdigest()[:8]}"

        return stage

    def answer(i: int) -> Any:
        async def given_answer(value: Any, context: Any) -> str:
            return f"answer-{i}"

        return given_answer

    def definition(*, with_gates: bool) -> PipelineDefinition:
        return PipelineDefinition(
            "random-gates",
            [
                StageDefinition(
                    str(i),
                    (WaitForInput(f"{i}?") if with_gates else answer(i)) if i in gates else node(i),
                    inputs=[str(d) for d in deps[i]],
                )
                for i in range(len(deps))
            ],
        )

    expected = run_virtual(definition(with_gates=False)).outputs
    calls.clear()
    pipeline = definition(with_gates=True)
    directory = tmp_path_factory.mktemp("resume")

    async def suspend_and_resume() -> Any:
        executor = PipelineExecutor(
            cache=MemoryCacheStore(), runs=RunStore(directory), suspend_on_wait=True
        )
        result = await executor.execute(pipeline)
        legs = 0
        while result.waiting_stages:
            legs += 1
            assert legs <= len(gates)
            assert set(result.waiting_stages) <= {str(i) for i in gates}
            answers = {stage: f"answer-{stage}" for stage in result.waiting_stages}
            result = await executor.resume(result.run_id, responses=answers, pipeline=pipeline)
        return result

    result = trio.run(suspend_and_resume, clock=trio.testing.MockClock(autojump_threshold=0))
    assert result.success, result.error
    assert dict(result.outputs) == dict(expected)
    assert all(calls[i] == 1 for i in range(len(deps)) if i not in gates), calls
