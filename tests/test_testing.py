"""The testing kit, tested with itself on the demo pipeline and on stub stages."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    EventKind,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
    StageStatus,
)
from twinklr.core.pipeline.example_usage import build_pipeline, demo_context
from twinklr.core.pipeline.testing import (
    RunRecord,
    StageCall,
    StubStage,
    fixed,
    flaky,
    raising,
    record_run,
    recording,
    run_virtual,
)


def test_the_demo_pipeline_runs_in_dataflow_order() -> None:
    record = run_virtual(build_pipeline(), "Carol", demo_context("Carol"))
    record.assert_succeeded()
    record.assert_succeeded("audio", "macro", "render")
    record.assert_ran_concurrently("profile", "lyrics")
    record.assert_ran_before("audio", "profile")
    record.assert_ran_before("macro", "group_contexts")
    record.assert_ran_after("render", "groups")
    record.assert_no_task_left_running()
    assert record.result.total_duration_ms == 280
    assert record.stages["groups"].items[5].started_ms == 230  # six items, three at a time
    assert record.events[0].kind is EventKind.RUN_STARTED
    assert record.events[-1].kind is EventKind.RUN_FINISHED
    assert record.leftover_tasks == ()


def test_a_failure_in_the_demo_cancels_the_running_branch() -> None:
    # The demo with its profile stage swapped for a stub that fails 10 ms in, while the
    # lyrics stage (a 20 ms LLM call beside it) is running.
    demo = build_pipeline()
    broken = raising(RuntimeError("no energy"), delay=0.01, name="profile")
    stages = [
        # (mypy's attrs plugin cannot follow the overloaded __init__ of a generic definition)
        attrs.evolve(sdef, stage=broken)  # type: ignore[misc]
        if sdef.id == "profile"
        else sdef
        for sdef in demo.stages
    ]
    pipeline = attrs.evolve(demo, stages=stages)
    record = run_virtual(pipeline, "Carol", demo_context("Carol"))
    record.assert_cancelled("lyrics")
    for stage in ("macro", "group_contexts", "groups", "render"):
        record.assert_never_started(stage)
    record.assert_no_task_left_running()
    assert record.result.error == "stage 'profile' failed: RuntimeError: no energy"
    assert record.stages["lyrics"].finished_ms == 60
    assert broken.calls[0].started_at == 0.05


async def test_record_run_inside_a_trio_test(autojump_clock: trio.testing.MockClock) -> None:
    record = await record_run(build_pipeline(with_lyrics=False), "Hum", demo_context("Hum"))
    assert record.result.stage_results["lyrics"].status is StageStatus.SKIPPED
    assert record.result.skipped_stages == ("lyrics",)
    record.assert_ran_before("profile", "macro")
    record.assert_no_task_left_running()


def pipeline_of(**stages: tuple[StubStage, list[str]]) -> PipelineDefinition:
    """A pipeline of stub stages: id -> (stage, inputs)."""
    return PipelineDefinition(
        name="stubs",
        stages=[StageDefinition(sid, stage, inputs=deps) for sid, (stage, deps) in stages.items()],
    )


def test_stub_stages_record_their_calls_on_the_virtual_clock() -> None:
    source = fixed(3, delay=1.0)
    double = recording(lambda x: x * 2, delay=0.5)
    retried = flaky(2, "ok", error=ConnectionError("reset"), delay=0.25)
    pipeline = PipelineDefinition(
        name="stubs",
        stages=[
            StageDefinition("source", source),
            StageDefinition("double", double, inputs=["source"]),
            StageDefinition(
                "retried",
                retried,
                inputs=["source"],
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=100),
            ),
        ],
    )
    record = run_virtual(pipeline)
    record.assert_succeeded()
    assert source.calls == [StageCall(None, 0.0, 1.0, "succeeded")]
    assert double.calls == [StageCall(3, 1.0, 1.5, "succeeded")]
    assert double.inputs == [3]
    assert record.result.outputs["double"] == 6
    # attempts at 1.0, 1.35 (after 100 ms), 1.8 (after 200 ms)
    assert retried.calls == [
        StageCall(3, 1.0, 1.25, "raised"),
        StageCall(3, 1.35, 1.6, "raised"),
        StageCall(3, 1.8, 2.05, "succeeded"),
    ]
    assert retried.call_count == 3


def test_a_failing_stub_stage_fails_with_a_result_or_raises() -> None:
    quiet = flaky(5, error="not yet", delay=0.5)  # the others have started by then
    loud = raising(ValueError("no"), delay=2.0)
    slow = fixed(1, delay=10.0)
    record = run_virtual(pipeline_of(quiet=(quiet, []), loud=(loud, []), slow=(slow, [])))
    assert record.result.error == "stage 'quiet' failed: not yet"
    assert quiet.calls == [StageCall(None, 0.0, 0.5, "failed")]
    assert loud.calls == [StageCall(None, 0.0, 0.5, "cancelled")]
    assert slow.calls[0].outcome == "cancelled"
    record.assert_cancelled("loud")
    record.assert_cancelled("slow")
    with pytest.raises(ValueError, match="times must be >= 0, got -1"):
        flaky(-1)


def test_a_raising_stage_raises_every_time() -> None:
    stage = raising(KeyError, name="lookup")
    pipeline = PipelineDefinition(
        name="p",
        stages=[StageDefinition("k", stage, retry_config=RetryConfig(max_attempts=2))],
    )
    record = run_virtual(pipeline)
    assert [call.outcome for call in stage.calls] == ["raised", "raised"]
    assert record.result.error is not None
    assert "KeyError" in record.result.error


def test_assertions_say_what_happened_instead() -> None:
    first, second, third = fixed(1, delay=1.0), fixed(2, delay=1.0), fixed(3, delay=1.0)
    record = run_virtual(pipeline_of(a=(first, []), b=(second, ["a"]), c=(third, [])))
    before = "expected 'b' to end before 'a' started, but 'b' ended at 2000.0 ms and 'a' "
    with pytest.raises(AssertionError, match=before + "started at 0.0 ms"):
        record.assert_ran_before("b", "a")
    overlap = "expected 'a' and 'b' to run concurrently, but 'a' ran 0.0-1000.0 ms and 'b' "
    with pytest.raises(AssertionError, match=overlap + "ran 1000.0-2000.0 ms"):
        record.assert_ran_concurrently("a", "b")
    record.assert_ran_concurrently("a", "c")
    never = "expected 'a' never to start, but it started at 0.0 ms and ended succeeded"
    with pytest.raises(AssertionError, match=never):
        record.assert_never_started("a")
    with pytest.raises(AssertionError, match="to be cancelled, but it ended succeeded"):
        record.assert_cancelled("a")
    with pytest.raises(AssertionError, match="pipeline 'stubs' has no stage 'z'"):
        record.assert_ran_before("a", "z")


def test_assertions_on_a_failed_run() -> None:
    record = run_virtual(pipeline_of(a=(flaky(1, error="bad"), []), b=(fixed(1), ["a"])))
    with pytest.raises(AssertionError, match="expected the run to succeed, but stage 'a' failed"):
        record.assert_succeeded()
    with pytest.raises(AssertionError, match="expected 'a' to succeed, but it ended failed: bad"):
        record.assert_succeeded("a")
    with pytest.raises(AssertionError, match="expected 'b' to succeed, but it never started"):
        record.assert_succeeded("b")
    with pytest.raises(AssertionError, match=r"stage 'b' never started \(never started\)"):
        record.assert_ran_before("a", "b")


def test_a_task_that_outlives_the_run_is_caught() -> None:
    class Leaky:
        name = "leaky"

        async def execute(self, input: Any, context: Any) -> Any:
            trio.lowlevel.spawn_system_task(trio.sleep_forever, name="leaked")
            return await fixed(1).execute(input, context)

    record = run_virtual(PipelineDefinition(name="p", stages=[StageDefinition("x", Leaky())]))
    assert record.leftover_tasks == ("leaked",)
    leaked = r"tasks left running after run \w+: stages \[\], tasks \['leaked'\]"
    with pytest.raises(AssertionError, match=leaked):
        record.assert_no_task_left_running()


def test_a_stage_without_its_terminal_event_counts_as_left_running() -> None:
    record = run_virtual(pipeline_of(a=(fixed(1), [])))
    started = next(e for e in record.events if e.kind is EventKind.STAGE_STARTED)
    truncated = RunRecord(record.result, (record.events[0], started))
    with pytest.raises(AssertionError, match=r"stages \['a'\], tasks \[\]"):
        truncated.assert_no_task_left_running()


async def test_record_run_uses_the_given_executor(autojump_clock: trio.testing.MockClock) -> None:
    executor = PipelineExecutor(cache=MemoryCacheStore())
    stage = fixed(math.pi, delay=1.0)
    first = await record_run(pipeline_of(a=(stage, [])), executor=executor)
    second = await record_run(pipeline_of(a=(stage, [])), executor=executor)
    assert first.result.outputs == second.result.outputs == {"a": math.pi}
    assert second.result.cached_stages == ("a",)
    assert stage.call_count == 1
    assert [event.kind for event in second.events].count(EventKind.STAGE_CACHE_HIT) == 1
