"""The executor: validates, sets up a run, supervises its stage tasks in a nursery, and
returns the frozen result.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._base._loops import awaited_from_asyncio, in_worker_thread, stage_host
from .._cache._run_cache import RunCache
from .._cache._store import CacheStore
from .._kinds._gate import current_gates
from .._observe._events import EventKind, EventRelay, PipelineEvent
from .._observe._otel import find_tracer
from .._observe._recording import RunRecorder
from .._observe._records import RunState
from .._observe._runs import RunStore
from .._values._context import PipelineContext, current_context, run_cancelling
from .._values._current import current_executor, run_cleanups
from .._values._results import PipelineResult
from .._values._timing import to_ms
from ..definition import ExecutionPattern, PipelineDefinition
from ._actor import is_cancellation
from ._handle import EventHistory, RunHandle
from ._plan import plan_of
from ._record import recorder_for
from ._resume import Resuming, check_answers, decode, find_definition, keep_answers, keeper
from ._run import Run

if TYPE_CHECKING:
    from ._plan import Plan


class PipelineExecutor:
    """Runs pipeline definitions on Trio: each stage a task, data on memory channels.

    One executor may run any number of pipelines, one after another or at once.

    Args:
        cache: A cache store. Successful stage outputs are kept there, and a later run
            of the same input serves them instead of running the stage (the caching
            guide says what makes a key).
        tracer: An OpenTelemetry tracer: each run is a span with a child span per
            stage attempt. Without one, the application's global OpenTelemetry set-up
            is used when there is one.
        runner: Where [SyncStage][twinklr.core.pipeline.SyncStage] work runs when the
            stage names no runner (a worker thread by default).
        runs: A [RunStore][twinklr.core.pipeline.RunStore] that records every run:
            its stages' statuses, times, attempts and errors, written in batches
            beside the run (``twinklr-pipeline runs`` and ``ui`` read it).
        suspend_on_wait: End a run as waiting (``result.waiting_stages``) once its only
            remaining work is gates waiting for input, instead of waiting on; a later
            process goes on with [resume][twinklr.core.pipeline.PipelineExecutor.resume].
            Needs ``cache`` and ``runs``.

    Raises:
        TypeError: ``cache`` is not a cache store (a path is not: use
            ``SQLiteCacheStore(path)``), or ``runs`` is not a run store.
        ValueError: ``suspend_on_wait`` without a cache and a run store.
    """

    def __init__(
        self,
        *,
        cache: CacheStore | None = None,
        tracer: Any = None,
        runner: Any = None,
        runs: RunStore | None = None,
        suspend_on_wait: bool = False,
    ) -> None:
        # Checked whatever the annotations promise; a path gets the call to make instead.
        _check_store(
            "cache",
            cache,
            CacheStore,
            what="a cache store",
            purpose="a cache",
            constructor="SQLiteCacheStore",
        )
        _check_store(
            "runs", runs, RunStore, what="a RunStore", purpose="run history", constructor="RunStore"
        )
        if suspend_on_wait and (cache is None or runs is None):
            msg = (
                "suspend_on_wait needs a cache (what finished is served from it when the "
                "run is resumed) and a run store (the run is kept there): "
                "PipelineExecutor(cache=SQLiteCacheStore(path), runs=RunStore(path), "
                "suspend_on_wait=True)"
            )
            raise ValueError(msg)
        self.cache = cache
        self.tracer = tracer
        self.runner = runner
        self.runs = runs
        self.suspend_on_wait = suspend_on_wait

    async def execute(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext | None = None,
        *,
        events: trio.MemorySendChannel[PipelineEvent] | None = None,
        subscriptions: Mapping[str, trio.MemorySendChannel[Any]] | None = None,
    ) -> PipelineResult:
        """Run ``pipeline`` to completion and return its result.

        Stage failures are reported in the result, never raised. Cancellation of the
        caller's scope cancels every stage and propagates.

        Args:
            pipeline: The definition to run; it is validated first.
            initial_input: What the entry stages (those without inputs) receive.
            context: Services and shared state for the stages; a new, empty
                [PipelineContext][twinklr.core.pipeline.PipelineContext] when None.
            events: A channel that receives every transition as a
                [PipelineEvent][twinklr.core.pipeline.PipelineEvent]. The caller owns
                it (it is never closed here), and a slow consumer never slows the run:
                events wait in a buffer of 1,024, the oldest is dropped when it is
                full, and the last event, ``RUN_FINISHED``, says how many were.
            subscriptions: Streaming stage ids mapped to channels that receive each
                item the stage yields, once, as it is yielded (a slow subscriber holds
                the stage back). The executor sends on a clone of each channel and
                closes the clone when the stage ends: close yours after the call
                starts, and the stream ends with the stage.

        Returns:
            The run's result (outputs, each stage's result and status, timings and
            metrics).

        Raises:
            PipelineValidationError: The definition is invalid; every problem is
                listed, and no stage has run.
        """
        if awaited_from_asyncio():  # an asyncio program: run on its loop (see aio)
            if events is not None or subscriptions is not None:
                msg = (
                    "events and subscriptions are Trio channels: from asyncio, use "
                    "aio.execute(pipeline, ..., events=asyncio.Queue()) or aio.start()"
                )
                raise TypeError(msg)
            # The asyncio host is loaded only now: a Trio program never imports asyncio
            # for it.
            from ._hosted import execute as execute_hosted  # noqa: PLC0415

            return await execute_hosted(self, pipeline, initial_input, context)
        run = self._prepare(pipeline, initial_input, context, subscriptions)
        if events is not None:
            run.listen(EventRelay(events))
        await self._drive(run)
        return run.build_result()

    async def start(
        self,
        nursery: trio.Nursery,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext | None = None,
        *,
        events: trio.MemorySendChannel[PipelineEvent] | None = None,
        subscriptions: Mapping[str, trio.MemorySendChannel[Any]] | None = None,
    ) -> RunHandle:
        """Start ``pipeline`` as a task in ``nursery`` and return its handle once the
        run has started (its ``RUN_STARTED`` event sent).

        The run's own failures and its cancellation (``handle.cancel()``) never raise
        into ``nursery``: ``await handle.wait()`` returns the result. Cancelling
        ``nursery`` cancels the run too (its result then says cancelled).

        Args:
            nursery: The nursery the run's task belongs to.
            pipeline: The definition to run; it is validated first.
            initial_input: What the entry stages receive.
            context: Services and shared state; a new, empty one when None.
            events: As in [execute][twinklr.core.pipeline.PipelineExecutor.execute];
                ``handle.events()`` follows the run's events as well, from the first.
            subscriptions: As in
                [execute][twinklr.core.pipeline.PipelineExecutor.execute].

        Returns:
            A [RunHandle][twinklr.core.pipeline.RunHandle] to wait for, cancel or
            watch the run.

        Raises:
            PipelineValidationError: The definition is invalid (nothing has started).
        """
        run = self._prepare(pipeline, initial_input, context, subscriptions)
        history = EventHistory(EventRelay(events) if events is not None else None)
        run.listen(history)
        handle = RunHandle(run, history)
        started: RunHandle = await nursery.start(
            handle._main,  # noqa: SLF001 (the handle's own task body)
            partial(self._drive, run),
            name=f"twinklr run {run.run_id}",
        )
        return started

    async def resume(
        self,
        run_id: str,
        *,
        responses: Mapping[str, Any] | None = None,
        pipeline: PipelineDefinition | None = None,
        context: PipelineContext | None = None,
        events: trio.MemorySendChannel[PipelineEvent] | None = None,
    ) -> PipelineResult:
        """Go on with a run that was suspended waiting for input, in this process or
        another, and return its result.

        The run's definition runs again under the same run id with the same initial
        input (both kept in the run store): what had finished is served from the cache,
        each gate is given its answer (from ``responses``, or given earlier: through the
        store, ``twinklr-pipeline runs respond``, or to the run before it suspended) the
        moment it opens, and the rest runs. A gate without an answer waits again (and
        with ``suspend_on_wait`` the run suspends again there).

        Args:
            run_id: The suspended run's id (a unique prefix will do).
            responses: Gate id -> its answer (the gate's output).
            pipeline: The definition to resume with. By default, the one defined in
                this process that is the same as the run's (import or build it first);
                give it to resume with an edited one of the same name.
            context: Services for the stages; a new, empty one when None (what the
                finished stages wrote to theirs is replayed from the cache).
            events: As in [execute][twinklr.core.pipeline.PipelineExecutor.execute].

        Returns:
            The resumed run's result (it may be waiting again).

        Raises:
            ValueError: This executor has no cache or no run store, an answer is for a
                stage that is not a gate, or ``pipeline`` is another pipeline.
            LookupError: No such run, it is not suspended (or another process resumed
                it first), or its definition is not defined in this process.
        """
        store, cache = self.runs, self.cache
        if store is None or cache is None:
            msg = (
                "resume needs the run store the run was suspended in and the cache its "
                "stages were kept in: PipelineExecutor(cache=..., runs=...)"
            )
            raise ValueError(msg)
        record, state, stored = await in_worker_thread(store.suspension, run_id)
        pipeline = find_definition(record, pipeline)
        pipeline.validate()
        suspension = decode(state)
        answers = {**suspension.answers, **stored, **(responses or {})}
        check_answers(pipeline, answers)
        await in_worker_thread(store.claim, record.run_id, keep_answers(suspension, answers))
        resuming = Resuming(
            run_id=record.run_id, initial_input=suspension.initial_input, answers=answers
        )
        try:
            return await self.execute(pipeline, resuming, context, events=events)
        except BaseException:
            # Cancelled (or refused) before the run recorded how it ended: it is still
            # suspended, not being resumed. (One quick local write, so not awaited: the
            # caller is being cancelled.)
            store.unclaim(record.run_id)
            raise

    def _prepare(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any,
        context: PipelineContext | None,
        subscriptions: Mapping[str, trio.MemorySendChannel[Any]] | None,
    ) -> Run:
        """Validate (raising for an invalid definition) and set up a run."""
        given: object = pipeline  # checked at run time, whatever the annotation says
        if not isinstance(given, PipelineDefinition):
            msg = f"execute() needs a PipelineDefinition, got {type(given).__name__}"
            raise TypeError(msg)
        plan = plan_of(pipeline)
        answers = None
        if type(initial_input) is Resuming:  # (from resume)
            run_id, answers = initial_input.run_id, initial_input.answers
            initial_input = initial_input.initial_input
        else:
            run_id = uuid.uuid4().hex[:12]
        run = Run(
            plan,
            initial_input,
            context if context is not None else PipelineContext(),
            fail_fast=pipeline.fail_fast,
            run_id=run_id,
            answers=answers,
        )
        if self.cache is not None:
            run.cache = RunCache(self.cache, plan.name, initial_input, run.log)
        if self.runs is not None:
            run.recorder = recorder_for(run, self.runs)
            if self.cache is not None:
                run.on_suspend = keeper(pipeline)
                run.suspend_wanted = self.suspend_on_wait and bool(plan.gates)
        if subscriptions:
            run.subscribers = _subscribers(plan, subscriptions)
        tracer = find_tracer(self.tracer)
        if tracer is not None:
            run.trace(tracer)
        return run

    async def _drive(self, run: Run, started: Callable[[], None] | None = None) -> None:
        """Run every stage of ``run`` to the end (``started`` is called once the run has
        begun); outer cancellation propagates."""
        run.transition(EventKind.RUN_STARTED)
        if started is not None:
            started()
        # Stage tasks inherit these: sub-pipelines run with this executor, and rate
        # limiters record their waits in this run's metrics.
        executor_token = current_executor.set(self)
        context_token = current_context.set(run.context)
        outermost = run_cleanups.get() is None
        cleanups_token = run_cleanups.set([]) if outermost else None
        watch = getattr(run.context, "watch_cancellation", None)  # a context of your own
        unwatch = watch(run.is_cancelling) if watch is not None else _nothing
        cancelling_token = run_cancelling.set(run.is_cancelling)
        gates_token = current_gates.set(run.gates)
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
            current_gates.reset(gates_token)
            run_cancelling.reset(cancelling_token)
            if cleanups_token is not None:
                cleanups = run_cleanups.get() or []
                run_cleanups.reset(cleanups_token)
                await _clean_up(cleanups, run.log)
            current_context.reset(context_token)
            current_executor.reset(executor_token)


def _check_store(
    name: str, given: object, kind: type, *, what: str, purpose: str, constructor: str
) -> None:
    if given is None or isinstance(given, kind):
        return
    hint = (
        f" (for {purpose} in a directory: {name}={constructor}({given!r}))"
        if isinstance(given, str | os.PathLike)
        else ""
    )
    msg = f"{name} must be {what}, got {type(given).__name__} {given!r:.60}{hint}"
    raise TypeError(msg)


def _nothing() -> None:
    pass


async def _record_end(run: Run, recorder: RunRecorder, ended: BaseException | None) -> None:
    """Write how the run ended into its run store."""
    status: RunState
    error = run.error
    if ended is None and run.suspended is not None and error is None:
        status = "waiting"
    elif ended is None:
        status = "succeeded" if error is None else "failed"
    elif is_cancellation(ended):
        status, error = "cancelled", error or "the run was cancelled"
    elif isinstance(ended, Exception):
        status, error = "failed", f"the run ended with {type(ended).__name__}: {ended}"
    else:  # KeyboardInterrupt, SystemExit: the process is going
        status, error = "interrupted", f"the run ended with {type(ended).__name__}"
    await recorder.finish(
        status,
        error,
        to_ms(run.end_time - run.start_time),
        run.suspension if status == "waiting" else None,
    )


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


def _subscribers(
    plan: Plan, subscriptions: Mapping[str, trio.MemorySendChannel[Any]]
) -> dict[int, list[trio.MemorySendChannel[Any]]]:
    """Subscriptions by stage index; a stage that cannot stream its items is refused."""
    subscribers: dict[int, list[trio.MemorySendChannel[Any]]] = {}
    for stage_id, channel in subscriptions.items():
        index = plan.index_of.get(stage_id)
        if index is None:
            msg = (
                f"cannot subscribe to stage '{stage_id}': pipeline '{plan.name}' has no such stage"
            )
            raise ValueError(msg)
        stage = plan.stages[index]
        if not plan.streaming[index] or stage.pattern is ExecutionPattern.FAN_OUT:
            msg = (
                f"cannot subscribe to stage '{stage_id}': it does not stream "
                "(its execute is not an async generator, or it fans out)"
            )
            raise ValueError(msg)
        retry = stage.retry_config
        if retry is not None and retry.max_attempts > 1:
            msg = f"cannot subscribe to stage '{stage_id}': it is retried, so items could repeat"
            raise ValueError(msg)
        subscribers.setdefault(index, []).append(channel)
    return subscribers


async def _supervise(run: Run) -> None:
    """Run every stage in a supervisor nursery. The cache's writer and the event relay
    run beside it (not inside), so fail-fast never drops a write or an event."""
    cache, events, recorder = run.cache, run.events, run.recorder
    if cache is None and events is None and recorder is None:
        try:
            async with trio.open_nursery() as supervisor:
                run.start(supervisor)
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
                run.start(supervisor)
        finally:
            run.end()
            if cache is not None:
                cache.close()
            if events is not None:
                events.close()
            if recorder is not None:
                recorder.close()


def _lone_exception(exc: BaseException) -> BaseException:
    """The single exception inside (nested) one-member groups, else ``exc`` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_pipeline(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext | None = None,
) -> PipelineResult:
    """Run ``pipeline`` from synchronous code: starts its own Trio loop, runs it with
    a default [PipelineExecutor][twinklr.core.pipeline.PipelineExecutor] and returns
    the result.

    Args:
        pipeline: The definition to run.
        initial_input: What the entry stages receive.
        context: Services and shared state; a new, empty one when None.

    Returns:
        The run's [PipelineResult][twinklr.core.pipeline.PipelineResult].

    Raises:
        PipelineValidationError: The definition is invalid.
    """
    return trio.run(PipelineExecutor().execute, pipeline, initial_input, context)
