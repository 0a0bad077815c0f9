"""One unit of work (a stage, or one fan-out item) under its timeout and retry policy.

Whatever happens inside, the caller gets a `StageResult`: exceptions, failure
results, wrong return types and timeouts all become failed results. Only cancellation and
non-``Exception`` errors (``KeyboardInterrupt``) propagate; and only the run's own
cancellation counts as one: a ``trio.Cancelled`` a stage raises while nothing around it
is cancelled (from a cancel scope it left, or a library's bug) fails that stage.
"""

from __future__ import annotations

import math
import types
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from types import MappingProxyType
from typing import Any

import trio

from .._base._loops import execute_of, wrong_loop
from .._values._results import NO_METADATA, StageResult, make_result
from .._values._status import StageStatus
from ..definition import StageDefinition
from ..errors import StageFailedError, StageOutputError, StageTimeoutError
from ._plan import is_plain
from ._retry import error_text, retrying

#: The metadata of a result that succeeded at its first attempt (shared).
ONE_ATTEMPT: Mapping[str, Any] = MappingProxyType({"attempts": 1})
_SUCCEEDED = StageStatus.SUCCEEDED

#: Called as ``on_retry(stage_id, item, attempt, error, delay_s)`` before a retry sleep.
RetryHook = Callable[[str, "int | None", int, BaseException, float], None]


class _FailedAttemptError(StageFailedError):
    """A ``StageResult.failure`` turned into an exception so tenacity can retry it."""

    def __init__(self, stage: str, result: StageResult[Any]) -> None:
        self.result = result
        super().__init__(stage, result.error or "stage reported failure")


#: The statuses a stage may return (cancelled and cached are the executor's to give).
CLAIMABLE = frozenset(
    {StageStatus.SUCCEEDED, StageStatus.FAILED, StageStatus.SKIPPED, StageStatus.SOFT_FAILED}
)
_EXPECTED = "a StageResult that succeeded, failed, was skipped or soft-failed"


def stray_cancellation(stage_id: str, exc: BaseException) -> Exception | None:
    """The error failing stage ``stage_id`` when ``exc``, which its code raised, is a
    ``trio.Cancelled`` (or a group of them and errors) while nothing enclosing the stage
    is cancelled; None when ``exc`` must propagate (the run's own cancellation, a
    ``KeyboardInterrupt``)."""
    if trio.current_effective_deadline() == -math.inf:
        return None  # a scope around the stage is cancelled: this is cancellation
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split((trio.Cancelled, Exception))
        if rest is not None or matched is None or matched.subgroup(trio.Cancelled) is None:
            return None
    elif not isinstance(exc, trio.Cancelled):
        return None
    error = StageFailedError(
        stage_id,
        f"stage '{stage_id}' raised trio.Cancelled while the run was not cancelling it"
        " (from a cancel scope it had left, or a bug in a library it calls)",
    )
    error.__cause__ = exc
    return error


def settle_raised(sdef: StageDefinition[Any], exc: BaseException) -> StageResult[Any]:
    """The failed result of a stage call that raised ``exc``: an ``Exception``, or a
    stray ``trio.Cancelled`` (see `stray_cancellation`). Anything else (the run's
    cancellation, ``KeyboardInterrupt``) is raised again."""
    if isinstance(exc, Exception):
        return settle_error(sdef, exc)
    error = stray_cancellation(sdef.id, exc)
    if error is None:
        raise exc
    return settle_error(sdef, error)


#: Hands each item a streaming stage yields to the stages pipelined on it.
Forward = Callable[[Any], Awaitable[None]]


async def _invoke(
    stage: Any, value: Any, context: Any, *, streaming: bool, forward: Forward | None = None
) -> Any:
    if not streaming:
        return await execute_of(stage)(value, context)
    # An async-generator stage: its output is the list of what it yielded.
    async with aclosing(execute_of(stage)(value, context)) as produced:
        if forward is None:
            return StageResult.success([item async for item in produced])
        items = []
        async for item in produced:
            items.append(item)
            await forward(item)
        return StageResult.success(items)


async def _attempt_once(
    sdef: StageDefinition[Any],
    value: Any,
    context: Any,
    item: int | None,
    streaming: bool,  # noqa: FBT001
    *,
    forward: Forward | None = None,
) -> StageResult[Any]:
    try:
        result = await _timed(sdef, value, context, item, streaming, forward=forward)
    except BaseException as exc:
        if (error := stray_cancellation(sdef.id, exc)) is None:
            raise
        raise error from exc  # an error like any other: retried by the policy
    return _checked(sdef, result)


async def _timed(
    sdef: StageDefinition[Any],
    value: Any,
    context: Any,
    item: int | None,
    streaming: bool,  # noqa: FBT001
    *,
    forward: Forward | None,
) -> Any:
    timeout_ms = sdef.timeout_ms
    if timeout_ms is None:
        return await _invoke(sdef.stage, value, context, streaming=streaming, forward=forward)
    with trio.move_on_after(timeout_ms / 1000) as scope:
        result = await _invoke(sdef.stage, value, context, streaming=streaming, forward=forward)
    # cancel_called, not cancelled_caught: a stage that swallowed the cancellation and
    # returned late has still run past its deadline.
    if scope.cancel_called:
        raise StageTimeoutError(sdef.id, timeout_ms, item=item)
    return result


