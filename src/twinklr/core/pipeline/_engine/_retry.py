"""RetryConfig -> tenacity, on Trio's clock.

tenacity's ``AsyncRetrying`` catches ``BaseException`` around each attempt, so the retry
predicate accepts ``Exception`` only: ``trio.Cancelled`` and ``KeyboardInterrupt`` are
re-raised at once, never retried. Sleeping uses ``trio.sleep`` (virtual under
``autojump_clock``); attempts are bounded by ``stop_after_attempt``, never by tenacity's
wall-clock stops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from ..definition import RetryConfig
from ..errors import BudgetExceededError, StageExecutionError

if TYPE_CHECKING:
    import tenacity


def error_text(exc: BaseException) -> str:
    """What ``retryable_errors`` patterns are matched against, and what results report.

    The executor's own errors give their message (a timeout's says "timeout"); any other
    exception gives ``Type: message``.
    """
    text = str(exc)
    if isinstance(exc, StageExecutionError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def retrying(
    config: RetryConfig, on_retry: Callable[[int, BaseException, float], None]
) -> tenacity.AsyncRetrying:
    """A tenacity controller for ``config``.

    ``on_retry(attempt, error, delay_s)`` is called after failed attempt number
    ``attempt`` when another attempt will follow after ``delay_s`` seconds. (tenacity
    is imported by the first stage that is retried, not with the package.)
    """
    import tenacity  # noqa: PLC0415

    def should_retry(exc: BaseException) -> bool:
        if isinstance(exc, BudgetExceededError):  # another attempt would be refused too
            return False
        return isinstance(exc, Exception) and config.is_retryable(error_text(exc))

    def wait(state: tenacity.RetryCallState) -> float:
        return config.delay_ms(state.attempt_number) / 1000

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        assert outcome is not None  # noqa: S101 (tenacity sets it before sleeping)
        exc = outcome.exception()
        assert exc is not None  # noqa: S101 (only failures are retried)
        delay = state.upcoming_sleep
        on_retry(state.attempt_number, exc, delay)

    return tenacity.AsyncRetrying(
        sleep=trio.sleep,
        stop=tenacity.stop_after_attempt(config.max_attempts),
        wait=wait,
        retry=tenacity.retry_if_exception(should_retry),
        before_sleep=before_sleep,
        reraise=True,
    )
