"""One stage's life: receive its inputs -> condition -> run under policy -> hand on.

The supervisor starts a stage's task when its last input lands, so reading the inbox
never parks; the task then runs the stage and reports back to the supervisor, which sends
the output down the stage's outgoing channels and starts whichever dependents became
ready.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import trio

from ._attempts import run_unit, settle, settle_error
from ._context import record_writes, stop_recording
from ._fanout import run_fan_out
from ._results import StageResult, StageStatus
from ._wiring import receive_and_recycle
from .definition import ExecutionPattern
from .errors import ConditionError

if TYPE_CHECKING:
    from ._run import Run


async def stage_actor(run: Run, index: int) -> None:
    """The task of stage ``index`` in ``run``; never raises except for cancellation."""
    plan = run.plan
    sdef = plan.stages[index]
    run.stage_started(index)
    try:
        # Every input has landed before the task starts: the reads never park.
        inputs = sdef.inputs
        if not inputs:
            value = run.initial_input
        else:
            edges = run.edges
            first = plan.edge_start[index]
            if len(inputs) == 1:
                value = receive_and_recycle(edges[first])
            else:
                value = {
                    name: receive_and_recycle(edges[first + slot])
                    for slot, name in enumerate(inputs)
                }
        result = None
        if sdef.condition is not None:
            result = _check_condition(sdef.condition, sdef.id, run.context)
        cache = run.cache if plan.cacheable[index] else None
        key = writes = None
        if result is None and cache is not None and sdef.pattern is not ExecutionPattern.FAN_OUT:
            key = cache.key(sdef, value)
            if key is not None:
                result = cache.serve(sdef, key, run.context)
                if result is None:
                    writes = record_writes()
        if result is None and plan.plain[index]:
            # The hot path: await the stage itself, no wrapper coroutine in between.
            try:
                returned = await sdef.stage.execute(value, run.context)
            except Exception as exc:  # noqa: BLE001 - errors are results, by contract
                result = settle_error(sdef, exc)
            else:
                result = settle(sdef, returned)
        elif result is None:
            if sdef.pattern is ExecutionPattern.FAN_OUT:
                result = await run_fan_out(
                    sdef,
                    value,
                    run.context,
                    streaming=plan.streaming[index],
                    on_retry=run.on_retry,
                    cache=cache,
                    on_item=functools.partial(run.item_finished, index),
                )
            else:
                result = await run_unit(
                    sdef,
                    value,
                    run.context,
                    streaming=plan.streaming[index],
                    on_retry=run.on_retry,
                )
        if writes is not None:
            stop_recording()
    except BaseException as exc:
        if is_cancellation(exc):
            run.stage_cancelled(index)
        raise
    run.stage_finished(index, result)
    # Success only, and after the output went downstream: the write is queued for the
    # run's writer, off this stage's path.
    succeeded = result.status is StageStatus.SUCCEEDED
    if writes is not None and key is not None and cache is not None and succeeded:
        cache.offer(sdef, key, result.output, writes)


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is Trio cancelling us: ``Cancelled`` itself, or a group from a
    nested nursery (fan-out, sub-pipeline) holding one."""
    if isinstance(exc, trio.Cancelled):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(trio.Cancelled) is not None


def _check_condition(condition: Any, stage_id: str, context: Any) -> StageResult[Any] | None:
    """A skipped or failed result when the condition says so; None to go ahead."""
    try:
        go_ahead = bool(condition(context))
    except Exception as exc:  # noqa: BLE001 - a raising condition fails its stage
        error = ConditionError(stage_id, exc)
        return StageResult.failure(error, stage_name=stage_id, metadata={"attempts": 0})
    if go_ahead:
        return None
    return StageResult.skipped(stage_name=stage_id)
