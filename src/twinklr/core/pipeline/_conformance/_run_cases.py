"""The run-store contract as cases: `run_store_conformance`. Each case drives the store
the way the product does, through real runs of small pipelines (recorded, suspended at a
gate, answered, claimed, resumed), then reads it back the way the ``runs`` command and
the web view do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from .._cache._store import MemoryCacheStore
from .._engine._executor import PipelineExecutor
from .._kinds._gate import WaitForInput
from .._observe._contract import RunStoreProtocol
from .._observe._events import EventKind
from .._values._results import PipelineResult
from ..definition import PipelineDefinition, StageDefinition
from ._common import Check, check_each, expect


async def plan(value: int) -> str:
    """The first stage of the cases' pipelines."""
    return f"plan {value}"


async def render(plan: str) -> str:
    """What follows the plan (or its approval)."""
    return f"rendered {plan}"


async def breaks(plan: str) -> str:
    """A stage that fails."""
    msg = f"cannot render {plan}"
    raise ValueError(msg)


def _chain(
    name: str = "conformance", last: Callable[[str], Awaitable[str]] = render
) -> PipelineDefinition:
    return PipelineDefinition(
        name, [StageDefinition("plan", plan), StageDefinition("render", last, inputs=["plan"])]
    )


def _gated() -> PipelineDefinition:
    return PipelineDefinition(
        "gated",
        [
            StageDefinition("plan", plan),
            StageDefinition(
                "approve", WaitForInput("Render it?", answer_type=str), inputs=["plan"]
            ),
            StageDefinition("render", render, inputs=["approve"]),
        ],
    )


def _raises(kind: type[Exception], call: Callable[[], object], what: str) -> None:
    try:
        call()
    except kind:
        return
    msg = f"{what} did not raise {kind.__name__}"
    raise AssertionError(msg)


async def _suspended(store: RunStoreProtocol, cache: MemoryCacheStore) -> PipelineResult:
    executor = PipelineExecutor(cache=cache, runs=store, suspend_on_wait=True)
    result = await executor.execute(_gated(), 1)
    expect(result.waiting_stages == ("approve",), f"the run did not suspend: {result.error}")
    return result


async def _recorded(store: RunStoreProtocol) -> None:
    result = await PipelineExecutor(runs=store).execute(_chain(), 1)
    run_id = result.run_id
    record = store.get(run_id)
    expect(record is not None, f"run {run_id} was not recorded")
    assert record is not None  # noqa: S101 (for the type checker)
    expect(record.status == "succeeded", f"the run was recorded {record.status}")
    expect(record.pipeline == "conformance", f"the run's pipeline is {record.pipeline!r}")
    found = store.get(run_id[:8])
    expect(found is not None and found.run_id == run_id, "a prefix of its id did not find it")
    statuses = {stage.id: stage.status for stage in store.stages(run_id)}
    expected = {"plan": "succeeded", "render": "succeeded"}
    expect(statuses == expected, f"its stages were recorded {statuses}")
    graph = store.graph(run_id) or {"stages": []}
    ids = [stage["id"] for stage in graph["stages"]]
    expect(ids == ["plan", "render"], f"its graph has stages {ids}")
    kinds = [event.kind for event in store.events(run_id)]
    expect(kinds[-1:] == [EventKind.RUN_FINISHED], f"its events end with {kinds[-1:]}")
    expect(store.segments(run_id) == [], "a run never resumed has segments")
    expect(store.get("0" * 32) is None, "an unknown run was found")


async def _listed(store: RunStoreProtocol) -> None:
    executor = PipelineExecutor(runs=store)
    first = await executor.execute(_chain(), 1)
    second = await executor.execute(_chain("other", breaks), 2)
    third = await executor.execute(_chain(), 3)
    listed = [record.run_id for record in store.runs()]
    newest = [third.run_id, second.run_id, first.run_id]
    expect(listed == newest, "runs() is not every run, newest first")
    other = [record.run_id for record in store.runs(pipeline="other")]
    expect(other == [second.run_id], f"runs(pipeline=...) gave {other}")
    failed = [record.run_id for record in store.runs(status="failed")]
    expect(failed == [second.run_id], f"runs(status='failed') gave {failed}")
    expect(len(store.runs(limit=2)) == len(newest) - 1, "runs(limit=2) did not give two")


async def _failed(store: RunStoreProtocol) -> None:
    result = await PipelineExecutor(runs=store).execute(_chain(last=breaks), 1)
    record = store.get(result.run_id)
    expect(record is not None and record.status == "failed", "a failed run was not recorded so")
    assert record is not None  # noqa: S101
    stage = {stage.id: stage for stage in store.stages(result.run_id)}["render"]
    expect(stage.status == "failed", f"the failed stage was recorded {stage.status}")
    error = stage.error or ""
    expect("cannot render plan 1" in error, f"the stage's error was recorded as {error!r}")


