"""Declarative pipeline definitions: what runs, on which inputs, with which policy.

Definitions are frozen values. Constructing an invalid one does not raise; ``validate()``
and ``validate_pipeline()`` report every problem at once, and executing an invalid one
raises :class:`~twinklr.core.pipeline.errors.PipelineValidationError` before any stage runs.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from ._context import PipelineContext
    from ._plan import Plan


class ExecutionPattern(enum.Enum):
    """How a stage runs. Dataflow decides *when*; the pattern decides *how*."""

    SEQUENTIAL = "sequential"
    """Once, when its inputs are ready."""
    PARALLEL = "parallel"
    """Once, when its inputs are ready (same as SEQUENTIAL: independent stages always
    run concurrently; the name documents intent)."""
    FAN_OUT = "fan_out"
    """Once per item of its (list) input, concurrently; the output is the list of outputs."""
    CONDITIONAL = "conditional"
    """Once, if its ``condition`` holds when its inputs are ready; else skipped."""

    __hash__ = object.__hash__  # by identity, as members compare (Enum's is Python code)


def _check_non_negative(
    _instance: RetryConfig, attribute: attrs.Attribute[Any], value: Any
) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        msg = f"RetryConfig.{attribute.name} must be a number >= 0, got {value!r}"
        raise ValueError(msg)


def _check_attempts(_instance: RetryConfig, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = f"RetryConfig.max_attempts must be an int >= 1, got {value!r}"
        raise ValueError(msg)


def _check_multiplier(_instance: RetryConfig, _attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < 1:
        msg = f"RetryConfig.backoff_multiplier must be a number >= 1, got {value!r}"
        raise ValueError(msg)


def _to_error_patterns(value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class RetryConfig:
    """Exponential-backoff retry for a stage (per item for fan-out), backed by tenacity.

    The delay before attempt ``n + 1`` is
    ``min(initial_delay_ms * backoff_multiplier ** (n - 1), max_delay_ms)``. Bad values
    raise ``ValueError`` naming the field at construction.
    """

    max_attempts: int = attrs.field(default=1, validator=_check_attempts)
    """Attempts in all, the first included (1 means no retry)."""
    initial_delay_ms: float = attrs.field(default=1000, validator=_check_non_negative)
    """Delay before the second attempt."""
    backoff_multiplier: float = attrs.field(default=2.0, validator=_check_multiplier)
    """Factor applied to the delay after each failed attempt."""
    max_delay_ms: float = attrs.field(default=60000, validator=_check_non_negative)
    """Ceiling on any single delay."""
    retryable_errors: tuple[str, ...] | None = attrs.field(
        default=None, converter=_to_error_patterns
    )
    """Retry only failures whose ``ExceptionType: message`` contains one of these strings
    (a timeout contains "timeout"); None retries every failure."""

    def delay_ms(self, attempt: int) -> float:
        """The delay after failed attempt number ``attempt`` (1-based)."""
        return min(
            self.initial_delay_ms * self.backoff_multiplier ** (attempt - 1), self.max_delay_ms
        )

    def is_retryable(self, error_text: str) -> bool:
        """Whether a failure described by ``error_text`` may be retried."""
        if self.retryable_errors is None:
            return True
        return any(pattern in error_text for pattern in self.retryable_errors)


def _to_inputs(value: Iterable[str] | str | None) -> tuple[Any, ...]:
    # Never raises: a bad input is validation's to report, naming the stage.
    given: object = value
    if given is None:
        return ()
    if isinstance(given, str) or not isinstance(given, Iterable):
        return (given,)
    return tuple(given)


def _to_stages(value: Iterable[StageDefinition] | None) -> tuple[Any, ...]:
    # Never raises: what is wrong with the stages is validation's to report.
    given: object = value
    if given is None:
        return ()
    if isinstance(given, Iterable):
        return tuple(given)
    return (given,)


def _to_stage(value: Any) -> Any:
    # A whole pipeline may be used as a stage: wrap it so the executor sees a stage.
    if isinstance(value, PipelineDefinition):
        from ._subpipeline import SubPipelineStage  # noqa: PLC0415 (import cycle)

        return SubPipelineStage(value)
    return value


@attrs.frozen
class StageDefinition:
    """One stage of a pipeline: its id, the stage object, its inputs and its policy.

    ``id`` and ``stage`` may be given positionally, as in ``StageDefinition("audio",
    AudioStage())``. ``stage`` may also be a :class:`PipelineDefinition` (a sub-pipeline).
    """

    id: str
    """Unique id within the pipeline; other stages name it in their ``inputs``."""
    stage: Any = attrs.field(converter=_to_stage)
    """An object with a ``name`` and ``async def execute(input, context)``."""
    pattern: ExecutionPattern = attrs.field(default=ExecutionPattern.SEQUENTIAL, kw_only=True)
    """How the stage runs (see :class:`ExecutionPattern`)."""
    inputs: tuple[str, ...] = attrs.field(default=(), converter=_to_inputs, kw_only=True)
    """Ids of the stages whose outputs this stage needs."""
    condition: Callable[[PipelineContext], bool] | None = attrs.field(default=None, kw_only=True)
    """Evaluated when the inputs are ready; False skips the stage (output None)."""
    retry_config: RetryConfig | None = attrs.field(default=None, kw_only=True)
    """Retry policy per attempt (per item for fan-out); None means one attempt."""
    timeout_ms: float | None = attrs.field(default=None, kw_only=True)
    """Bound on each attempt (each item's attempt for fan-out)."""
    critical: bool = attrs.field(default=True, kw_only=True)
    """A critical failure fails the run and cancels everything; a non-critical one is
    recorded and its dependents receive None."""
    max_concurrent_fan_out: int | None = attrs.field(default=None, kw_only=True)
    """At most this many fan-out items at once; None is unbounded."""
    fan_out_over: str | None = attrs.field(default=None, kw_only=True)
    """For a fan-out stage with several inputs: the input holding the list."""
    description: str | None = attrs.field(default=None, kw_only=True)
    """Free text for people and graphs."""
    version: str = attrs.field(default="1", kw_only=True)
    """Part of the cache key: bump it to invalidate cached outputs of this stage."""
    cache: bool = attrs.field(default=True, kw_only=True)
    """Whether successful outputs are cached (when the executor has a cache store)."""
    cache_ttl: float | timedelta | None = attrs.field(default=None, kw_only=True)
    """How long a cached output is served (seconds, or a timedelta); None: no expiry."""
    output_type: Any = attrs.field(default=None, kw_only=True)
    """The type cached outputs are read back as; by default the ``T`` of execute's
    ``StageResult[T]`` return annotation."""


@attrs.frozen
class PipelineDefinition:
    """A named set of stages; their ``inputs`` form the DAG."""

    name: str
    """The pipeline's name (also used in cache keys and logs)."""
    stages: tuple[StageDefinition, ...] = attrs.field(converter=_to_stages)
    """The stages, in any order consistent with your reading; execution follows data."""
    description: str | None = None
    """Free text for people and graphs."""
    fail_fast: bool = True
    """Cancel everything on the first critical failure (the seed's required behaviour).
    With False, independent branches run on and only dependents of the failure are
    cancelled (never started)."""
    _plan: Plan | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def validate_pipeline(self) -> list[str]:
        """Every problem with this definition, as messages; empty when valid."""
        from ._plan import find_problems  # noqa: PLC0415 (import cycle)

        return find_problems(self)

    def validate(self) -> None:
        """Raise :class:`PipelineValidationError` listing every problem, if there is any."""
        self.plan()

    def plan(self) -> Plan:
        """The compiled execution plan (validated once, then reused)."""
        plan = self._plan
        if plan is None:
            from ._plan import compile_plan  # noqa: PLC0415 (import cycle)

            plan = compile_plan(self)
            # A cache on a frozen value: the plan is derived from the fields, never changes it.
            object.__setattr__(self, "_plan", plan)
        return plan

    def execution_waves(self) -> list[list[str]]:
        """Stage ids grouped by depth, for display: the executor never waits for a wave."""
        return self.plan().waves()

    def get_stage(self, stage_id: str) -> StageDefinition:
        """The stage definition with ``stage_id``; KeyError names the id if absent."""
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        msg = f"pipeline '{self.name}' has no stage '{stage_id}'"
        raise KeyError(msg)
