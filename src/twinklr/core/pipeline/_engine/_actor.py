"""One stage's life: receive its inputs -> condition -> run under policy -> hand on.

The supervisor starts a stage's task when its last input lands, so reading the inbox
never parks; the task then runs the stage and reports back to the supervisor, which sends
the output down the stage's outgoing channels and starts whichever dependents became
ready.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from .._base._loops import execute_of
from .._cache._forms import Snapshots
from .._observe._events import EventKind
from .._values._context import record_writes, stop_recording
from .._values._current import expect_late
from .._values._results import StageResult
from .._values._status import StageStatus
from .._values._usage import current_stage
from ..definition import ExecutionPattern
from ..errors import ConditionError, FanOutInputError
from ._attempts import run_unit, settle, settle_raised
from ._fanout import run_fan_out
from ._wiring import OneShotChannel

if TYPE_CHECKING:
    from .._cache._run_cache import RunCache
    from ..definition import StageDefinition
    from ._run import Run


async def direct_actor(run: Run, index: int) -> None:
    """The task of a plain stage (one call: no condition, retry, timeout, cache or
    stream), the common case and the executor's hot path: no wrapper between the task
    and the stage's own ``execute``. Never raises except for cancellation."""
    if run.stopped:
        return  # see stage_actor
    current_stage.set(index)  # what its LLM calls used counts for it
    run.started[index] = now = run.now()  # run.stage_started, inlined
    if run.watched:
        run.stage_transition(EventKind.STAGE_STARTED, index, now)
    plan = run.plan
    sdef = plan.stages[index]
    try:
        if len(sdef.inputs) == 1:  # _receive_inputs, inlined for the common case
            value = run.edges[plan.edge_start[index]].receive_nowait()
        else:
            value = _receive_inputs(run, index)
        try:
            returned = await execute_of(sdef.stage)(value, run.context)
        except BaseException as exc:  # noqa: BLE001 - all but cancellation raised again
            result = settle_raised(sdef, exc)
        else:
            result = settle(sdef, returned)
    except BaseException as exc:
        if is_cancellation(exc):
            run.stage_cancelled(index)
        raise
    run.stage_finished(index, result)


async def streaming_actor(run: Run, index: int) -> None:
    """The task of a streaming stage that others are pipelined on: they start with it and
    get each item as it is yielded."""
    if run.stopped:
        return  # the run stopped between queueing this stage and its start
    run.stage_started(index)
    streams = run.open_streams(index)
    try:
        await stage_actor(run, index, streams)
    finally:
        for send in streams:
            send.close()


async def stage_actor(run: Run, index: int, streams: list[Any] | None = None) -> None:
    """The task of stage ``index`` in ``run``; never raises except for cancellation."""
    if run.stopped:
        # Fail-fast (or a cancelled handle) came between queueing this stage and its
        # task's first step: it never starts, so no stage code runs after the failure.
        return
    plan = run.plan
    sdef = plan.stages[index]
    if streams is None:
        run.stage_started(index)
    stream = run.streams.pop(index, None) if run.streams else None
    try:
        value = _receive_inputs(run, index) if stream is None else None
        result = None
        if sdef.condition is not None:
            result = _check_condition(
                sdef.condition, sdef.id, run.context, value, with_input=plan.condition_input[index]
            )
        cache = run.cache if plan.cacheable[index] else None
        entry = None
        if result is None and cache is not None and sdef.pattern is not ExecutionPattern.FAN_OUT:
            key = cache.key(sdef, value)
            if key is not None:
                if cache.elsewhere(key):
                    await cache.fetch([key])
                result = cache.serve(sdef, key, run.context)
                if result is None:
                    entry = _Entry(cache, sdef, key, streaming=bool(streams))
        if result is None:
            if sdef.pattern is ExecutionPattern.FAN_OUT:
                result = await run_fan_out(
                    sdef,
                    value,
                    run.context,
                    streaming=plan.streaming[index],
                    on_retry=run.on_retry,
                    cache=cache,
                    on_item=functools.partial(run.item_finished, index),
                    stream=stream,
                    now=run.now,
                )
                if stream is not None:
                    stream.close()  # the producer must not wait for a reader that left
                    result = _after_stream(run, index, result)
            else:
                result = await run_unit(
                    sdef,
                    value,
                    run.context,
                    streaming=plan.streaming[index],
                    on_retry=run.on_retry,
                    forward=None
                    if not streams
                    else functools.partial(_forward, streams, entry.snapshots if entry else None),
                )
        keep = None
        if entry is not None:
            keep = entry.keeper(result)  # success only
            if keep is not None and entry.cache.sync:  # committed before going downstream
                keep()
                keep = None
                await entry.cache.committed(entry.key)
    except BaseException as exc:
        if entry is not None:
            entry.cancelled()
        if is_cancellation(exc):
            run.stage_cancelled(index)
        raise
    run.stage_finished(index, result)
    if keep is not None:  # after the output went downstream: the run's writer saves it
        keep()
    if streams and result.status is StageStatus.CACHED:
        for item in result.output or ():  # a cache hit hands its items on after the fact
            await _forward(streams, None, item)


