"""RetryConfig -> tenacity: error text, Exception-only predicate, Trio sleep."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import StageTimeoutError
from twinklr.core.pipeline._engine._retry import error_text, retrying
from twinklr.core.pipeline.definition import RetryConfig


def test_error_text_is_type_and_message() -> None:
    assert error_text(ValueError("bad")) == "ValueError: bad"
    assert error_text(KeyError()) == "KeyError"
    assert error_text(StageTimeoutError("x", 100)) == "stage 'x' timed out after 100 ms (timeout)"


async def test_the_controller_sleeps_on_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []
    retries: list[tuple[int, float]] = []

    async def flaky() -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            raise RuntimeError("again")
        return "done"

    config = RetryConfig(max_attempts=3, initial_delay_ms=250)
    controller = retrying(config, lambda attempt, _error, delay: retries.append((attempt, delay)))
    assert await controller(flaky) == "done"
    assert calls == [0, 0.25, 0.75]
    assert retries == [(1, 0.25), (2, 0.5)]


async def test_base_exceptions_are_reraised_not_retried() -> None:
    attempts: list[int] = []

    async def interrupted() -> None:
        attempts.append(1)
        raise KeyboardInterrupt

    controller = retrying(RetryConfig(max_attempts=3), lambda *_: None)
    with pytest.raises(KeyboardInterrupt):
        await controller(interrupted)
    assert attempts == [1]
