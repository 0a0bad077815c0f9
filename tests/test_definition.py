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
    assert pipeline.plan() is pipeline.plan()


def test_constructors_take_the_spec_order_positionally() -> None:
    stages = [StageDefinition("a", stub())]
    pipeline = PipelineDefinition("p", stages, "about p", False)  # noqa: FBT003
    assert (pipeline.description, pipeline.fail_fast) == ("about p", False)
    assert RetryConfig(3, 10).delay_ms(1) == 10


def test_an_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(
        TypeError, match="StageDefinition\\(\\) got an unexpected keyword argument 'timeout'"
    ):
        StageDefinition("a", stub(), timeout=5)  # type: ignore[call-overload]