class _Entry:
    """A stage's cache entry in the making: its key, the context writes its output
    comes with, copies of the items it yields to the stages pipelined on it, and the
    slot of an output that arrives as the stage is cancelled."""

    def __init__(
        self, cache: RunCache, sdef: StageDefinition[Any], key: str, *, streaming: bool
    ) -> None:
        self.cache = cache
        self.sdef = sdef
        self.key = key
        self.writes = record_writes()
        self.late = expect_late()
        # (consumers may change the items before the stage finishes)
        self.snapshots = Snapshots() if streaming else None

    def keeper(self, result: StageResult[Any]) -> Callable[[], None] | None:
        """What saves the stage's ``result``; None when it did not succeed."""
        stop_recording()
        if result.status is not StageStatus.SUCCEEDED:
            return None
        return functools.partial(
            self.cache.keep, self.sdef, self.key, result.output, self.writes, self.snapshots
        )

    def cancelled(self) -> None:
        """The stage was cancelled: an output that was on its way meanwhile (see
        `offer_late`) is saved all the same, a success like any other."""
        if self.late.arrived:
            self.cache.offer(self.sdef, self.key, self.late.value, self.writes)


async def _forward(
    streams: list[trio.MemorySendChannel[Any]], snapshots: Snapshots | None, item: Any
) -> None:
    """Hand a yielded ``item`` to every stage pipelined on its producer (one that has
    stopped reading is dropped: the producer goes on for its other consumers), keeping
    a copy of it first for the cache."""
    if snapshots is not None:
        snapshots.take(item)
    for send in list(streams):
        try:
            await send.send(item)
        except trio.BrokenResourceError:
            streams.remove(send)


def _after_stream(run: Run, index: int, result: StageResult[Any]) -> StageResult[Any]:
    """A pipelined fan-out whose producer did not succeed got no list to fan out over:
    it fails as it would have without pipelining."""
    producer = run.results[run.plan.pipelined_on[index]]
    if result.status is StageStatus.FAILED or (
        producer is not None and producer.status in _HANDS_ON
    ):
        return result
    output = None if producer is None else producer.output
    error = FanOutInputError(run.plan.ids[index], output)
    return StageResult.failure(error, stage_name=run.plan.ids[index], metadata={"attempts": 0})


_HANDS_ON = frozenset({StageStatus.SUCCEEDED, StageStatus.CACHED, StageStatus.SOFT_FAILED})


def _receive_inputs(run: Run, index: int) -> Any:
    """The stage's input: the initial input, its one input, or ``{input_id: output}``.
    Every input has landed before the task starts, so the reads never park."""
    plan = run.plan
    inputs = plan.stages[index].inputs
    if not inputs:
        return run.initial_input
    first = plan.edge_start[index]
    if len(inputs) == 1:
        return run.edges[first].receive_nowait()
    channels = run.edges[first : first + len(inputs)]  # a stage's input edges are adjacent
    return dict(zip(inputs, map(OneShotChannel.receive_nowait, channels), strict=True))


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is Trio cancelling us: ``Cancelled`` itself, or a group from a
    nested nursery (fan-out, sub-pipeline) holding one."""
    if isinstance(exc, trio.Cancelled):
        return True
    return isinstance(exc, BaseExceptionGroup) and exc.subgroup(trio.Cancelled) is not None


def _check_condition(
    condition: Any, stage_id: str, context: Any, value: Any, *, with_input: bool
) -> StageResult[Any] | None:
    """A skipped or failed result when the condition says so; None to go ahead. A
    condition of two parameters also gets the stage's input."""
    try:
        go_ahead = bool(condition(context, value) if with_input else condition(context))
    except Exception as exc:  # noqa: BLE001 - a raising condition fails its stage
        error = ConditionError(stage_id, exc)
        return StageResult.failure(error, stage_name=stage_id, metadata={"attempts": 0})
    if go_ahead:
        return None
    return StageResult.skipped(stage_name=stage_id)
