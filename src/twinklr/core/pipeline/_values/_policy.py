"""How a stage runs (its `ExecutionPattern`) and how it is retried
(`RetryConfig`): the policy values a `StageDefinition` carries.

Public through ``definition``, where they are defined for users (and pickled from).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from typing import Any

import attrs


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
    """Retry only failures whose ``ExceptionType: message`` contains one of these strings,
    whatever their case (a timeout contains "timeout"); None retries every failure."""

    def delay_ms(self, attempt: int) -> float:
        """The delay after failed attempt number ``attempt`` (1-based)."""
        return min(
            self.initial_delay_ms * self.backoff_multiplier ** (attempt - 1), self.max_delay_ms
        )

    def is_retryable(self, error_text: str) -> bool:
        """Whether a failure described by ``error_text`` may be retried."""
        if self.retryable_errors is None:
            return True
        text = error_text.casefold()
        return any(pattern.casefold() in text for pattern in self.retryable_errors)
