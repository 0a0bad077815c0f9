"""The executor: validates, sets up a run, supervises its stage tasks in a nursery, and
returns the frozen result.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, cast

import trio

from .._base._loops import awaited_from_asyncio
from .._cache._run_cache import RunCache
from .._cache._store import CacheStore
from .._observe._contract import RunStoreProtocol
from .._observe._events import EventRelay, PipelineEvent
from .._observe._otel import find_tracer
from .._values._context import PipelineContext
from .._values._results import PipelineResult
from ..definition import ExecutionPattern, PipelineDefinition
from ._handle import EventHistory, RunHandle
from ._plan import plan_of
from ._record import recorder_for
from ._result import build_result
from ._resume import Resuming, claim, keeper
from ._routing import RoutedRun
from ._run import Run
from ._stores import cache_from, runs_from
from ._supervisor import drive

if TYPE_CHECKING:
    from ._plan import Plan

#: When a cached stage's entry commits (see `PipelineExecutor`).
Durability = Literal["batched", "sync"]


class PipelineExecutor:
    """Runs pipeline definitions on Trio: each stage a task, data on memory channels.

    One executor may run any number of pipelines, one after another or at once.

    Args:
        cache: A cache store. Successful stage outputs are kept there, and a later run
            of the same input serves them instead of running the stage (the caching
            guide says what makes a key). A ``postgresql://`` URL: the
            [PostgresCacheStore][twinklr.core.pipeline.PostgresCacheStore] there, shared
            by every host that names it (SQLite's store is one host's).
        tracer: An OpenTelemetry tracer: each run is a span with a child span per
            stage attempt. Without one, the application's global OpenTelemetry set-up
            is used when there is one.
        runner: Where [SyncStage][twinklr.core.pipeline.SyncStage] work runs when the
            stage names no runner (a worker thread by default).
        runs: A run store (a [RunStoreProtocol][twinklr.core.pipeline.RunStoreProtocol]:
            [RunStore][twinklr.core.pipeline.RunStore] for one host) that records every run:
            its stages' statuses, times, attempts and errors, written in batches
            beside the run (``twinklr-pipeline runs`` and ``ui`` read it). A
            ``postgresql://`` URL: the
            [PostgresRunStore][twinklr.core.pipeline.PostgresRunStore] there.
        suspend_on_wait: End a run as waiting (``result.waiting_stages``) once its only
            remaining work is gates waiting for input, instead of waiting on; a later
            process goes on with [resume][twinklr.core.pipeline.PipelineExecutor.resume].
            Needs ``cache`` and ``runs``.
        durability: When a cached stage's entry is committed. ``"batched"`` (the
            default): its output goes downstream at once and the entry is saved in the
            next batch beside the run, off every stage's path; a process killed in
            between recomputes that stage on the rerun. ``"sync"``: a stage's entry
            (each of its items', for fan-out) is committed before any dependent starts
            (concurrent stages still share a batch), so a killed run never recomputes
            a stage whose dependents had begun (a streaming stage's consumers, which
            read its items as they come, excepted); the cost per stage is in the
            caching guide.

    Raises:
        TypeError: ``cache`` is not a cache store (a path is not: use
            ``SQLiteCacheStore(path)``), or ``runs`` is not a run store.
        ValueError: ``suspend_on_wait`` without a cache and a run store, or a
            ``durability`` that is neither ``"batched"`` nor ``"sync"``.
    """

    def __init__(
        self,
        *,
        cache: CacheStore | str | None = None,
        tracer: Any = None,
        runner: Any = None,
        runs: RunStoreProtocol | str | None = None,
        suspend_on_wait: bool = False,
        durability: Durability = "batched",
    ) -> None:
        # A postgresql:// URL names the shared store of its kind.
        cache, runs = cache_from(cache), runs_from(runs)
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
            "runs",
            runs,
            RunStoreProtocol,
            what="a run store",
            purpose="run history",
            constructor="RunStore",
        )
        if suspend_on_wait and (cache is None or runs is None):
            msg = (
                "suspend_on_wait needs a cache (what finished is served from it when the "
                "run is resumed) and a run store (the run is kept there): "
                "PipelineExecutor(cache=SQLiteCacheStore(path), runs=RunStore(path), "
                "suspend_on_wait=True)"
            )
            raise ValueError(msg)
        if durability not in ("batched", "sync"):
            msg = f"durability must be 'batched' or 'sync', not {durability!r}"
            raise ValueError(msg)
        self.cache: CacheStore | None = cast("CacheStore | None", cache)  # (checked above)
        self.durability: Durability = durability
        self.tracer = tracer
        self.runner = runner
        self.runs: RunStoreProtocol | None = cast("RunStoreProtocol | None", runs)
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
        await drive(self, run)
        return build_result(run)

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
            partial(drive, self, run),
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
            run_id: The suspended run's id (a unique prefix of 4+ characters will do).
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
        pipeline, resuming = await claim(store, run_id, pipeline, responses or {})
        try:
            return await self.execute(pipeline, resuming, context, events=events)
        except BaseException:
            # Cancelled (or refused) before the run recorded how it ended: it is still
            # suspended, not being resumed. (One quick local write, so not awaited: the
            # caller is being cancelled.)
            store.unclaim(resuming.run_id)
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
        run = (RoutedRun if plan.branches else Run)(
            plan,
            initial_input,
            context if context is not None else PipelineContext(),
            fail_fast=pipeline.fail_fast,
            run_id=run_id,
            answers=answers,
        )
        if self.cache is not None:
            run.cache = RunCache(
                self.cache, plan.name, initial_input, run.log, sync=self.durability == "sync"
            )
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
