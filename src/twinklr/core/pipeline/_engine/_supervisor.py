"""Supervising a run: its stage tasks in a nursery, the run's context variables around
them, the cache's writer, the event relay and the recorder beside them, and what is
done when it ends (its record, the cleanups its stages asked for)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from .._base._loops import stage_host
from .._kinds._gate import current_gates
from .._observe._events import EventKind
from .._observe._records import RunState
from .._values._context import current_context, run_cancelling
from .._values._current import Executor, current_executor, run_cleanups
from .._values._timing import to_ms
from .._values._usage import usage_sink
from ._actor import direct_actor, is_cancellation, stage_actor, streaming_actor
from ._run import Actor, Run

if TYPE_CHECKING:
    from .._observe._recording import RunRecorder


async def drive(executor: Executor, run: Run, started: Callable[[], None] | None = None) -> None:
    """Run every stage of ``run`` to the end (``started`` is called once the run has
    begun); outer cancellation propagates."""
    run.transition(EventKind.RUN_STARTED)
    if started is not None:
        started()
    # Stage tasks inherit these: sub-pipelines run with this executor, and rate
    # limiters record their waits in this run's metrics.
    executor_token = current_executor.set(executor)
    context_token = current_context.set(run.context)
    outermost = run_cleanups.get() is None
    cleanups_token = run_cleanups.set([]) if outermost else None
    watch = getattr(run.context, "watch_cancellation", None)  # a context of your own
    unwatch = watch(run.is_cancelling) if watch is not None else _nothing
    cancelling_token = run_cancelling.set(run.is_cancelling)
    gates_token = current_gates.set(run.gates)
    usage_token = usage_sink.set(run)
    ended: BaseException | None = None
    try:
        if run.plan.asyncio_stages and stage_host.get() is None:
            from ._hosts import trio_asyncio_host  # noqa: PLC0415 (loaded when used)

            async with trio_asyncio_host():  # stages marked asyncio, in plain Trio
                await _supervise(run)
        else:
            await _supervise(run)
    except BaseException as exc:
        ended = exc
        if is_cancellation(exc):
            ids = run.plan.ids
            run.log.info("run_cancelled", cancelled=[ids[i] for i in run.cancelled])
        lone = _lone_exception(exc)
        if lone is not exc:
            # Our nursery is an implementation detail: a KeyboardInterrupt from a
            # stage reaches the caller as itself, not wrapped in a group.
            raise lone from None
        raise
    finally:
        if run.recorder is not None:
            await _record_end(run, run.recorder, ended)
        unwatch()
        usage_sink.reset(usage_token)
        current_gates.reset(gates_token)
        run_cancelling.reset(cancelling_token)
        if cleanups_token is not None:
            cleanups = run_cleanups.get() or []
            run_cleanups.reset(cleanups_token)
            await _clean_up(cleanups, run.log)
        current_context.reset(context_token)
        current_executor.reset(executor_token)
    if run.cache is not None:
        run.cache.notices.tell()  # (after all is saved: -W error makes it raise here)


async def _supervise(run: Run) -> None:
    """Run every stage in a supervisor nursery. The cache's writer and the event relay
    run beside it (not inside), so fail-fast never drops a write or an event."""
    cache, events, recorder = run.cache, run.events, run.recorder
    if cache is None and events is None and recorder is None:
        try:
            async with trio.open_nursery() as supervisor:
                run.start(supervisor, actors_of(run))
        finally:
            run.end()
        return
    if cache is not None:
        await cache.load()
    async with trio.open_nursery() as beside:
        if cache is not None:
            beside.start_soon(cache.write_behind)
        if events is not None:
            beside.start_soon(events.relay)
        if recorder is not None:
            beside.start_soon(recorder.write_behind)
        try:
            async with trio.open_nursery() as supervisor:
                run.start(supervisor, actors_of(run))
        finally:
            run.end()
            if cache is not None:
                cache.close()
            if events is not None:
                events.close()
            if recorder is not None:
                recorder.close()


def actors_of(run: Run) -> list[Actor]:
    """Each stage's task function in this run: the direct one for a plain stage with
    no condition (and no cache in this run), the streaming one for a stage that
    hands its items on as it yields them, the general one otherwise."""
    plan = run.plan
    cache = run.cache
    actors: list[Actor] = [
        direct_actor
        if plain and sdef.condition is None and (cache is None or not cacheable)
        else stage_actor
        for plain, sdef, cacheable in zip(plan.plain, plan.stages, plan.cacheable, strict=True)
    ]
    for index, consumers in enumerate(plan.streams_to):
        if consumers or index in run.subscribers:
            actors[index] = streaming_actor
    return actors


async def _record_end(run: Run, recorder: RunRecorder, ended: BaseException | None) -> None:
    """Write how the run ended into its run store."""
    status: RunState
    error = run.error
    if ended is None and run.suspended is not None and error is None:
        status = "waiting"
    elif ended is None:
        status = "succeeded" if error is None else "failed"
    elif _interrupted(ended):  # Ctrl-C: the person at the terminal cancelled it
        status, error = "cancelled", "KeyboardInterrupt"
    elif is_cancellation(ended):
        status, error = "cancelled", error or "the run was cancelled"
    elif isinstance(ended, Exception):
        status, error = "failed", f"the run ended with {type(ended).__name__}: {ended}"
    else:  # SystemExit: the process is going
        ended = _lone_exception(ended)
        status, error = "interrupted", f"the run ended with {type(ended).__name__}"
    await recorder.finish(
        status,
        error,
        to_ms(run.end_time - run.start_time),
        run.suspension if status == "waiting" else None,
    )


def _interrupted(ended: BaseException) -> bool:
    """Whether ``ended`` is (or holds) a KeyboardInterrupt."""
    if isinstance(ended, BaseExceptionGroup):
        return ended.subgroup(KeyboardInterrupt) is not None
    return isinstance(ended, KeyboardInterrupt)


async def _clean_up(cleanups: list[Callable[[], Awaitable[None]]], log: Any) -> None:
    """Await what the run's stages asked to be done at its end (a runner closing the
    cluster it started), shielded: a cancelled run still closes what it opened. Each
    cleanup bounds itself; one that fails is logged and the others still run."""
    with trio.CancelScope(shield=True):
        for cleanup in cleanups:
            try:
                await cleanup()
            except Exception as exc:  # noqa: BLE001 - the run's result stands; say so
                log.warning("run_cleanup_failed", error=f"{type(exc).__name__}: {exc}")


def _lone_exception(exc: BaseException) -> BaseException:
    """The single exception inside (nested) one-member groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _nothing() -> None:
    pass