def _checked(sdef: StageDefinition[Any], result: object) -> StageResult[Any]:
    """``result`` if it is a successful StageResult; else raise what went wrong."""
    if not isinstance(result, StageResult):
        raise StageOutputError(sdef.id, _closed(result))
    if result.status is StageStatus.FAILED:
        raise _FailedAttemptError(sdef.id, result)
    if result.status not in CLAIMABLE:
        raise StageOutputError(sdef.id, result, _EXPECTED)
    if type(result.output) in _UNAWAITED:
        raise StageOutputError(sdef.id, _closed(result.output))
    return result


#: What a stage returns when it forgot an ``await``: never an output (the error says so).
_UNAWAITED = frozenset({types.CoroutineType, types.AsyncGeneratorType})


def _closed(value: object) -> object:
    """``value``, closed if it is a coroutine nobody will await (no "never awaited"
    warning later, far from the stage that made it)."""
    if isinstance(value, types.CoroutineType):
        value.close()
    return value


def settle(sdef: StageDefinition[Any], returned: object) -> StageResult[Any]:
    """The result of a plain call that returned ``returned``."""
    if (
        type(returned) is StageResult
        and returned.status is _SUCCEEDED
        and returned.metadata is NO_METADATA
        and type(returned.output) not in _UNAWAITED
    ):  # the common case, straight to the result: what _with_attempts would make
        name = returned.stage_name or sdef.id
        return make_result(_SUCCEEDED, returned.output, returned.error, name, ONE_ATTEMPT)
    try:
        result = _checked(sdef, returned)
    except Exception as exc:  # noqa: BLE001 - a wrong return or a failure result
        return settle_error(sdef, exc)
    return _with_attempts(sdef, result, [])


def settle_item(sdef: StageDefinition[Any], returned: object) -> StageResult[Any]:
    """`settle` for a fan-out item of a plain stage. A plain success is kept as it
    is, without the copy that adds ``attempts``: an item's result stays inside its
    stage, which reads missing attempts as one (a copy per item is a third of an
    item's cost)."""
    if (
        type(returned) is StageResult
        and returned.status is _SUCCEEDED
        and returned.metadata is NO_METADATA
        and type(returned.output) not in _UNAWAITED
    ):
        return returned
    return settle(sdef, returned)


def settle_error(
    sdef: StageDefinition[Any], exc: Exception, errors: list[str] | None = None
) -> StageResult[Any]:
    """The failed result of the last attempt, which raised ``exc``."""
    errors = [] if errors is None else errors
    mixed = wrong_loop(sdef.id, exc)
    if mixed is not None:  # what to do about it, rather than a library's bare complaint
        error = StageFailedError(sdef.id, mixed)
        error.__cause__ = exc
        exc = error
    errors.append(error_text(exc))
    if isinstance(exc, _FailedAttemptError):
        return _failed(sdef.id, exc.result.exception or exc, exc.result, errors)
    return _failed(sdef.id, exc, None, errors)


async def run_unit(
    sdef: StageDefinition[Any],
    value: Any,
    context: Any,
    *,
    item: int | None = None,
    streaming: bool = False,
    on_retry: RetryHook | None = None,
    forward: Forward | None = None,
) -> StageResult[Any]:
    """Run ``sdef``'s stage on ``value`` with its policy; return the final result.

    A streaming stage's items are also handed to ``forward`` as they are yielded (only
    for stages that are not retried: a retry would hand them on twice).

    The result's metadata gains ``attempts`` and, when any attempt failed,
    ``attempt_errors`` (one message per failed attempt, in order).
    """
    if is_plain(sdef, streaming=streaming):
        try:
            returned = await execute_of(sdef.stage)(value, context)
        except BaseException as exc:  # noqa: BLE001 - all but cancellation raised again
            return settle_raised(sdef, exc)
        return settle(sdef, returned)
    config = sdef.retry_config
    errors: list[str] = []
    try:
        if config is None or config.max_attempts == 1:
            result = await _attempt_once(sdef, value, context, item, streaming, forward=forward)
        else:

            def record(attempt: int, error: BaseException, delay_s: float) -> None:
                errors.append(error_text(error))
                if on_retry is not None:
                    on_retry(sdef.id, item, attempt, error, delay_s)

            controller = retrying(config, record)
            result = await controller(_attempt_once, sdef, value, context, item, streaming)
    except Exception as exc:  # noqa: BLE001 - errors are results, by contract
        return settle_error(sdef, exc, errors)
    return _with_attempts(sdef, result, errors)


def _with_attempts(
    sdef: StageDefinition[Any], result: StageResult[Any], errors: list[str]
) -> StageResult[Any]:
    if not errors and not result.metadata:
        metadata: Mapping[str, Any] = ONE_ATTEMPT  # the common case: nothing to copy
    else:
        fields = {**result.metadata, "attempts": len(errors) + 1}
        if errors:
            fields["attempt_errors"] = tuple(errors)
        metadata = MappingProxyType(fields)
    return make_result(
        result.status, result.output, result.error, result.stage_name or sdef.id, metadata
    )


def _failed(
    stage_id: str, exc: BaseException, reported: StageResult[Any] | None, errors: list[str]
) -> StageResult[Any]:
    metadata: dict[str, Any] = dict(reported.metadata) if reported is not None else {}
    metadata["attempts"] = len(errors)
    metadata["attempt_errors"] = tuple(errors)
    metadata["error_type"] = type(exc).__name__
    return StageResult(
        status=StageStatus.FAILED,
        error=errors[-1],
        stage_name=(reported.stage_name if reported is not None else "") or stage_id,
        metadata=metadata,
        exception=exc,
    )
