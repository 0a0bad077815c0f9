"""Validation: every problem of a definition at once, each naming its stage and value."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineDefinition,
    PipelineValidationError,
    StageDefinition,
)
from twinklr.core.pipeline._engine._plan import plan_of
from twinklr.core.pipeline.errors import ValidationProblem


def problems_of(*stages: StageDefinition[Any]) -> list[str]:
    return PipelineDefinition("p", list(stages)).validate_pipeline()


def test_a_valid_definition_has_no_problems() -> None:
    pipeline = PipelineDefinition(
        "ok", [StageDefinition("a", stub()), StageDefinition("b", stub(), inputs=["a"])]
    )
    assert pipeline.validate_pipeline() == []
    pipeline.validate()


def test_every_problem_is_reported_at_once() -> None:
    pipeline = PipelineDefinition(
        "bad",
        [
            StageDefinition("a", stub()),
            StageDefinition("a", stub()),
            StageDefinition("render", stub(), inputs=["lyrics"]),
            StageDefinition("self", stub(), inputs=["self"]),
            StageDefinition("x", stub(), inputs=["y"]),
            StageDefinition("y", stub(), inputs=["x"]),
        ],
    )
    expected = [
        "stage id 'a' is declared 2 times",
        "stage 'render' depends on unknown stage 'lyrics'",
        "stage 'self' depends on itself",
        "dependency cycle: x -> y -> x",
    ]
    assert pipeline.validate_pipeline() == expected
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.validate()
    assert caught.value.problems == tuple(expected)
    assert caught.value.pipeline == "bad"
    assert str(caught.value).startswith("pipeline 'bad' is invalid (4 problems):\n  - stage id")


def test_a_longer_cycle_is_spelled_out() -> None:
    problems = problems_of(
        StageDefinition("entry", stub()),
        StageDefinition("a", stub(), inputs=["entry", "c"]),
        StageDefinition("b", stub(), inputs=["a"]),
        StageDefinition("c", stub(), inputs=["b"]),
    )
    assert problems == ["dependency cycle: a -> c -> b -> a"]


def test_no_entry_point_and_no_stages() -> None:
    assert PipelineDefinition("empty", []).validate_pipeline() == ["pipeline 'empty' has no stages"]
    problems = problems_of(
        StageDefinition("a", stub(), inputs=["b"]), StageDefinition("b", stub(), inputs=["a"])
    )
    assert problems == [
        "pipeline 'p' has no entry stage (every stage has inputs)",
        "dependency cycle: a -> b -> a",
    ]


def test_fan_out_misconfigurations() -> None:
    fan = ExecutionPattern.FAN_OUT
    problems = problems_of(
        StageDefinition("a", stub()),
        StageDefinition("b", stub()),
        StageDefinition("no_input", stub(), pattern=fan),
        StageDefinition("two", stub(), pattern=fan, inputs=["a", "b"]),
        StageDefinition("wrong", stub(), pattern=fan, inputs=["a", "b"], fan_out_over="c"),
        StageDefinition("plain", stub(), inputs=["a"], fan_out_over="a"),
        StageDefinition("limit", stub(), inputs=["a"], max_concurrent_fan_out=2),
        StageDefinition("zero", stub(), pattern=fan, inputs=["a"], max_concurrent_fan_out=0),
    )
    assert problems == [
        "fan-out stage 'no_input' has no input to fan out over",
        "fan-out stage 'two' has 2 inputs ('a', 'b'); set fan_out_over to the one holding the list",
        "stage 'wrong': fan_out_over 'c' is not one of its inputs",
        "stage 'plain' sets fan_out_over but its pattern is not FAN_OUT",
        "stage 'limit' sets max_concurrent_fan_out but its pattern is not FAN_OUT",
        "stage 'zero': max_concurrent_fan_out must be an int >= 1, got 0",
    ]


class NoName:
    async def execute(self, input: Any, context: Any) -> Any:
        return None


class SyncExecute:
    name = "sync"

    def execute(self, input: Any, context: Any) -> Any:
        return None


def test_stage_field_problems_name_the_stage_and_value() -> None:
    problems = problems_of(
        StageDefinition("a", stub()),
        StageDefinition("", stub(), inputs=["a"]),
        StageDefinition("cond", stub(), pattern=ExecutionPattern.CONDITIONAL, inputs=["a"]),
        StageDefinition("notcall", stub(), inputs=["a"], condition=True),  # type: ignore[call-overload]
        StageDefinition("timeout", stub(), inputs=["a"], timeout_ms=0),
        StageDefinition("retry", stub(), inputs=["a"], retry_config=3),  # type: ignore[call-overload]
        StageDefinition("pattern", stub(), inputs=["a"], pattern="fan_out"),  # type: ignore[call-overload]
        # the inputs given where the pattern goes (an unhashable value)
        StageDefinition("listed", stub(), ["a"]),  # type: ignore[call-overload]
        StageDefinition("twice", stub(), inputs=["a", "a"]),
        StageDefinition("noname", NoName(), inputs=["a"]),
        StageDefinition("sync", SyncExecute(), inputs=["a"]),
        StageDefinition("int", 42, inputs=["a"]),  # type: ignore[call-overload]
    )
    assert problems == [
        "stage #1 has an invalid id '' (expected a non-empty string)",
        "conditional stage 'cond' has no condition",
        "stage 'notcall': condition must be callable, got True",
        "stage 'timeout': timeout_ms must be a number > 0, got 0",
        "stage 'retry': retry_config must be a RetryConfig, got int",
        "stage 'pattern': pattern must be an ExecutionPattern, got 'fan_out'",
        "stage 'listed': pattern must be an ExecutionPattern, got ['a']",
        "stage 'twice' lists input 'a' 2 times",
        (
            "stage 'noname': NoName instance has no 'name' "
            "(a PipelineStage needs a name and an async execute)"
        ),
        "stage 'sync': SyncExecute.execute is not an async function (write 'async def execute')",
        (
            "stage 'int': int instance has no 'name' "
            "(a PipelineStage needs a name and an async execute)"
        ),
    ]


def test_sub_pipeline_problems_are_reported_with_their_stage() -> None:
    good = PipelineDefinition("good", [StageDefinition("x", stub())])
    inner = PipelineDefinition("inner", [StageDefinition("x", stub(), inputs=["nope"])])
    problems = problems_of(
        StageDefinition("ok", good), StageDefinition("sub", inner, inputs=["ok"])
    )
    assert problems == [
        "stage 'sub' (sub-pipeline 'inner'): stage 'x' depends on unknown stage 'nope'",
        (
            "stage 'sub' (sub-pipeline 'inner'): pipeline 'inner' has no entry stage "
            "(every stage has inputs)"
        ),
    ]


def test_a_bad_pipeline_name() -> None:
    assert PipelineDefinition("", [StageDefinition("a", stub())]).validate_pipeline() == [
        "pipeline name must be a non-empty string, got ''"
    ]


def test_large_definitions_validate_without_recursion() -> None:
    # 100,000 stages: a chain declared backwards, so the fast path does not apply.
    n = 100_000
    stage = stub()
    stages = [StageDefinition(f"s{i}", stage, inputs=[f"s{i - 1}"] if i else []) for i in range(n)]
    pipeline = PipelineDefinition("big", stages[::-1])
    plan = plan_of(pipeline)
    assert plan.order[0] == n - 1
    looped = [StageDefinition("s0", stage, inputs=["s99999"]), *stages[1:]]
    problems = PipelineDefinition("loop", looped).validate_pipeline()
    assert problems[-1].startswith("dependency cycle: s0 -> s99999 -> s99998 -> ")
    assert problems[-1].endswith(" -> s1 -> s0")


def test_things_that_are_not_stage_definitions_are_reported() -> None:
    assert PipelineDefinition("p", None).validate_pipeline() == ["pipeline 'p' has no stages"]
    mixed: list[Any] = [stub(), StageDefinition("a", stub())]
    problems = PipelineDefinition("p", mixed).validate_pipeline()
    assert len(problems) == 1
    assert problems[0].startswith("pipeline 'p': stages must be StageDefinition objects, got Stub ")
    lone = PipelineDefinition("p", StageDefinition("a", stub()))  # type: ignore[arg-type]
    assert lone.validate_pipeline() == []  # one stage, given bare, is taken as one
    assert PipelineDefinition("p", 5).validate_pipeline() == [  # type: ignore[arg-type]
        "pipeline 'p': stages must be StageDefinition objects, got int 5"
    ]


def test_inputs_that_are_not_ids_are_reported() -> None:
    problems = problems_of(
        StageDefinition("a", stub()),
        StageDefinition("b", stub(), inputs=5),  # type: ignore[call-overload]
        StageDefinition("c", stub(), inputs=["a", None]),  # type: ignore[list-item]
    )
    assert problems == [
        "stage 'b': inputs must be stage ids (strings), got 5",
        "stage 'c': inputs must be stage ids (strings), got None",
    ]


def test_cache_settings_are_validated() -> None:
    problems = problems_of(
        StageDefinition("a", stub(), version=""),
        StageDefinition("b", stub(), cache_ttl=0),
        StageDefinition("c", stub(), cache_ttl=dt.timedelta(seconds=-1)),
        StageDefinition("d", stub(), cache_ttl=dt.timedelta(hours=1), version="2"),
    )
    assert problems == [
        "stage 'a': version must be a non-empty string, got ''",
        "stage 'b': cache_ttl must be > 0 seconds (or a timedelta), got 0",
        (
            "stage 'c': cache_ttl must be > 0 seconds (or a timedelta), got "
            "datetime.timedelta(days=-1, seconds=86399)"
        ),
    ]


def test_a_stage_whose_name_raises_is_one_problem_among_all() -> None:
    class Broken:
        @property
        def name(self) -> str:
            msg = "no name today"
            raise RuntimeError(msg)

        async def execute(self, input: Any, context: Any) -> Any:
            return None

    async def fine(value: Any) -> Any:
        return value

    pipeline = PipelineDefinition(
        "p",
        [StageDefinition("a", Broken()), StageDefinition("b", fine, inputs=["ghost"])],
    )
    problems = pipeline.validate_pipeline()
    assert "stage 'a': reading Broken's name or execute raised RuntimeError: no name today" in (
        problems
    )
    assert "stage 'b' depends on unknown stage 'ghost'" in problems


def test_flags_that_are_not_booleans_are_refused_by_name_and_value() -> None:
    async def fine(value: Any) -> Any:
        return value

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", fine, critical="no"),  # type: ignore[call-overload]
            StageDefinition("b", fine, cache=0, inputs=["a"]),  # type: ignore[call-overload]
        ],
        fail_fast="no",  # type: ignore[arg-type]
    )
    assert pipeline.validate_pipeline() == [
        "pipeline 'p': fail_fast must be True or False, got 'no'",
        "stage 'a': critical must be True or False, got 'no'",
        "stage 'b': cache must be True or False, got 0",
    ]


def test_each_problem_is_a_value_naming_its_kind_and_stage() -> None:
    def condition(context: Any) -> bool:
        return True

    pipeline = PipelineDefinition(
        "bad",
        [
            StageDefinition("entry", stub()),
            StageDefinition("a", stub(), inputs=["c"]),
            StageDefinition("b", stub(), inputs=["a"]),
            StageDefinition("c", stub(), inputs=["b"]),
            StageDefinition("d", stub(), inputs=["ghost"]),
            StageDefinition("e", stub(), timeout_ms=-1, inputs=["d"]),
            StageDefinition("f", stub(), pattern=ExecutionPattern.CONDITIONAL, inputs=["d"]),
            StageDefinition("g", stub(), routes={"x": ["h"]}, inputs=["d"]),
            StageDefinition("h", stub(), inputs=["d"]),
            StageDefinition("i", stub(), fan_out_over="d", inputs=["d"]),
        ],
    )
    with pytest.raises(PipelineValidationError) as raised:
        pipeline.validate()
    found = {(p.kind, p.stage, p.cycle) for p in raised.value.details}
    assert found == {
        ("input", "d", ()),
        ("policy", "e", ()),
        ("condition", "f", ()),
        ("route", "g", ()),
        ("fan_out", "i", ()),
        ("cycle", None, ("a", "c", "b", "a")),
    }
    assert raised.value.problems == tuple(p.message for p in raised.value.details)
    assert list(raised.value.problems) == pipeline.validate_pipeline()


def test_a_sub_pipeline_problem_is_the_outer_stage_s() -> None:
    inner = PipelineDefinition(
        "inner", [StageDefinition("y", stub()), StageDefinition("x", stub(), inputs=["nowhere"])]
    )
    outer = PipelineDefinition("outer", [StageDefinition("sub", inner)])
    (problem,) = raised_details(outer)
    assert (problem.kind, problem.stage) == ("sub_pipeline", "sub")
    assert problem.message == (
        "stage 'sub' (sub-pipeline 'inner'): stage 'x' depends on unknown stage 'nowhere'"
    )


def test_pipeline_level_problems_name_no_stage() -> None:
    details = raised_details(PipelineDefinition("", [StageDefinition("a", stub(), inputs=["a"])]))
    assert [(p.kind, p.stage) for p in details] == [
        ("pipeline", None),
        ("input", "a"),
        ("pipeline", None),
    ]
    strays = raised_details(PipelineDefinition("p", ["not a stage"]))  # type: ignore[list-item]
    assert [(p.kind, p.stage) for p in strays] == [("stray", None)]
    twice = raised_details(
        PipelineDefinition("p", [StageDefinition("a", stub()), StageDefinition("a", stub())])
    )
    assert [(p.kind, p.stage) for p in twice] == [("id", "a")]


def raised_details(pipeline: PipelineDefinition) -> tuple[ValidationProblem, ...]:
    with pytest.raises(PipelineValidationError) as raised:
        pipeline.validate()
    return raised.value.details
