"""One run's state: the supervisor's bookkeeping that stage tasks report to.

It starts a stage's task when its last input has landed, sends outputs down the edges,
applies fail-fast, tells every transition (logs, live events, spans), and builds the
frozen result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

from .._kinds._gate import Gates, InputRequest
from .._observe._events import EventKind
from .._observe._timeline import RunRecords
from .._values._results import NO_METADATA, StageResult
from .._values._status import StageStatus
from .._values._timing import to_ms
from .._values._usage import current_stage
from ._attempts import ONE_ATTEMPT
from ._retry import error_text
from ._telemetry import RunTelemetry
from ._wiring import NOT_SENT, OneShotChannel

if TYPE_CHECKING:
    from .._cache._run_cache import RunCache
    from .._observe._recording import RunRecorder
    from .._values._context import PipelineContext
    from ._plan import Plan

#: A stage's task function, started as ``actor(run, index)``.
Actor = Callable[["Run", int], Awaitable[None]]

_TERMINAL = {
    StageStatus.SUCCEEDED: EventKind.STAGE_SUCCEEDED,
    StageStatus.SKIPPED: EventKind.STAGE_SKIPPED,
    StageStatus.SOFT_FAILED: EventKind.STAGE_SOFT_FAILED,
    StageStatus.CACHED: EventKind.STAGE_CACHE_HIT,
    StageStatus.CANCELLED: EventKind.STAGE_CANCELLED,
}

#: Items a streaming stage may run ahead of a stage pipelined on it (back-pressure).
STREAM_BUFFER = 16


class Run(RunTelemetry):
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
        super().__init__(plan, run_id)
        self.initial_input = initial_input
        self.context = context
        self.fail_fast = fail_fast
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
        self.actors: list[Actor]  # each stage's task function, given to start
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

    # -- supervision -------------------------------------------------------------------

    # -- supervision -------------------------------------------------------------------

    def start(self, nursery: trio.Nursery, actors: list[Actor]) -> None:
        """Start every entry stage in the supervisor ``nursery``, each stage's task
        being ``actors[index](run, index)``."""
        self.nursery = nursery
        self.actors = actors
        now = self.now()
        for index, deps in enumerate(self.plan.deps):
            if not deps:
                self.spawn(index, now)

    def is_cancelling(self) -> bool:
        """Whether the run is being cancelled: stopped (fail-fast, a cancelled handle)
        or a stage cancelled (the caller's cancellation reaching it). A plain read, for
        ``context.is_cancelled()`` from any thread."""
        return self.stopped or bool(self.cancelled)

    def stop(self) -> None:
        """Start nothing more: a stage queued but not yet begun never starts, and no
        output is handed on (a cancel from outside is on its way)."""
        self.stopped = True

    def spawn(self, index: int, now: float) -> None:
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
            self.spawn(consumer, self.now())
            sends.append(send)
        # Subscribers get their own clone of the channel they gave, closed when the stage
        # ends, so a subscriber that closed its end sees the stream end with the stage.
        sends.extend(subscriber.clone() for subscriber in self.subscribers.get(index, ()))
        return sends

    def stage_started(self, index: int) -> None:
        """Record that stage ``index``'s task began (called in that task: what its LLM
        calls use counts for it from now on)."""
        current_stage.set(index)
        self.started[index] = now = self.now()
        if self.watched:
            self.stage_transition(EventKind.STAGE_STARTED, index, now)

    def stage_finished(self, index: int, result: StageResult[Any]) -> None:
        """Record ``result``; hand the output on, or fail the run."""
        if self._flusher is not None:  # (streamed text waiting: said before the end)
            self.flush_streamed()
        self.active -= 1
        try:
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
            if not self.stopped:
                self.hand_on(index, output, now)
        finally:  # (free in the common case: no exception raised, one flag read)
            if self.suspend_wanted:
                self.try_suspend()  # the run may be down to its gates now

    def hand_on(self, index: int, output: Any, now: float) -> None:
        """Send ``output`` to the stages that read stage ``index``, starting each one
        whose last input this was (queued the moment its last input finished)."""
        remaining = self.remaining
        edges = self.edges
        consumers = self.plan.edge_consumer
        for edge in self.plan.out_edges[index]:
            edges[edge] = OneShotChannel(output)
            consumer = consumers[edge]
            remaining[consumer] -= 1
            if remaining[consumer] == 0:
                self.spawn(consumer, now)

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
        if self._flusher is not None:
            self.flush_streamed()
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
