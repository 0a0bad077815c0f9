"""One run's state: the supervisor's bookkeeping that stage tasks report to.

It starts a stage's task when its last input has landed, sends outputs down the edges,
applies fail-fast, tells every transition (logs, live events, spans), and builds the
frozen result.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._kinds._gate import Gates, InputRequest
from .._observe._events import EventKind, EventSink, PipelineEvent, stage_event
from .._observe._logs import run_logger
from .._observe._otel import SpanRecorder
from .._observe._timeline import RunRecords, Timeline
from .._values._results import NO_METADATA, PipelineResult, StageResult
from .._values._status import StageStatus
from .._values._timing import to_ms
from ._actor import direct_actor, stage_actor, streaming_actor
from ._attempts import ONE_ATTEMPT
from ._retry import error_text
from ._routing import ROUTABLE, RoutingError, chosen_branches
from ._wiring import NOT_SENT, OneShotChannel

if TYPE_CHECKING:
    from .._cache._run_cache import RunCache
    from .._observe._recording import RunRecorder
    from .._values._context import PipelineContext
    from ._plan import Plan

#: A stage's task function, started as ``actor(run, index)``.
Actor = Callable[["Run", int], Awaitable[None]]

#: Transitions logged above debug level (the rest are debug: one per stage transition).
_LOG_LEVELS = {
    EventKind.RUN_STARTED: "info",
    EventKind.RUN_FINISHED: "info",
    EventKind.ATTEMPT_FAILED: "info",
    EventKind.STAGE_RETRYING: "info",
    EventKind.STAGE_FAILED: "warning",
    EventKind.INPUT_REQUESTED: "info",  # the run waits for someone
    EventKind.INPUT_RECEIVED: "info",
}
_TERMINAL = {
    StageStatus.SUCCEEDED: EventKind.STAGE_SUCCEEDED,
    StageStatus.SKIPPED: EventKind.STAGE_SKIPPED,
    StageStatus.SOFT_FAILED: EventKind.STAGE_SOFT_FAILED,
    StageStatus.CACHED: EventKind.STAGE_CACHE_HIT,
    StageStatus.CANCELLED: EventKind.STAGE_CANCELLED,
}

#: Items a streaming stage may run ahead of a stage pipelined on it (back-pressure).
STREAM_BUFFER = 16


class Run:
    """The state of one run, shared by the supervisor and the stage tasks.

    A finished stage's output travels to each dependent on a one-shot memory channel of
    its own (one per edge, see ``_wiring``); a dependent's task is started when its last
    input has been sent, so it reads its channels without parking.

    All of it lives on one Trio thread: stage tasks call back into it synchronously, so
    no locking is needed and a decision (fail-fast, starting a dependent) is atomic.
    """

    def __init__(
        self,
        plan: Plan,
        initial_input: Any,
        context: PipelineContext,
        *,
        fail_fast: bool,
        run_id: str,
        answers: Mapping[str, Any] | None = None,
    ) -> None:
        self.plan = plan
        self.initial_input = initial_input
        self.context = context
        self.fail_fast = fail_fast
        self.run_id = run_id
        self.log = run_logger(pipeline=plan.name, run_id=run_id)
        self._log_at = {
            kind: getattr(self.log, _LOG_LEVELS.get(kind, "debug")) for kind in EventKind
        }
        self.events: EventSink | None = None
        self.spans: SpanRecorder | None = None
        # Per-stage transitions cost something to log or send: skip them entirely when
        # nobody listens (no event consumer, debug logging filtered out).
        self.logs_debug = self.watched = _logs_debug(self.log)
        count = len(plan.ids)
        self.remaining = [len(deps) for deps in plan.deps]
        # edge id -> the channel its value waits on, until the consumer takes it
        self.edges: list[OneShotChannel] = [NOT_SENT] * len(plan.edge_consumer)
        self.results: list[StageResult[Any] | None] = [None] * count
        self.records = RunRecords.for_stages(count)
        self._items_done: dict[int, int] = {}  # per fan-out stage: items that succeeded
        # the records' lists, for the hot path
        self.queued = self.records.queued
        self.started = self.records.started
        self.finished = self.records.finished
        self.failed: list[int] = []
        self.cancelled: list[int] = []
        self.error: str | None = None
        self.stopped = False
        self.nursery: trio.Nursery  # the supervisor's, set by start
        self.actors: list[Actor]  # each stage's task function, set by start
        self.cache: RunCache | None = None
        self.recorder: RunRecorder | None = None
        # For the run history: each fan-out stage's item count, and every retry as
        # [stage, item, attempt, error, delay ms, time ms].
        self.item_totals: dict[int, int] = {}
        self.retries: list[list[Any]] = []
        # stage -> the channel its pipelined input's items arrive on
        self.streams: dict[int, trio.MemoryReceiveChannel[Any]] = {}
        # streaming stage -> the callers' channels subscribed to the items it yields
        self.subscribers: dict[int, list[trio.MemorySendChannel[Any]]] = {}
        # Routing (plans with ``routes`` only): stages a routing stage's choice left out,
        # and stages skipped by routing (theirs, and those whose inputs all were).
        self.routing = bool(plan.branches)
        self.routed_off = bytearray(count if self.routing else 0)
        self.route_skipped = bytearray(count if self.routing else 0)
        # Gates (WaitForInput stages): their open requests, answered through the handle
        # (or before they open: a resumed run's answers).
        self.gates = Gates(
            plan.index_of,
            on_request=self._input_requested,
            on_answer=lambda stage: self.transition(EventKind.INPUT_RECEIVED, plan.index_of[stage]),
            answers=answers,
        )
        # Suspending (see `suspend`): stages whose task has been started and has not
        # ended, and once suspended, the gates the run waits for.
        self.active = 0
        self.suspend_wanted = False
        self.suspended: list[InputRequest] | None = None
        # Called when the run suspends, before anything is cancelled: it sets
        # ``suspension``, what a resumed run needs (see ``_resume``), or raises to
        # refuse (the run then waits on).
        self.on_suspend: Callable[[Run], None] | None = None
        self.suspension: bytes | None = None
        self.resumed = answers is not None
        # The run's clock, read directly: stage tasks read it three times each.
        self.now = trio.lowlevel.current_clock().current_time
        self.start_time = self.end_time = self.now()

    # -- supervision -------------------------------------------------------------------

    def transition(self, kind: EventKind, index: int | None = None, **fields: Any) -> None:
        """Log a transition (and hand it to the live event consumer, if any)."""
        stage = None if index is None else self.plan.ids[index]
        if self.logs_debug or kind in _LOG_LEVELS:
            self._log_at[kind](kind.value, stage=stage, **fields)
        if self.spans is not None:
            self.spans.on(kind, stage, self.now(), fields)
        if self.events is not None:
            self.events.emit(
                PipelineEvent(
                    kind=kind,
                    pipeline=self.plan.name,
                    run_id=self.run_id,
                    time_ms=to_ms(self.now() - self.start_time),
                    stage=stage,
                    **fields,
                )
            )

    def stage_transition(
        self,
        kind: EventKind,
        index: int,
        at: float,
        attempt: int | None = None,
        error: str | None = None,
    ) -> None:
        """`transition` for the three every stage makes (queued, started, ended) at
        clock time ``at``, already read, without the keyword packing: with a consumer
        attached it runs 3 times a stage."""
        if self.logs_debug or self.spans is not None:
            self.transition(kind, index, attempt=attempt, error=error)
            return
        if self.events is not None:
            self.events.emit(
                stage_event(
                    kind,
                    self.plan.name,
                    self.run_id,
                    to_ms(at - self.start_time),
                    self.plan.ids[index],
                    attempt,
                    error,
                )
            )

    def start(self, nursery: trio.Nursery) -> None:
        """Start every entry stage in the supervisor ``nursery``."""
        self.nursery = nursery
        self.actors = self._actors()
        now = self.now()
        for index, deps in enumerate(self.plan.deps):
            if not deps:
                self._spawn(index, now)

    def _actors(self) -> list[Actor]:
        """Each stage's task function in this run: the direct one for a plain stage with
        no condition (and no cache in this run), the streaming one for a stage that
        hands its items on as it yields them, the general one otherwise."""
        plan = self.plan
        cache = self.cache
        actors: list[Actor] = [
            direct_actor
            if plain and sdef.condition is None and (cache is None or not cacheable)
            else stage_actor
            for plain, sdef, cacheable in zip(plan.plain, plan.stages, plan.cacheable, strict=True)
        ]
        for index, consumers in enumerate(plan.streams_to):
            if consumers or index in self.subscribers:
                actors[index] = streaming_actor
        return actors

    def is_cancelling(self) -> bool:
        """Whether the run is being cancelled: stopped (fail-fast, a cancelled handle)
        or a stage cancelled (the caller's cancellation reaching it). A plain read, for
        ``context.is_cancelled()`` from any thread."""
        return self.stopped or bool(self.cancelled)

    def stop(self) -> None:
        """Start nothing more: a stage queued but not yet begun never starts, and no
        output is handed on (a cancel from outside is on its way)."""
        self.stopped = True

    def listen(self, events: EventSink) -> None:
        """Send this run's events to ``events`` too."""
        self.events = events
        self.watched = True

    def trace(self, tracer: Any) -> None:
        """Record this run as OpenTelemetry spans made by ``tracer``."""
        self.spans = SpanRecorder(tracer, self.plan.name, self.run_id, self.start_time)
        self.watched = True

    def _spawn(self, index: int, now: float) -> None:
        """Start stage ``index``'s task: its inputs are all in since ``now``."""
        self.active += 1
        self.queued[index] = now
        if self.watched:
            self.stage_transition(EventKind.STAGE_QUEUED, index, now)
        self.nursery.start_soon(self.actors[index], self, index, name=self.plan.ids[index])

    def end(self) -> None:
        """The last stage task has ended: note the time, say the run finished."""
        self.end_time = self.now()
        dropped = self.events.dropped if self.events is not None else None
        # cancelled from outside, or suspended waiting for input: not a success
        success = self.error is None and not self.cancelled and self.suspended is None
        self.transition(EventKind.RUN_FINISHED, success=success, dropped=dropped)

    def open_streams(self, index: int) -> list[trio.MemorySendChannel[Any]]:
        """Start the stages pipelined on streaming stage ``index`` now, each reading the
        items it yields from a bounded channel; return the channels' send ends (and the
        subscribers')."""
        sends = []
        for consumer in self.plan.streams_to[index]:
            send, receive = trio.open_memory_channel[Any](STREAM_BUFFER)
            self.streams[consumer] = receive
            self.remaining[consumer] -= 1
            self._spawn(consumer, self.now())
            sends.append(send)
        # Subscribers get their own clone of the channel they gave, closed when the stage
        # ends, so a subscriber that closed its end sees the stream end with the stage.
        sends.extend(subscriber.clone() for subscriber in self.subscribers.get(index, ()))
        return sends

    def stage_started(self, index: int) -> None:
        """Record that stage ``index``'s task began."""
        self.started[index] = now = self.now()
        if self.watched:
            self.stage_transition(EventKind.STAGE_STARTED, index, now)

    def stage_finished(self, index: int, result: StageResult[Any]) -> None:
        """Record ``result``; hand the output on, or fail the run."""
        self.active -= 1
        try:
            if self.routing and self.plan.branches[index] is not None:
                result = self._route(index, result)
            self.finished[index] = now = self.now()
            self.results[index] = result
            if result.status is StageStatus.FAILED:
                self._stage_failed(index, result)
                if self.plan.stages[index].critical:
                    return
                output = None
            else:
                if self.watched:
                    attempt = result.metadata.get("attempts")
                    kind = _TERMINAL[result.status]
                    self.stage_transition(kind, index, now, attempt, result.error)
                output = result.output
            if self.stopped:
                return
            if self.routing:
                self._hand_on_routed(index, output, now)
                return
            remaining = self.remaining
            edges = self.edges
            consumers = self.plan.edge_consumer
            for edge in self.plan.out_edges[index]:
                edges[edge] = OneShotChannel(output)
                consumer = consumers[edge]
                remaining[consumer] -= 1
                if remaining[consumer] == 0:
                    self._spawn(consumer, now)  # queued the moment its last input finished
        finally:  # (free in the common case: no exception raised, one flag read)
            if self.suspend_wanted:
                self.try_suspend()  # the run may be down to its gates now

    # -- suspending ----------------------------------------------------------------------

    def suspend(self) -> None:
        """End the run as waiting once its only remaining work is gates waiting for
        input (now, if it already is): they are withdrawn, nothing else is cancelled."""
        self.suspend_wanted = True
        self.try_suspend()

    def _input_requested(self, stage_id: str) -> None:
        self.transition(EventKind.INPUT_REQUESTED, self.plan.index_of[stage_id])
        if self.suspend_wanted:
            self.try_suspend()

    def try_suspend(self) -> None:
        """Suspend if every stage still going is a gate waiting for its answer."""
        if self.stopped or self.suspended is not None:
            return
        waiting = self.gates.waiting()
        if not waiting or len(waiting) != self.active:
            return
        if self.on_suspend is not None:
            try:
                self.on_suspend(self)
            except Exception as exc:  # noqa: BLE001 - the run cannot be kept: it waits on
                self.suspend_wanted = False
                self.log.warning("run_not_suspended", reason=str(exc))
                return
        self.suspended = waiting
        self.log.info("run_suspended", waiting=[request.stage_id for request in waiting])
        self.stopped = True
        self.nursery.cancel_scope.cancel()

    def _route(self, index: int, result: StageResult[Any]) -> StageResult[Any]:
        """Mark the stages routing stage ``index`` leaves out; a choice of a branch it
        does not have (or a router that raises) fails it instead."""
        branches = self.plan.branches[index]
        assert branches is not None  # noqa: S101 (only routing stages come here)
        sdef = self.plan.stages[index]
        taken: set[str] = set()
        if result.status in ROUTABLE:
            try:
                taken = chosen_branches(sdef, result.output, branches)
            except Exception as exc:  # noqa: BLE001 - the stage's failure, named
                error = str(exc) if isinstance(exc, RoutingError) else error_text(exc)
                return StageResult.failure(error, stage_name=sdef.id, metadata=result.metadata)
            result = attrs.evolve(
                result, metadata={**result.metadata, "branches": tuple(sorted(taken))}
            )
        live = {target for branch in taken for target in branches[branch]}
        for branch, targets in branches.items():
            if branch not in taken:
                for target in targets:
                    if target not in live:
                        self.routed_off[target] = 1
        return result

    def _hand_on_routed(self, index: int, output: Any, now: float) -> None:
        """Hand ``output`` on, as the plain loop does, but skip the stages routing left
        out and those whose inputs were all skipped by routing (without a task: they
        hand None on in turn, iteratively, however long the chain)."""
        plan = self.plan
        remaining, edges, consumers = self.remaining, self.edges, plan.edge_consumer
        routed_off, route_skipped = self.routed_off, self.route_skipped
        work = [(index, output)]
        while work:
            producer, value = work.pop()
            for edge in plan.out_edges[producer]:
                edges[edge] = OneShotChannel(value)
                consumer = consumers[edge]
                remaining[consumer] -= 1
                if remaining[consumer]:
                    continue
                if routed_off[consumer]:
                    self._skip_routed(consumer, now, "routing did not take its branch")
                    work.append((consumer, None))
                elif all(route_skipped[d] for d in plan.deps[consumer]):
                    self._skip_routed(consumer, now, "routing skipped all its inputs")
                    work.append((consumer, None))
                else:
                    self._spawn(consumer, now)

    def _skip_routed(self, index: int, now: float, reason: str) -> None:
        self.queued[index] = self.started[index] = self.finished[index] = now
        self.route_skipped[index] = 1
        stage_id = self.plan.ids[index]
        self.results[index] = result = StageResult.skipped(stage_name=stage_id, reason=reason)
        if self.watched:
            self.stage_transition(EventKind.STAGE_QUEUED, index, now)
            self.stage_transition(EventKind.STAGE_SKIPPED, index, now, None, result.error)

    def _stage_failed(self, index: int, result: StageResult[Any]) -> None:
        stage_id = self.plan.ids[index]
        critical = self.plan.stages[index].critical
        self.failed.append(index)
        attempt = result.metadata.get("attempts")
        self.transition(EventKind.STAGE_FAILED, index, attempt=attempt, error=result.error)
        if not critical:
            return
        if self.error is None:
            self.error = f"stage '{stage_id}' failed: {result.error}"
        if self.fail_fast and not self.stopped:
            self.stopped = True
            self.nursery.cancel_scope.cancel()

    def stage_cancelled(self, index: int) -> None:
        """Record that stage ``index`` was cancelled while it ran."""
        self.active -= 1
        if self.suspended is not None and any(
            request.stage_id == self.plan.ids[index] for request in self.suspended
        ):
            return  # a gate withdrawn by suspending: it waits, it was not cancelled
        self.finished[index] = self.now()
        self.cancelled.append(index)
        reason = self.error or "the run was cancelled"
        self.results[index] = StageResult(
            status=StageStatus.CANCELLED,
            error=f"cancelled: {reason}",
            stage_name=self.plan.ids[index],
        )
        self.transition(EventKind.STAGE_CANCELLED, index, error=reason)

    def on_retry(
        self, stage_id: str, item: int | None, attempt: int, error: BaseException, delay_s: float
    ) -> None:
        """Log a retry and count its backoff (the hook the attempt runner calls before
        sleeping)."""
        index = self.plan.index_of[stage_id]
        self.records.retry_s[index] = self.records.retry_s.get(index, 0.0) + delay_s
        text = error_text(error)
        self.retries.append(
            [stage_id, item, attempt, text, to_ms(delay_s), to_ms(self.now() - self.start_time)]
        )
        self.transition(EventKind.ATTEMPT_FAILED, index, attempt=attempt, item=item, error=text)
        self.transition(
            EventKind.STAGE_RETRYING,
            index,
            attempt=attempt,
            item=item,
            error=text,
            delay_ms=to_ms(delay_s),
        )

    def item_finished(
        self, index: int, item: int, total: int, started: float, result: StageResult[Any] | None
    ) -> None:
        """Record fan-out item ``item`` of stage ``index`` (None: it was cancelled)."""
        if result is None:
            status, attempts = StageStatus.CANCELLED, 0
        else:  # once an item: the common metadata is told apart without a lookup
            status, metadata = result.status, result.metadata
            if metadata is ONE_ATTEMPT or metadata is NO_METADATA:  # see settle_item
                attempts = 1
            else:
                attempts = metadata.get("attempts", 0)
        items = self.records.items.get(index)
        if items is None:
            items = self.records.items[index] = []
        items.append((item, started, self.now(), status, attempts))
        self.item_totals[index] = total
        if not self.watched:
            return
        # A failed or cancelled item is not done: progress never reads 6/6 then FAILED.
        done = self._items_done.get(index, 0)
        if status is not StageStatus.FAILED and status is not StageStatus.CANCELLED:
            done = self._items_done[index] = done + 1
        self.transition(
            EventKind.ITEM_FINISHED,
            index,
            item=item,
            attempt=attempts,
            error=None if result is None else result.error,
            done=done,
            total=total,
        )

    # -- the result ------------------------------------------------------------------------

    def build_result(self, *, cancelled: bool = False) -> PipelineResult:
        """The frozen result of the run as it stands (``cancelled``: from outside)."""
        plan = self.plan
        ids = plan.ids
        t0 = self.start_time
        # Built here and wrapped read-only as they are (no copy): one pass over the
        # stages, the common status first.
        outputs: dict[str, Any] = {}
        stage_results: dict[str, StageResult[Any]] = {}
        by_status: dict[StageStatus, list[str]] = {
            StageStatus.SKIPPED: [],
            StageStatus.SOFT_FAILED: [],
            StageStatus.CACHED: [],
        }
        not_started: list[str] = []
        succeeded = StageStatus.SUCCEEDED
        waiting = () if self.suspended is None else tuple(r.stage_id for r in self.suspended)
        for stage_id, result in zip(ids, self.results, strict=True):
            if result is None:
                if stage_id not in waiting:
                    not_started.append(stage_id)
                continue
            stage_results[stage_id] = result
            status = result.status
            if status is succeeded:
                outputs[stage_id] = result.output
            elif status in by_status:
                outputs[stage_id] = result.output
                by_status[status].append(stage_id)
        error = self.error
        if cancelled and error is None:
            error = "the run was cancelled"
        return PipelineResult(
            pipeline_name=plan.name,
            run_id=self.run_id,
            success=error is None and not waiting,
            outputs=MappingProxyType(outputs),
            stage_results=MappingProxyType(stage_results),
            failed_stages=tuple(ids[i] for i in self.failed),
            skipped_stages=tuple(by_status[StageStatus.SKIPPED]),
            soft_failed_stages=tuple(by_status[StageStatus.SOFT_FAILED]),
            cached_stages=tuple(by_status[StageStatus.CACHED]),
            cancelled_stages=tuple(ids[i] for i in self.cancelled),
            not_started_stages=tuple(not_started),
            total_duration_ms=to_ms(self.end_time - t0),
            metrics=self.context.metrics,
            context=self.context.snapshot(),
            timeline=Timeline(
                ids=ids, deps=plan.deps, results=self.results, records=self.records, start=t0
            ),
            error=error,
            cancelled=cancelled,
            waiting_stages=waiting,
        )


def _logs_debug(log: Any) -> bool:
    """Whether ``log`` emits debug events (a logger that cannot say is assumed to)."""
    is_enabled_for = getattr(log, "is_enabled_for", None)
    return True if is_enabled_for is None else bool(is_enabled_for(logging.DEBUG))
