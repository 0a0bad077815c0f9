"""The bad input catalogue: every invalid definition and bad runtime value gets a clear,
specific error naming the stage (and the value), and docs/reliability.md lists them.

Each case makes its error and says the exact message; the test checks both that the
message is what users get and that the reliability page shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    RateLimiter,
    RetryConfig,
    StageDefinition,
    StageResult,
)
from twinklr.core.pipeline.testing import fixed, raising, recording

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def problems(*stages: Any, name: str = "p") -> str:
    """The problems validation reports, one per line."""
    return "\n".join(PipelineDefinition(name=name, stages=list(stages)).validate_pipeline())


def raised(make: Callable[[], object]) -> str:
    """``Type: message`` of what ``make()`` raises."""
    try:
        make()
    except Exception as exc:  # any error is the case's answer
        return f"{type(exc).__name__}: {exc}"
    msg = "nothing was raised"
    raise AssertionError(msg)


def run_error(*stages: Any, initial_input: Any = None) -> str:
    """The error a run of ``stages`` ends with (stage failures are results)."""
    pipeline = PipelineDefinition(name="p", stages=list(stages))
    clock = trio.testing.MockClock(autojump_threshold=0)
    result = trio.run(PipelineExecutor().execute, pipeline, initial_input, None, clock=clock)
    assert result.error is not None
    return result.error


class NotAsync:
    name = "sync"

    def execute(self, input: Any, context: PipelineContext) -> None:
        pass


class ReturnsInt:
    name = "returns_int"

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        return 42


class BadStatus:
    name = "bad_status"

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        return StageResult(status="ok")


def raises_lookup(context: PipelineContext) -> bool:
    raise KeyError("has_lyrics")


def a(**settings: Any) -> StageDefinition[Any]:
    return StageDefinition("a", fixed(1), **settings)


FAN_OUT = ExecutionPattern.FAN_OUT

#: (what is wrong, its error, the exact message)
CASES: list[tuple[str, Callable[[], str], str]] = [
    (
        "a dependency cycle",
        lambda: problems(
            StageDefinition("a", fixed(1), inputs=["b"]),
            StageDefinition("b", fixed(1), inputs=["a"]),
            StageDefinition("c", fixed(1)),
        ),
        "dependency cycle: a -> b -> a",
    ),
    (
        "a stage depending on itself",
        lambda: problems(a(inputs=["a"]), StageDefinition("b", fixed(1))),
        "stage 'a' depends on itself",
    ),
    (
        "an unknown input",
        lambda: problems(a(), StageDefinition("b", fixed(1), inputs=["nope"])),
        "stage 'b' depends on unknown stage 'nope'",
    ),
    ("a duplicate id", lambda: problems(a(), a()), "stage id 'a' is declared 2 times"),
    (
        "an empty id",
        lambda: problems(StageDefinition("", fixed(1))),
        "stage #0 has an invalid id '' (expected a non-empty string)",
    ),
    (
        "an input that is not an id",
        lambda: problems(a(), StageDefinition("b", fixed(1), inputs=[3])),  # type: ignore[list-item]
        "stage 'b': inputs must be stage ids (strings), got 3",
    ),
    ("no stages at all", problems, "pipeline 'p' has no stages"),
    (
        "no entry stage",
        lambda: problems(a(inputs=["b"]), StageDefinition("b", fixed(1), inputs=["a"])),
        "pipeline 'p' has no entry stage (every stage has inputs)",
    ),
    (
        "something that is not a stage",
        lambda: problems(StageDefinition("a", object())),  # type: ignore[call-overload]
        (
            "stage 'a': object instance has no 'name' "
            "(a PipelineStage needs a name and an async execute)"
        ),
    ),
    (
        "None as the stage",
        lambda: problems(StageDefinition("a", None)),  # type: ignore[call-overload]
        "stage 'a': got None, not a stage (a PipelineStage needs a name and an async execute)",
    ),
    (
        "a stage class instead of an instance",
        lambda: problems(StageDefinition("a", NotAsync)),  # type: ignore[arg-type]
        "stage 'a': got the class NotAsync, not an instance (write NotAsync())",
    ),
    (
        "a synchronous execute",
        lambda: problems(StageDefinition("a", NotAsync())),
        "stage 'a': NotAsync.execute is not an async function (write 'async def execute')",
    ),
    (
        "a stage list holding something else",
        lambda: problems("a"),
        "pipeline 'p': stages must be StageDefinition objects, got str 'a'",
    ),
    (
        "a negative timeout",
        lambda: problems(a(timeout_ms=-5)),
        "stage 'a': timeout_ms must be a number > 0, got -5",
    ),
    (
        "a retry config that is not one",
        lambda: problems(a(retry_config=3)),
        "stage 'a': retry_config must be a RetryConfig, got int",
    ),
    (
        "a pattern that is not one",
        lambda: problems(a(pattern="fan")),
        "stage 'a': pattern must be an ExecutionPattern, got 'fan'",
    ),
    (
        "a conditional stage without a condition",
        lambda: problems(a(pattern=ExecutionPattern.CONDITIONAL)),
        "conditional stage 'a' has no condition",
    ),
    (
        "a fan-out with nothing to fan out over",
        lambda: problems(a(pattern=FAN_OUT)),
        "fan-out stage 'a' has no input to fan out over",
    ),
    (
        "a fan-out over several inputs without fan_out_over",
        lambda: problems(
            a(),
            StageDefinition("b", fixed(1)),
            StageDefinition("c", fixed(1), inputs=["a", "b"], pattern=FAN_OUT),
        ),
        "fan-out stage 'c' has 2 inputs ('a', 'b'); set fan_out_over to the one holding the list",
    ),
    (
        "a fan-out limit of 0",
        lambda: problems(
            a(),
            StageDefinition("b", fixed(1), inputs=["a"], pattern=FAN_OUT, max_concurrent_fan_out=0),
        ),
        "stage 'b': max_concurrent_fan_out must be an int >= 1, got 0",
    ),
    (
        "a negative cache TTL",
        lambda: problems(a(cache_ttl=-1)),
        "stage 'a': cache_ttl must be > 0 seconds (or a timedelta), got -1",
    ),
    (
        "max_attempts 0",
        lambda: raised(lambda: RetryConfig(max_attempts=0)),
        "ValueError: RetryConfig.max_attempts must be an int >= 1, got 0",
    ),
    (
        "a negative retry delay",
        lambda: raised(lambda: RetryConfig(initial_delay_ms=-1)),
        "ValueError: RetryConfig.initial_delay_ms must be a number >= 0, got -1",
    ),
    (
        "a backoff that shrinks",
        lambda: raised(lambda: RetryConfig(backoff_multiplier=0.5)),
        "ValueError: RetryConfig.backoff_multiplier must be a number >= 1, got 0.5",
    ),
    (
        "a rate limit of 0 requests",
        lambda: raised(lambda: RateLimiter(requests_per_minute=0)),
        "ValueError: RateLimiter requests_per_minute must be an int >= 1 or None, got 0",
    ),
    (
        "running something that is not a pipeline",
        lambda: raised(lambda: trio.run(PipelineExecutor().execute, "pipeline.yaml")),  # type: ignore[arg-type]
        "TypeError: execute() needs a PipelineDefinition, got str",
    ),
    (
        "running an invalid pipeline",
        lambda: raised(lambda: trio.run(PipelineExecutor().execute, PipelineDefinition("p", []))),
        (
            "PipelineValidationError: pipeline 'p' is invalid (1 problem):\n"
            "  - pipeline 'p' has no stages"
        ),
    ),
    (
        "subscribing to an unknown stage",
        lambda: raised(
            lambda: trio.run(
                lambda: PipelineExecutor().execute(
                    PipelineDefinition("p", [a()]),
                    subscriptions={"zz": trio.open_memory_channel[Any](1)[0]},
                )
            )
        ),
        "ValueError: cannot subscribe to stage 'zz': pipeline 'p' has no such stage",
    ),
    (
        "a fan-out whose input is not a list",
        lambda: run_error(
            StageDefinition("a", fixed(None)),
            StageDefinition("b", fixed(1), inputs=["a"], pattern=FAN_OUT),
        ),
        "stage 'b' failed: fan-out stage 'b' needs a list or tuple input, got NoneType",
    ),
    (
        "a condition that raises",
        lambda: run_error(
            a(pattern=ExecutionPattern.CONDITIONAL, condition=raises_lookup),
        ),
        "stage 'a' failed: condition of stage 'a' raised KeyError: 'has_lyrics'",
    ),
    (
        "a stage returning something other than a StageResult",
        lambda: run_error(StageDefinition("a", ReturnsInt())),
        "stage 'a' failed: stage 'a' returned int 42, expected a StageResult",
    ),
    (
        "a StageResult with a status that is not one",
        lambda: run_error(StageDefinition("a", BadStatus())),
        (
            "stage 'a' failed: ValueError: StageResult status must be a StageStatus (one of "
            "succeeded, failed, skipped, soft_failed, cached, cancelled), got 'ok'"
        ),
    ),
    (
        "a stage that raises",
        lambda: run_error(StageDefinition("a", raising(ValueError("bad tempo")))),
        "stage 'a' failed: ValueError: bad tempo",
    ),
    (
        "a stage that overruns its timeout",
        lambda: run_error(StageDefinition("a", fixed(1, delay=2), timeout_ms=1000)),
        "stage 'a' failed: stage 'a' timed out after 1000 ms (timeout)",
    ),
    (
        "a failing fan-out item",
        lambda: run_error(
            StageDefinition("a", fixed([1, 2, 3])),
            StageDefinition("b", recording(lambda x: 1 / (x - 2)), inputs=["a"], pattern=FAN_OUT),
        ),
        "stage 'b' failed: stage 'b' item 1 failed: ZeroDivisionError: division by zero",
    ),
]


@pytest.mark.parametrize(("what", "make", "message"), CASES, ids=[case[0] for case in CASES])
def test_each_bad_input_gets_its_clear_error(
    what: str, make: Callable[[], str], message: str
) -> None:
    got = make()
    assert message in got.split("\n") or got == message, f"{what}: {got!r}"


def test_the_reliability_page_lists_every_case() -> None:
    page = PAGE.read_text(encoding="utf-8")
    for what, _, message in CASES:
        first_line = message.split("\n")[0]
        assert f"| {what} |" in page, what
        assert f"`{first_line}`" in page, first_line


def test_an_invalid_pipeline_reports_every_problem_at_once() -> None:
    pipeline = PipelineDefinition(
        name="p",
        stages=[
            StageDefinition("a", fixed(1), inputs=["b"]),
            StageDefinition("b", fixed(1), inputs=["a"]),
            StageDefinition("c", NotAsync, timeout_ms=0),  # type: ignore[arg-type]
        ],
    )
    with pytest.raises(PipelineValidationError) as caught:
        pipeline.validate()
    assert len(caught.value.problems) == 3
