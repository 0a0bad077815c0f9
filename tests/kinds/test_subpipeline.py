"""A pipeline used as a stage of another, also under fan-out."""

from __future__ import annotations

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    SubPipelineStage,
)


def inner(delay: float = 0, fail: bool = False) -> PipelineDefinition:  # noqa: FBT001, FBT002
    return PipelineDefinition(
        "group_plan",
        [
            StageDefinition("draft", stub(lambda g: f"draft-{g}", delay=delay)),
            StageDefinition(
                "polish",
                stub(lambda d: f"polished-{d}", fail_times=int(fail), error="polish broke"),
                inputs=["draft"],
            ),
        ],
    )


async def test_a_sub_pipeline_outputs_its_outputs() -> None:
    outer = PipelineDefinition(
        "outer",
        [
            StageDefinition("group", stub("roof")),
            StageDefinition("plan", inner(), inputs=["group"]),
        ],
    )
    result = await PipelineExecutor().execute(outer)
    assert result.outputs["plan"] == {"draft": "draft-roof", "polish": "polished-draft-roof"}


async def test_sub_pipelines_under_fan_out(autojump_clock: trio.testing.MockClock) -> None:
    outer = PipelineDefinition(
        "outer",
        [
            StageDefinition("groups", stub(["roof", "tree"])),
            StageDefinition(
                "plans", inner(delay=2), pattern=ExecutionPattern.FAN_OUT, inputs=["groups"]
            ),
        ],
    )
    result = await PipelineExecutor().execute(outer)
    assert [plan["polish"] for plan in result.outputs["plans"]] == [
        "polished-draft-roof",
        "polished-draft-tree",
    ]
    assert result.total_duration_ms == 2000  # the items ran concurrently


async def test_an_inner_failure_fails_the_stage() -> None:
    outer = PipelineDefinition(
        "outer",
        [
            StageDefinition("group", stub("roof")),
            StageDefinition("plan", inner(fail=True), inputs=["group"]),
        ],
    )
    result = await PipelineExecutor().execute(outer)
    assert not result.success
    assert result.stage_results["plan"].error == (
        "sub-pipeline 'group_plan': stage 'polish' failed: polish broke"
    )
    assert result.stage_results["plan"].metadata["failed_stages"] == ("polish",)


async def test_fail_fast_crosses_into_the_sub_pipeline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow_inner = inner(delay=10)
    draft = slow_inner.stages[0].stage
    outer = PipelineDefinition(
        "outer",
        [
            StageDefinition("group", stub("roof")),
            StageDefinition("plan", slow_inner, inputs=["group"]),
            StageDefinition("boom", stub(delay=1, fail_times=1), inputs=["group"]),
        ],
    )
    result = await PipelineExecutor().execute(outer)
    assert result.cancelled_stages == ("plan",)
    assert draft.cancelled == [1]
    assert result.total_duration_ms == 1000


async def test_a_sub_pipeline_stage_runs_on_its_own_too() -> None:
    result = await SubPipelineStage(inner()).execute("roof", PipelineContext())
    assert result.output == {"draft": "draft-roof", "polish": "polished-draft-roof"}
