"""Definitions: values, conversions, sub-pipelines, the plan kept on a definition."""

from __future__ import annotations

import pytest

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineDefinition,
    StageDefinition,
    SubPipelineStage,
)
from twinklr.core.pipeline._engine._plan import plan_of
from twinklr.core.pipeline.definition import RetryConfig

# -- StageDefinition / PipelineDefinition -----------------------------------------------------


def test_stage_definition_takes_id_and_stage_positionally() -> None:
    stage = stub()
    definition = StageDefinition("audio", stage, inputs=["x", "y"])
    assert definition.id == "audio"
    assert definition.stage is stage
    assert definition.inputs == ("x", "y")
    assert definition.pattern is ExecutionPattern.SEQUENTIAL
    assert definition.critical


def test_a_single_string_input_is_one_input() -> None:
    assert StageDefinition("b", stub(), inputs="a").inputs == ("a",)
    assert StageDefinition("b", stub(), inputs=None).inputs == ()


def test_a_pipeline_used_as_a_stage_is_wrapped() -> None:
    inner = PipelineDefinition("inner", [StageDefinition("x", stub())])
    wrapped = StageDefinition("sub", inner).stage
    assert isinstance(wrapped, SubPipelineStage)
    assert wrapped.pipeline is inner
    assert wrapped.name == "inner"


def test_definitions_are_frozen_values() -> None:
    stage = stub()
    pipeline = PipelineDefinition("p", [StageDefinition("a", stage)])
    assert pipeline == PipelineDefinition("p", (StageDefinition("a", stage),))
    with pytest.raises(AttributeError):
        pipeline.name = "q"  # type: ignore[misc]


def test_get_stage_and_waves() -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("d", stub(), inputs=["b", "c"]),
            StageDefinition("b", stub(), inputs=["a"]),
            StageDefinition("a", stub()),
            StageDefinition("c", stub(), inputs=["a"]),
        ],
    )
    assert pipeline.get_stage("c").inputs == ("a",)
    with pytest.raises(KeyError, match="pipeline 'p' has no stage 'zz'"):
        pipeline.get_stage("zz")
    assert pipeline.execution_waves() == [["a"], ["b", "c"], ["d"]]


def test_the_plan_is_compiled_once_per_definition() -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("a", stub())])
    assert plan_of(pipeline) is plan_of(pipeline)


def test_constructors_take_the_spec_order_positionally() -> None:
    stages = [StageDefinition("a", stub())]
    pipeline = PipelineDefinition("p", stages, "about p", False)  # noqa: FBT003
    assert (pipeline.description, pipeline.fail_fast) == ("about p", False)
    assert RetryConfig(3, 10).delay_ms(1) == 10


def test_stage_options_may_be_positional_in_the_original_twinklr_order() -> None:
    def condition(context: object) -> bool:
        return True

    retry = RetryConfig(max_attempts=2)
    definition = StageDefinition(
        "groups",
        stub(),
        ExecutionPattern.FAN_OUT,
        ["macro"],
        condition,
        retry,
        5000,
        False,  # noqa: FBT003 (critical, positionally as the original allowed)
        4,
        "plan each group",
        "list[GroupContext]",
        "list[GroupPlan]",
    )
    assert definition.pattern is ExecutionPattern.FAN_OUT
    assert definition.inputs == ("macro",)
    assert definition.condition is condition
    assert definition.retry_config is retry
    assert (definition.timeout_ms, definition.critical) == (5000, False)
    assert definition.max_concurrent_fan_out == 4
    assert definition.description == "plan each group"
    assert (definition.input_type, definition.output_type) == (
        "list[GroupContext]",
        "list[GroupPlan]",
    )
    with pytest.raises(TypeError, match="multiple values for argument 'inputs'"):
        StageDefinition("a", stub(), ExecutionPattern.SEQUENTIAL, ["x"], inputs=["y"])
    with pytest.raises(TypeError, match="StageDefinition\\(\\) takes from 3 to 13 positional"):
        StageDefinition("a", stub(), *([None] * 11))


def test_a_string_output_type_is_documentation_and_the_stage_still_caches() -> None:
    import trio  # noqa: PLC0415 (this test's own)

    from twinklr.core.pipeline import MemoryCacheStore, PipelineExecutor  # noqa: PLC0415

    async def plan(value: int) -> dict[str, int]:
        return {"value": value}

    pipeline = PipelineDefinition(
        "p", [StageDefinition("plan", plan, output_type="dict[str, int]")]
    )
    executor = PipelineExecutor(cache=MemoryCacheStore())
    first = trio.run(executor.execute, pipeline, 3)
    second = trio.run(executor.execute, pipeline, 3)
    assert second.cached_stages == ("plan",)
    assert second.outputs == first.outputs == {"plan": {"value": 3}}


def test_entry_points_are_the_stages_without_inputs() -> None:
    a, b, c = StageDefinition("a", stub()), StageDefinition("b", stub()), None
    c = StageDefinition("c", stub(), inputs=["a", "b"])
    pipeline = PipelineDefinition("p", [a, c, b])
    assert pipeline.get_entry_points() == [a, b]


def test_an_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(
        TypeError, match="StageDefinition\\(\\) got an unexpected keyword argument 'timeout'"
    ):
        StageDefinition("a", stub(), timeout=5)  # type: ignore[call-overload]
