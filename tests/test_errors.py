"""The error hierarchy: builtin bases, structured fields, messages that name things."""

from __future__ import annotations

import pytest

from twinklr.core.pipeline import (
    ConditionError,
    FanOutInputError,
    FanOutItemError,
    PipelineError,
    PipelineValidationError,
    StageExecutionError,
    StageFailedError,
    StageOutputError,
    StageTimeoutError,
)
from twinklr.core.pipeline.errors import ValidationProblem


def test_validation_error_lists_problems() -> None:
    error = PipelineValidationError("p", ["one thing"])
    assert isinstance(error, ValueError)
    assert isinstance(error, PipelineError)
    assert str(error) == "pipeline 'p' is invalid (1 problem):\n  - one thing"
    assert error.problems == ("one thing",)
    assert error.details == (ValidationProblem(message="one thing", kind="other"),)


def test_validation_error_carries_problem_values_and_their_messages() -> None:
    cycle = ValidationProblem(
        message="dependency cycle: a -> b -> a", kind="cycle", cycle=("a", "b", "a")
    )
    error = PipelineValidationError("p", [cycle, "plain"])
    assert error.problems == ("dependency cycle: a -> b -> a", "plain")
    assert error.details[0] is cycle
    assert str(cycle) == cycle.message


@pytest.mark.parametrize(
    ("error", "builtin", "message"),
    [
        (StageTimeoutError("x", 250), TimeoutError, "stage 'x' timed out after 250 ms (timeout)"),
        (
            StageTimeoutError("x", 250, item=3),
            TimeoutError,
            "stage 'x' item 3 timed out after 250 ms (timeout)",
        ),
        (
            StageOutputError("x", [1]),
            TypeError,
            "stage 'x' returned list [1], expected a StageResult",
        ),
        (
            FanOutInputError("g", "abc"),
            TypeError,
            "fan-out stage 'g' needs a list or tuple input, got str",
        ),
        (FanOutItemError("g", 2, "boom"), StageExecutionError, "stage 'g' item 2 failed: boom"),
        (
            ConditionError("c", KeyError("k")),
            StageExecutionError,
            "condition of stage 'c' raised KeyError: 'k'",
        ),
        (StageFailedError("s", "said no"), StageExecutionError, "said no"),
    ],
)
def test_stage_errors_name_the_stage_and_value(
    error: StageExecutionError, builtin: type[BaseException], message: str
) -> None:
    assert isinstance(error, builtin)
    assert isinstance(error, PipelineError)
    assert str(error) == message
    assert error.stage in message
