"""The public exception hierarchy.

Every error subclasses `PipelineError` and the builtin it behaves like, carries
structured fields, and its message names the stage and the bad value.

Stage failures are *results*, not exceptions out of ``execute``: the classes below that
describe a stage failure (`StageTimeoutError`, `FanOutInputError`,
`StageOutputError`, `FanOutItemError`, `ConditionError`) are what
the executor records in `StageResult.exception`, so callers can inspect them.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Literal

import attrs

#: What a validation problem is about (`ValidationProblem.kind`).
ProblemKind = Literal[
    "pipeline",  # the pipeline's own fields: name, fail_fast, no stages, no entry stage
    "stray",  # an entry of ``stages`` that is not a StageDefinition
    "id",  # an invalid or repeated stage id
    "stage",  # the stage object cannot serve as a stage
    "sub_pipeline",  # a problem of a sub-pipeline used as this stage
    "input",  # an unknown, repeated or self input
    "cycle",  # a dependency cycle (``cycle`` lists its stages)
    "fan_out",  # fan-out settings
    "condition",  # a condition that is missing, not callable or of the wrong arity
    "policy",  # pattern, timeout, retry, cache, version and flag values
    "route",  # routes and router
    "other",  # given as a plain message
]


@attrs.frozen(kw_only=True)
class ValidationProblem:
    """One thing wrong with a pipeline definition, as
    [PipelineValidationError][twinklr.core.pipeline.PipelineValidationError] carries it."""

    message: str
    """What is wrong, naming the stage and the bad value (as ``problems`` lists it)."""
    kind: ProblemKind = "other"
    """What the problem is about (see ``ProblemKind``)."""
    stage: str | None = None
    """The id of the stage it is about; None for the pipeline's own fields, a cycle
    (see ``cycle``) or a stage whose id is itself the problem."""
    cycle: tuple[str, ...] = ()
    """For a dependency cycle, its stages in order (the first one repeated at the end)."""

    def __str__(self) -> str:
        return self.message


class PipelineError(Exception):
    """Base class of every error this package defines."""


class PipelineValidationError(PipelineError, ValueError):
    """A pipeline definition is invalid; ``problems`` lists every problem found, as
    messages, and ``details`` the same problems as `ValidationProblem` values."""

    def __init__(self, pipeline: str, problems: Sequence[str | ValidationProblem]) -> None:
        self.pipeline = pipeline
        self.details = tuple(
            problem
            if isinstance(problem, ValidationProblem)
            else ValidationProblem(message=problem)
            for problem in problems
        )
        self.problems = tuple(problem.message for problem in self.details)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"pipeline '{pipeline}' is invalid ({count} {noun}):\n{lines}")


class NoOutputError(PipelineError, LookupError):
    """A run's result has no output for a stage: it did not run, failed, was skipped or
    was cancelled (``reason`` says which)."""

    def __init__(self, pipeline: str, stage: str, reason: str) -> None:
        self.pipeline = pipeline
        self.stage = stage
        self.reason = reason
        super().__init__(f"stage '{stage}' of pipeline '{pipeline}' has no output: {reason}")


class StageExecutionError(PipelineError):
    """Base class of the errors the executor records for a failed stage."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(message)


class StageTimeoutError(StageExecutionError, TimeoutError):
    """An attempt of a stage ran longer than its ``timeout_ms``."""

    def __init__(self, stage: str, timeout_ms: float, *, item: int | None = None) -> None:
        self.timeout_ms = timeout_ms
        self.item = item
        where = f"stage '{stage}'" if item is None else f"stage '{stage}' item {item}"
        super().__init__(stage, f"{where} timed out after {timeout_ms:g} ms (timeout)")


class StageOutputError(StageExecutionError, TypeError):
    """A stage returned something that is not a ``StageResult``, or a result with a
    status only the executor gives (cancelled, cached)."""

    def __init__(self, stage: str, value: object, expected: str = "a StageResult") -> None:
        self.value = value
        if isinstance(value, types.CoroutineType | types.AsyncGeneratorType):
            kind = "a coroutine" if isinstance(value, types.CoroutineType) else "an async generator"
            message = (
                f"stage '{stage}' returned {kind} ({value.__qualname__}) instead of its "
                "value: did you forget await?"
            )
        else:
            shown = f"{type(value).__name__} {value!r:.80}"
            message = f"stage '{stage}' returned {shown}, expected {expected}"
        super().__init__(stage, message)


class FanOutInputError(StageExecutionError, TypeError):
    """A fan-out stage's input is not a list or tuple."""

    def __init__(self, stage: str, value: object, *, source: str | None = None) -> None:
        self.value = value
        self.source = source
        origin = "" if source is None else f" (from '{source}')"
        super().__init__(
            stage,
            f"fan-out stage '{stage}' needs a list or tuple input{origin}, "
            f"got {type(value).__name__}",
        )


class FanOutItemError(StageExecutionError):
    """One item of a fan-out stage failed; its siblings were cancelled."""

    def __init__(self, stage: str, item: int, error: str) -> None:
        self.item = item
        self.error = error
        super().__init__(stage, f"stage '{stage}' item {item} failed: {error}")


class ConditionError(StageExecutionError):
    """A stage's condition raised instead of answering."""

    def __init__(self, stage: str, error: BaseException) -> None:
        self.error = error
        super().__init__(
            stage, f"condition of stage '{stage}' raised {type(error).__name__}: {error}"
        )


class StageFailedError(StageExecutionError):
    """A stage attempt reported failure with ``StageResult.failure`` (used for retries)."""

    def __init__(self, stage: str, error: str) -> None:
        self.error = error
        super().__init__(stage, error)


class ProviderError(PipelineError, RuntimeError):
    """An LLM provider could not answer (the fake provider raises it when told to)."""


class BudgetExceededError(PipelineError):
    """A provider call was refused before it was sent: the run has spent its budget
    (``PipelineContext(budget=llm.Budget(...))``). The stage fails and is never retried;
    the message names the stage, what the run spent and the limit."""

    def __init__(self, stage: str | None, spent: str, limit: str) -> None:
        self.stage = stage
        self.spent = spent
        self.limit = limit
        where = f"stage '{stage}'" if stage else "a call outside any stage"
        super().__init__(f"{where}: the run has spent {spent}, its budget is {limit}")


class GraphvizNotFoundError(PipelineError, RuntimeError):
    """Rendering a graph needs the Graphviz ``dot`` program, which is not installed."""


class CacheWarning(UserWarning):
    """A stage's output was not cached (or the cache could not be used) this run.

    Said once per stage and run through `warnings`, naming the stage and why (the part
    of the value that could not be stored, ``output.spectrum: ...``); the run itself is
    not affected. Set ``cache=False`` on a stage that is not meant to be cached, or
    filter the category (``warnings.simplefilter("ignore", CacheWarning)``).
    """
