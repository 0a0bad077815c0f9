"""A unit of work under timeout and retry: exact virtual times, errors as results."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    StageStatus,
    StageTimeoutError,
)
from twinklr.core.pipeline._engine._attempts import run_unit
from twinklr.core.pipeline.definition import RetryConfig
from twinklr.core.pipeline.testing import fixed, raising, record_run


def retry(**kwargs: Any) -> RetryConfig:
    return RetryConfig(**{"initial_delay_ms": 100, "backoff_multiplier": 2, **kwargs})


async def test_failures_are_retried_with_exponential_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flaky = stub("ok", delay=1, fail_times=3, error="rate_limit hit")
    sdef = StageDefinition("x", flaky, retry_config=retry(max_attempts=4))
    result = await run_unit(sdef, None, PipelineContext())
    assert result.success
    # attempts start at 0, 1+0.1, 2.1+1+0.2, 3.3+1+0.4
    assert [t for t, _ in flaky.calls] == pytest.approx([0, 1.1, 2.3, 3.7])
    assert result.metadata["attempts"] == 4
    assert result.metadata["attempt_errors"] == ("rate_limit hit",) * 3
    assert trio.current_time() == pytest.approx(4.7)


async def test_delays_are_capped(autojump_clock: trio.testing.MockClock) -> None:
    flaky = stub(fail_times=3)
    config = RetryConfig(
        max_attempts=4, initial_delay_ms=1000, backoff_multiplier=10, max_delay_ms=1500
    )
    await run_unit(StageDefinition("x", flaky, retry_config=config), None, PipelineContext())
    assert [t for t, _ in flaky.calls] == [0, 1, 2.5, 4]


async def test_retries_run_out_and_the_last_error_is_the_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    always = stub(fail_times=9, raises=ConnectionError, error="refused")
    sdef = StageDefinition("x", always, retry_config=retry(max_attempts=3))
    result = await run_unit(sdef, None, PipelineContext())
    assert result.status is StageStatus.FAILED
    assert result.error == "ConnectionError: refused"
    assert isinstance(result.exception, ConnectionError)
    assert result.metadata["attempts"] == 3
    assert result.metadata["error_type"] == "ConnectionError"
    assert len(always.calls) == 3


async def test_only_retryable_errors_are_retried() -> None:
    bad_input = stub(fail_times=1, error="bad input")
    sdef = StageDefinition(
        "x", bad_input, retry_config=retry(max_attempts=3, retryable_errors=["rate_limit"])
    )
    result = await run_unit(sdef, None, PipelineContext())
    assert not result.success
    assert len(bad_input.calls) == 1
    assert result.metadata["attempts"] == 1


async def test_exception_type_names_can_be_matched(autojump_clock: trio.testing.MockClock) -> None:
    flaky = stub("ok", fail_times=1, raises=ConnectionError, error="reset")
    config = retry(max_attempts=2, retryable_errors=["ConnectionError"])
    result = await run_unit(StageDefinition("x", flaky, retry_config=config), 1, PipelineContext())
    assert result.success
    assert len(flaky.calls) == 2


async def test_a_timeout_counts_as_timeout_for_retries(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = stub("ok", delay=2)
    sdef = StageDefinition(
        "x",
        slow,
        timeout_ms=500,
        retry_config=retry(max_attempts=2, retryable_errors=["timeout"]),
    )
    result = await run_unit(sdef, None, PipelineContext())
    assert [t for t, _ in slow.calls] == [0, 0.6]
    assert slow.cancelled == [0.5, 1.1]
    assert result.metadata["attempt_errors"] == ("stage 'x' timed out after 500 ms (timeout)",) * 2
    assert isinstance(result.exception, StageTimeoutError)
    assert result.exception.timeout_ms == 500


async def test_cancellation_is_never_retried(autojump_clock: trio.testing.MockClock) -> None:
    slow = stub(delay=5)
    sdef = StageDefinition("x", slow, retry_config=retry(max_attempts=5))
    with trio.move_on_after(1):
        await run_unit(sdef, None, PipelineContext())
    assert len(slow.calls) == 1
    assert slow.cancelled == [1]


async def test_cancellation_during_a_backoff_sleep_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flaky = stub(fail_times=5)
    sdef = StageDefinition("x", flaky, retry_config=RetryConfig(max_attempts=5))
    with trio.move_on_after(1.5) as scope:
        await run_unit(sdef, None, PipelineContext())
    assert scope.cancelled_caught
    assert [t for t, _ in flaky.calls] == [0, 1]  # the second backoff (2 s) was cut short


async def test_retry_hook_sees_each_retry(autojump_clock: trio.testing.MockClock) -> None:
    seen: list[tuple[str, int | None, int, str, float]] = []
    sdef = StageDefinition("x", stub(fail_times=2), retry_config=retry(max_attempts=3))
    await run_unit(
        sdef,
        None,
        PipelineContext(),
        item=4,
        on_retry=lambda stage, item, attempt, error, delay: seen.append(
            (stage, item, attempt, str(error), delay)
        ),
    )
    assert seen == [("x", 4, 1, "boom", 0.1), ("x", 4, 2, "boom", 0.2)]


class Keyboard:
    name = "keyboard"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        raise KeyboardInterrupt


async def test_keyboard_interrupt_is_never_swallowed() -> None:
    with pytest.raises(KeyboardInterrupt):
        await run_unit(StageDefinition("x", Keyboard()), None, PipelineContext())
    sdef = StageDefinition("x", Keyboard(), retry_config=RetryConfig(max_attempts=3))
    with pytest.raises(KeyboardInterrupt):
        await run_unit(sdef, None, PipelineContext())


class Streaming:
    name = "streaming"

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        for i in range(input):
            await trio.sleep(1)
            yield i * 10


async def test_an_async_generator_stage_outputs_the_list_it_yielded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await run_unit(StageDefinition("x", Streaming()), 3, PipelineContext(), streaming=True)
    assert result.output == [0, 10, 20]
    assert trio.current_time() == 3
    sdef = StageDefinition("x", Streaming(), timeout_ms=1500)
    result = await run_unit(sdef, 3, PipelineContext(), streaming=True)
    assert result.error == "stage 'x' timed out after 1500 ms (timeout)"


async def test_a_failure_result_keeps_its_metadata() -> None:
    class Failing:
        name = "failing"

        async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
            return StageResult.failure("nope", metadata={"why": "because"})

    result = await run_unit(StageDefinition("x", Failing()), None, PipelineContext())
    assert result.metadata["why"] == "because"
    assert result.metadata["attempt_errors"] == ("nope",)
    assert result.stage_name == "x"


class SwallowsCancel:
    name = "swallows"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        # A misbehaving stage that swallows its cancellation; the timeout must still count.
        with contextlib.suppress(trio.Cancelled):
            await trio.sleep(10)
        return StageResult.success("late")


async def test_a_stage_that_swallows_its_timeout_still_timed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sdef = StageDefinition("x", SwallowsCancel(), timeout_ms=100)
    result = await run_unit(sdef, None, PipelineContext())
    assert result.error == "stage 'x' timed out after 100 ms (timeout)"
    assert trio.current_time() == 0.1


# -- only the run's own cancellation is cancellation ---------------------------------


async def a_stray_cancelled() -> trio.Cancelled:
    """A real ``trio.Cancelled``, caught from a cancel scope that is gone."""
    with trio.CancelScope() as scope:
        scope.cancel()
        try:
            await trio.lowlevel.checkpoint()
        except trio.Cancelled as exc:
            stray = exc
            raise
    return stray


async def test_a_stray_cancelled_fails_its_stage_however_it_is_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stray = await a_stray_cancelled()
    downstream: list[Any] = []

    async def leaks(value: Any) -> Any:
        raise stray

    async def records(value: Any) -> Any:
        downstream.append(value)
        return value

    async def three(value: Any) -> list[int]:
        return [1, 2, 3]

    fan = ExecutionPattern.FAN_OUT
    shapes: dict[str, list[StageDefinition[Any]]] = {
        "plain": [StageDefinition("s", leaks)],
        "timeout": [StageDefinition("s", leaks, timeout_ms=1000)],
        "retried": [StageDefinition("s", leaks, retry_config=retry(max_attempts=2))],
        "fan-out": [
            StageDefinition("items", three),
            StageDefinition("s", leaks, inputs=["items"], pattern=fan),
        ],
        "fan-out retried": [
            StageDefinition("items", three),
            StageDefinition(
                "s", leaks, inputs=["items"], pattern=fan, retry_config=retry(max_attempts=2)
            ),
        ],
    }
    for shape, stages in shapes.items():
        stages = [*stages, StageDefinition("after", records, inputs=["s"])]  # noqa: PLW2901
        result = await PipelineExecutor().execute(PipelineDefinition("p", stages), 0)
        assert not result.success, shape
        assert result.failed_stages == ("s",), shape
        assert result.cancelled_stages == (), shape
        assert "raised trio.Cancelled while the run was not cancelling it" in str(result.error)
    assert downstream == []  # no empty list flowed on from the fan-outs
    # The retried stage was retried: a stray Cancelled is an error like any other.
    result = await PipelineExecutor().execute(PipelineDefinition("p", shapes["retried"]), 0)
    assert result.stage_results["s"].metadata["attempts"] == 2


async def test_the_runs_own_cancellation_is_still_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(value: Any) -> Any:
        await trio.sleep(10)

    pipeline = PipelineDefinition("p", [StageDefinition("s", slow)])
    with trio.move_on_after(1) as scope:
        await PipelineExecutor().execute(pipeline, 0)
    assert scope.cancelled_caught  # the caller's cancellation reached it as cancellation
    assert trio.current_time() == 1
    handle_result = None
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, pipeline, 0)
        await trio.sleep(1)
        handle.cancel()
        handle_result = await handle.wait()
    assert handle_result.cancelled_stages == ("s",)
    assert handle_result.failed_stages == ()


@pytest.mark.parametrize("status", [StageStatus.CANCELLED, StageStatus.CACHED])
async def test_a_stage_may_not_claim_a_status_only_the_executor_gives(
    status: StageStatus,
) -> None:
    reached: list[Any] = []

    class Claims:
        name = "claims"

        async def execute(self, input: Any, context: PipelineContext) -> StageResult[int]:
            return StageResult(status=status, output=5)

    async def after(value: Any) -> Any:
        reached.append(value)

    for timeout_ms in (None, 1000):
        pipeline = PipelineDefinition(
            "p",
            [
                StageDefinition("s", Claims(), timeout_ms=timeout_ms),
                StageDefinition("t", after, inputs=["s"]),
            ],
        )
        result = await PipelineExecutor().execute(pipeline, 0)
        assert result.failed_stages == ("s",)
        assert f"status=<StageStatus.{status.name}" in str(result.error)
        assert "expected a StageResult that succeeded, failed, was skipped or soft-failed" in str(
            result.error
        )
    assert reached == []


# -- shielded work: fail-fast and timeouts wait for it, and count it cancelled ----


class Shielded:
    """Work that does not let itself be cancelled for ``seconds``."""

    name = "shielded"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.ended_at: float | None = None

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[str]:
        with trio.CancelScope(shield=True):
            await trio.sleep(self.seconds)
        self.ended_at = trio.current_time()
        await trio.lowlevel.checkpoint()  # the first checkpoint after the shield: cancelled here
        return StageResult.success("finished")


async def test_a_stage_that_shields_its_work_holds_the_run_only_that_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    shielded = Shielded(5)
    plain = fixed("never", delay=10)
    later = fixed("later")
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("shielded", shielded),
            StageDefinition("plain", plain),
            StageDefinition("bad", raising(ValueError("no"), delay=1)),
            StageDefinition("later", later, inputs=["bad"]),
        ],
    )
    record = await record_run(pipeline)
    # Fail-fast at 1 s cancels "plain" at once; nothing starts after; the run ends when
    # the shielded work ends, at 5 s, and that stage counts as cancelled.
    assert record.result.total_duration_ms == 5000
    assert plain.calls[0].ended_at == 1.0
    assert shielded.ended_at == 5.0
    record.assert_cancelled("plain")
    record.assert_cancelled("shielded")
    record.assert_never_started("later")
    record.assert_no_task_left_running()


async def test_a_shielded_stage_overrunning_its_timeout_ends_when_its_shield_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("shielded", Shielded(5), timeout_ms=2000)])
    record = await record_run(pipeline)
    assert record.result.total_duration_ms == 5000
    assert (
        record.result.error
        == "stage 'shielded' failed: stage 'shielded' timed out after 2000 ms (timeout)"
    )


async def fetch(value: int) -> int:
    return value


async def forgets(value: int) -> Any:
    return fetch(value)  # (no await: a coroutine)


async def gives_a_generator(value: int) -> Any:
    async def words() -> Any:
        yield value

    return words()


class ForgetsInItsResult:
    name = "forgets"

    async def execute(self, value: int, context: PipelineContext) -> StageResult[Any]:
        return StageResult.success(fetch(value))


class ReturnsACoroutine:
    name = "returns"

    async def execute(self, value: int, context: PipelineContext) -> Any:
        return fetch(value)


@pytest.mark.parametrize(
    ("stage", "said"),
    [
        (forgets, "a coroutine (fetch)"),
        (ForgetsInItsResult(), "a coroutine (fetch)"),
        (ReturnsACoroutine(), "a coroutine (fetch)"),
        (gives_a_generator, "an async generator (gives_a_generator.<locals>.words)"),
    ],
)
@pytest.mark.parametrize("pattern", [ExecutionPattern.SEQUENTIAL, ExecutionPattern.FAN_OUT])
async def test_a_forgotten_await_names_the_stage_and_the_coroutine_is_closed(
    stage: Any, said: str, pattern: ExecutionPattern
) -> None:
    import gc  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("values", fixed([1, 2] if pattern is ExecutionPattern.FAN_OUT else 1)),
            StageDefinition("plan", stage, inputs=["values"], pattern=pattern),
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await PipelineExecutor().execute(pipeline)
        gc.collect()
    assert not result.success
    error = result.stage_results["plan"].error or ""
    assert f"stage 'plan' returned {said} instead of its value: did you forget await?" in error
    assert not [w for w in caught if "never awaited" in str(w.message)]