async def _gate(store: RunStoreProtocol) -> None:
    result = await _suspended(store, MemoryCacheStore())
    run_id = result.run_id
    record = store.get(run_id)
    expect(record is not None and record.status == "waiting", "a suspended run is not waiting")
    gates = [gate["stage_id"] for gate in store.waiting(run_id)]
    expect(gates == ["approve"], f"the gates waiting are {gates}")
    given = store.recorded_input(run_id, "approve")
    expect(given == "plan 1", f"the gate's input was recorded as {given!r}")
    _raises(ValueError, lambda: store.respond(run_id, "approve", 7), "an answer of the wrong type")
    answered = store.respond(run_id[:8], "approve", "yes")
    expect(answered == run_id, f"respond() by prefix returned {answered!r}")
    _raises(LookupError, lambda: store.respond(run_id, "approve", "no"), "a second answer")
    _raises(LookupError, lambda: store.respond(run_id, "plan", "no"), "answering a stage")
    _raises(LookupError, lambda: store.respond("0" * 32, "approve", "no"), "an unknown run")
    _, state, answers = store.suspension(run_id)
    expect(bool(state), "the suspension kept no state")
    expect(answers == {"approve": "yes"}, f"the suspension's answers are {answers}")


async def _claimed_once(store: RunStoreProtocol) -> None:
    cache = MemoryCacheStore()
    run_id = (await _suspended(store, cache)).run_id
    store.claim(run_id)
    _raises(LookupError, lambda: store.claim(run_id), "claiming a claimed run")
    record = store.get(run_id)
    expect(record is not None and record.status == "running", "a claimed run is not running")
    store.unclaim(run_id)
    record = store.get(run_id)
    expect(record is not None and record.status == "waiting", "an unclaimed run is not waiting")
    store.respond(run_id, "approve", "yes")
    resumed = await PipelineExecutor(cache=cache, runs=store).resume(run_id, pipeline=_gated())
    expect(resumed.success, f"resuming failed: {resumed.error}")
    expect(resumed.outputs.get("render") == "rendered yes", "the answer did not reach the run")
    record = store.get(run_id)
    expect(record is not None and record.status == "succeeded", "the resumed run is not done")
    _raises(LookupError, lambda: store.suspension(run_id), "the suspension of a finished run")


async def _answers_taken_once(store: RunStoreProtocol) -> None:
    run_id = (await _suspended(store, MemoryCacheStore())).run_id
    store.respond(run_id, "approve", "yes")
    taken = store.take_responses(run_id)
    expect(taken == [("approve", "yes")], f"take_responses() gave {taken}")
    expect(store.take_responses(run_id) == [], "an answer was taken twice")
    store.forget_response(run_id, "approve")
    store.respond(run_id, "approve", "again")  # (a refused answer can be replaced)


async def _pruned(store: RunStoreProtocol) -> None:
    finished = await PipelineExecutor(runs=store).execute(_chain(), 1)
    waiting = await _suspended(store, MemoryCacheStore())
    removed = store.prune()
    expect(removed == 1, f"prune() removed {removed} runs, not the one finished")
    expect(store.get(finished.run_id) is None, "a pruned run is still there")
    expect(store.get(waiting.run_id) is not None, "prune() forgot a resumable run")


async def _concurrent(store: RunStoreProtocol) -> None:
    runs = 10
    executor = PipelineExecutor(runs=store)
    async with trio.open_nursery() as nursery:
        for n in range(runs):
            nursery.start_soon(executor.execute, _chain(), n)
    recorded = [record for record in store.runs() if record.status == "succeeded"]
    expect(len(recorded) == runs, f"{runs} concurrent runs were recorded as {len(recorded)}")


_RUN_CASES: list[tuple[str, Check]] = [
    ("a run is recorded with its stages, graph and events, found by id or prefix", _recorded),
    ("runs() lists newest first, by pipeline, status and limit", _listed),
    ("a failed run is recorded failed, with its stage's error", _failed),
    ("a suspended run waits at its gate and takes one answer of its type", _gate),
    ("a suspended run is claimed by one process at a time, then resumed", _claimed_once),
    ("an answer is taken once, and one forgotten can be given again", _answers_taken_once),
    ("prune() forgets finished runs and keeps resumable ones", _pruned),
    ("concurrent runs are all recorded", _concurrent),
]


async def run_store_conformance(factory: Callable[[], RunStoreProtocol]) -> None:
    """Check a run store against the
    [RunStoreProtocol][twinklr.core.pipeline.RunStoreProtocol] contract, each case on a
    fresh store from ``factory``, through real runs of small pipelines (recorded,
    failed, suspended at a gate, answered, claimed, resumed, pruned).

    Raises:
        AssertionError: The first promise the store broke, named, with what it did.
    """
    await check_each("run-store", factory, _RUN_CASES)
