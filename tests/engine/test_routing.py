"""Routing on outputs: a stage's output (or its router) picks the branches taken; the
stages of the others are skipped, and so is every stage whose inputs all were."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import Stub, stub
from twinklr.core.pipeline import (
    EventKind,
    ExecutionPattern,
    NoOutputError,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    StageDefinition,
    StageStatus,
)


def song_pipeline(kind: Any, **options: Any) -> PipelineDefinition:
    """kind -> {lyrics -> polish, instrumental} -> merge."""
    return PipelineDefinition(
        "songs",
        [
            StageDefinition(
                "kind",
                kind,
                routes={"lyrics": ["lyrics"], "instrumental": ["instrumental"]},
                **options,
            ),
            StageDefinition("lyrics", stub("words", delay=2), inputs=["kind"]),
            StageDefinition("instrumental", stub("chords", delay=3), inputs=["kind"]),
            StageDefinition("polish", stub("polished", delay=1), inputs=["lyrics"]),
            StageDefinition("merge", stub(lambda x: x), inputs=["polish", "instrumental"]),
        ],
    )


def statuses(result: Any) -> dict[str, str]:
    return {stage: r.status.value for stage, r in result.stage_results.items()}


async def test_one_branch_runs_and_the_other_is_skipped_at_the_routing_stages_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await PipelineExecutor().execute(song_pipeline(stub("instrumental", delay=1)))
    assert result.success
    assert statuses(result) == {
        "kind": "succeeded",
        "lyrics": "skipped",
        "instrumental": "succeeded",
        "polish": "skipped",
        "merge": "succeeded",
    }
    timeline = result.timeline
    assert (timeline["lyrics"].started_ms, timeline["lyrics"].finished_ms) == (1000.0, 1000.0)
    assert timeline["polish"].finished_ms == 1000.0  # skipped with it, transitively
    assert (timeline["instrumental"].started_ms, timeline["instrumental"].finished_ms) == (
        1000.0,
        4000.0,
    )
    assert timeline["merge"].started_ms == 4000.0
    # a stage with one live input runs, with None for the skipped one
    assert result.outputs["merge"] == {"polish": None, "instrumental": "chords"}
    assert result.stage_results["kind"].metadata["branches"] == ("instrumental",)
    reasons = {s: result.stage_results[s].metadata["reason"] for s in ("lyrics", "polish")}
    assert reasons == {
        "lyrics": "routing did not take its branch",
        "polish": "routing skipped all its inputs",
    }
    assert set(result.skipped_stages) == {"lyrics", "polish"}


async def test_a_router_can_take_two_branches_or_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    both = await PipelineExecutor().execute(
        song_pipeline(stub({"a": 1}), router=lambda _: ["lyrics", "instrumental"])
    )
    assert both.success
    assert statuses(both)["lyrics"] == statuses(both)["instrumental"] == "succeeded"
    assert both.outputs["merge"] == {"polish": "polished", "instrumental": "chords"}
    assert both.timeline["merge"].started_ms == 3000.0

    none = await PipelineExecutor().execute(song_pipeline(stub("x"), router=lambda _: None))
    assert none.success
    assert statuses(none) == {
        "kind": "succeeded",
        "lyrics": "skipped",
        "instrumental": "skipped",
        "polish": "skipped",
        "merge": "skipped",  # all its inputs were skipped by routing
    }
    empty = await PipelineExecutor().execute(song_pipeline(stub("x"), router=lambda _: []))
    assert statuses(empty) == statuses(none)


async def test_a_stage_listed_under_two_branches_runs_if_either_is_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shared = stub("shared")
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("pick", stub("b"), routes={"a": ["only_a", "shared"], "b": ["shared"]}),
            StageDefinition("only_a", stub(1), inputs=["pick"]),
            StageDefinition("shared", shared, inputs=["pick"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert statuses(result) == {"pick": "succeeded", "only_a": "skipped", "shared": "succeeded"}
    assert len(shared.calls) == 1


async def test_a_stage_that_reads_a_skipped_branch_and_a_live_stage_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("audio", stub("beats", delay=5)),
            StageDefinition("pick", stub("no"), routes={"yes": ["extra"]}),
            StageDefinition("extra", stub("more"), inputs=["pick"]),
            StageDefinition("render", stub(lambda x: x), inputs=["extra", "audio"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, None)
    assert not result.success
    assert "chose branch 'no'" in str(result.error)

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("audio", stub("beats", delay=5)),
            StageDefinition("pick", stub(None), routes={"yes": ["extra"]}),
            StageDefinition("extra", stub("more"), inputs=["pick"]),
            StageDefinition("render", stub(lambda x: x), inputs=["extra", "audio"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, None)
    assert result.success
    assert result.timeline["extra"].finished_ms == 0.0
    assert result.timeline["render"].started_ms == 5000.0
    assert result.outputs["render"] == {"extra": None, "audio": "beats"}


async def test_an_unknown_branch_fails_the_routing_stage_naming_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await PipelineExecutor().execute(song_pipeline(stub("ballad", delay=1)))
    assert not result.success
    failed = result.stage_results["kind"]
    assert failed.status is StageStatus.FAILED
    assert failed.error == (
        "stage 'kind' chose branch 'ballad' (its output gave 'ballad'); "
        "its branches are 'lyrics', 'instrumental'"
    )
    assert result.not_started_stages == ("lyrics", "instrumental", "polish", "merge")


async def test_a_router_that_raises_fails_the_stage(autojump_clock: trio.testing.MockClock) -> None:
    def router(output: Any) -> str:
        raise KeyError(output)

    result = await PipelineExecutor().execute(song_pipeline(stub("x"), router=router))
    assert result.stage_results["kind"].error == "KeyError: 'x'"
    assert result.failed_stages == ("kind",)


async def test_a_skipped_or_failed_routing_stage_takes_no_branch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def never(context: PipelineContext) -> bool:
        return False

    skipped = await PipelineExecutor().execute(song_pipeline(stub("lyrics"), condition=never))
    assert statuses(skipped)["lyrics"] == statuses(skipped)["instrumental"] == "skipped"
    assert statuses(skipped)["merge"] == "skipped"
    failing = await PipelineExecutor().execute(
        song_pipeline(Stub(output="lyrics", fail_times=1), critical=False)
    )
    assert failing.success  # a non-critical failure: no branch, nothing of it runs
    assert statuses(failing)["kind"] == "failed"
    assert statuses(failing)["merge"] == "skipped"


async def test_skips_are_events_and_never_tasks(autojump_clock: trio.testing.MockClock) -> None:
    send, receive = trio.open_memory_channel[Any](math.inf)
    result = await PipelineExecutor().execute(song_pipeline(stub("lyrics")), events=send)
    send.close()
    kinds = [(e.kind, e.stage) async for e in receive if e.stage == "instrumental"]
    assert kinds == [
        (EventKind.STAGE_QUEUED, "instrumental"),
        (EventKind.STAGE_SKIPPED, "instrumental"),
    ]
    assert result.success


async def test_a_long_chain_behind_a_branch_not_taken_is_skipped_without_recursion(
    autojump_clock: trio.testing.MockClock,
) -> None:
    n = 5000
    stages = [
        StageDefinition("pick", stub("other"), routes={"long": ["s0"], "other": []}),
        StageDefinition("s0", stub(0), inputs=["pick"]),
        *(StageDefinition(f"s{i}", stub(i), inputs=[f"s{i - 1}"]) for i in range(1, n)),
    ]
    result = await PipelineExecutor().execute(PipelineDefinition("chain", stages))
    assert result.success
    assert len(result.skipped_stages) == n


async def test_a_streaming_routing_stage_is_not_pipelined(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def words(value: Any) -> Any:
        for word in ("a", "b"):
            await trio.sleep(1)
            yield word

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition(
                "words", words, routes={"a": ["shout"], "b": []}, router=lambda w: w[0]
            ),
            StageDefinition(
                "shout", stub(str.upper), inputs=["words"], pattern=ExecutionPattern.FAN_OUT
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.outputs["shout"] == ["A", "B"]
    assert result.timeline["shout"].started_ms == 2000.0  # after the routing stage ended


def test_routes_are_validated() -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("pick", stub(1), routes={"a": ["ghost", "free"], "": ["x"]}),
            StageDefinition("free", stub(1)),
            StageDefinition("x", stub(1), inputs=["pick"]),
            StageDefinition("lone", stub(1), router=len),
            StageDefinition("odd", stub(1), routes=["a"]),  # type: ignore[call-overload]
            StageDefinition("bad", stub(1), routes={"a": ["x"]}, router="len"),  # type: ignore[call-overload]
            StageDefinition("weird", stub(1), routes={"a": 3}),  # type: ignore[dict-item]
        ],
    )
    with pytest.raises(PipelineValidationError) as raised:
        pipeline.validate()
    assert set(raised.value.problems) >= {
        "stage 'pick' routes branch 'a' to unknown stage 'ghost'",
        "stage 'pick' routes branch 'a' to stage 'free', which does not take 'pick' as an input",
        "stage 'pick': a branch name must be a non-empty string, got ''",
        "stage 'lone' has a router but no routes",
        "stage 'odd': routes must be a non-empty {branch: [stage ids]}, got ['a']",
        "stage 'bad': router must be callable, got 'len'",
        "stage 'weird': branch 'a' must list stage ids, got 3",
    }


# -- random DAGs, random routes, random choices -----------------------------------------


@st.composite
def routed_dags(draw: st.DrawFn) -> tuple[list[list[int]], int, dict[str, list[int]], list[str]]:
    """A DAG, a routing stage among its first ones, branches over some of the stages that
    read it, and the branches its router takes."""
    size = draw(st.integers(2, 16))
    router = draw(st.integers(0, min(2, size - 2)))
    deps = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))) if i else []
        for i in range(size)
    ]
    readers = [i for i in range(size) if router in deps[i]]
    names = ["a", "b", "c"]
    branches = {
        name: sorted(draw(st.sets(st.sampled_from(readers), max_size=3))) if readers else []
        for name in names
    }
    taken = sorted(draw(st.sets(st.sampled_from(names))))
    return deps, router, branches, taken


@settings(max_examples=80, deadline=None)
@given(case=routed_dags())
def test_exactly_the_stages_routing_leaves_out_are_skipped(
    case: tuple[list[list[int]], int, dict[str, list[int]], list[str]],
) -> None:
    deps, router, branches, taken = case
    stubs = [Stub(name=str(i), output=i, delay=i % 3) for i in range(len(deps))]
    routes = {b: [str(t) for t in ts] for b, ts in branches.items()}
    stages = [
        StageDefinition(
            str(i),
            stubs[i],
            inputs=[str(d) for d in deps[i]],
            routes=routes if i == router else None,
            router=(lambda _: taken) if i == router else None,
        )
        for i in range(len(deps))
    ]
    result = trio.run(
        PipelineExecutor().execute,
        PipelineDefinition("random", stages),
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
    assert result.success
    live = {t for b in taken for t in branches[b]}
    off = {t for b, ts in branches.items() if b not in taken for t in ts} - live
    expected_skipped: set[int] = set()
    for i in range(len(deps)):  # indices are a topological order
        if i in off or (deps[i] and all(d in expected_skipped for d in deps[i])):
            expected_skipped.add(i)
    assert set(result.skipped_stages) == {str(i) for i in expected_skipped}
    for i, one in enumerate(stubs):
        assert len(one.calls) == (0 if i in expected_skipped else 1)


async def test_the_output_of_a_stage_routing_left_out_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = song_pipeline(stub("instrumental", delay=1))
    result = await PipelineExecutor().execute(pipeline)
    with pytest.raises(NoOutputError) as left_out:
        result.output(pipeline.get_stage("lyrics"))
    assert str(left_out.value).endswith(
        "it was skipped (routing did not take its branch: routing stage 'kind' took "
        "branch 'instrumental')"
    )
    with pytest.raises(NoOutputError, match=r"skipped \(routing skipped all its inputs\)"):
        result.output(pipeline.get_stage("polish"))


async def test_a_router_giving_an_unhashable_value_fails_naming_stage_value_and_branches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await PipelineExecutor().execute(song_pipeline(stub([["lyrics"]])))
    assert result.failed_stages == ("kind",)
    assert result.error == (
        "stage 'kind' failed: stage 'kind' chose [['lyrics']], which names no branch (its "
        "output gave it); its branches are 'lyrics', 'instrumental'"
    )


async def test_a_stage_runs_when_any_router_listing_it_took_its_branch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "two routers",
        [
            StageDefinition("a", stub("x"), routes={"x": ["both"], "y": ["only_a"]}),
            StageDefinition("b", stub("q"), routes={"p": ["both"], "q": ["only_b"]}),
            StageDefinition("both", stub("ran"), inputs=["a", "b"]),
            StageDefinition("only_a", stub("ran"), inputs=["a"]),
            StageDefinition("only_b", stub("ran"), inputs=["b"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert statuses(result) == {
        "a": "succeeded",
        "b": "succeeded",
        "both": "succeeded",  # a took its branch, b did not: it runs
        "only_a": "skipped",
        "only_b": "succeeded",
    }
