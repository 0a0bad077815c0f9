"""What a run says about itself: log records, live events, OpenTelemetry spans.

Per-stage transitions cost something to log or send, so a run nobody watches (no event
consumer, no tracer, debug logging filtered out) skips them entirely (``watched``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from .._observe._events import EventKind, EventSink, PipelineEvent, stage_event
from .._observe._logs import run_logger
from .._observe._otel import SpanRecorder
from .._values._timing import to_ms
from .._values._usage import Ledger, Usage, current_item, current_stage, usage_sink

if TYPE_CHECKING:
    from ._plan import Plan

#: How often a stage's streamed text becomes a ``STAGE_TOKENS`` event, at most (seconds).
STREAM_EVENT_S = 0.05

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


class RunTelemetry:
    """A run's log, event consumer and tracer, and its clock (the base of `Run`)."""

    nursery: trio.Nursery  # the supervisor's (see `Run.start`)

    def __init__(self, plan: Plan, run_id: str) -> None:
        self.plan = plan
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
        # The run's clock, read directly: stage tasks read it three times each.
        self.now = trio.lowlevel.current_clock().current_time
        self.start_time = self.end_time = self.now()
        # What each stage's LLM calls used (by stage index; -1: outside any stage), and
        # all of them (the run's `Ledger`), as running sums (a call costs a few adds):
        # [requests, input tokens, output tokens, cached input tokens, cost or None].
        self._usage: dict[int, list[Any]] = {}
        self._spent: list[Any] = [0, 0, 0, 0, 0.0]
        self.models: dict[int, set[str]] = {}  # the models each stage called
        # Fan-out items run with a cache: their own sums too, (stage, item) -> sums.
        self._item_usage: dict[tuple[int, int], list[Any]] = {}
        self._saved: list[Any] = [0, 0, 0, 0, 0.0]  # what cache hits served
        # A sub-pipeline's run: its calls count for the stage of the run it runs in too
        # (made in that stage's task, where the outer ledger and stage are current).
        self._outer: Ledger | None = usage_sink.get()
        self._outer_stage = current_stage.get()
        # Streamed text not sent yet, by (stage, item), and the task that will send it.
        self._streaming: dict[tuple[int, int], list[str]] = {}
        self._flusher: trio.CancelScope | None = None

    def add_usage(self, index: int, usage: Usage, model: str | None = None) -> None:
        """Count ``usage`` (one or more LLM calls, of ``model``) for stage ``index``."""
        sums = self._usage.get(index)
        if sums is None:
            sums = self._usage[index] = [0, 0, 0, 0, 0.0]
        if model is not None:
            self.models.setdefault(index, set()).add(model)
        sums_of = [sums, self._spent]
        item = current_item.get()
        if item >= 0:
            sums_of.append(self._item_usage.setdefault((index, item), [0, 0, 0, 0, 0.0]))
        _add(sums_of, usage)
        if self._outer is not None:
            self._outer.add_usage(self._outer_stage, usage, model)

    def used_by(self, index: int, item: int) -> Usage | None:
        """What stage ``index`` (its fan-out item ``item``; -1: the stage) used so far."""
        sums = self._usage.get(index) if item < 0 else self._item_usage.get((index, item))
        return None if sums is None else _usage_of(sums)

    def add_saved(self, usage: Usage) -> None:
        """Count ``usage`` as saved: a cache hit served what it had cost."""
        _add([self._saved], usage)
        if self._outer is not None:
            self._outer.add_saved(usage)

    @property
    def spent_in_all(self) -> Usage:
        """What the outermost run this one is part of has spent (what a budget counts)."""
        return self.spent if self._outer is None else self._outer.spent_in_all

    def streamed(self, index: int, item: int, text: str) -> None:
        """Say that ``text`` was streamed for stage ``index`` (its item ``item``) when
        anyone listens: the pieces are gathered into one ``STAGE_TOKENS`` event per stage
        and item every `STREAM_EVENT_S` (sent by a task waiting that long, so a stream
        that stalls still shows all it said), and at once when a stage ends."""
        if self.events is None or index < 0:
            return
        pending = self._streaming.get((index, item))
        if pending is None:
            self._streaming[index, item] = [text]
        else:
            pending.append(text)
        if self._flusher is None:
            self._flusher = trio.CancelScope()
            self.nursery.start_soon(self._flush_later, self._flusher)

    async def _flush_later(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(STREAM_EVENT_S)
            self.flush_streamed()

    def flush_streamed(self) -> None:
        """Send the streamed text gathered so far (a stage ending calls this first, so
        its text comes before its end, and no task is left waiting)."""
        if self._flusher is None:
            return
        self._flusher.cancel()
        self._flusher = None
        pending, self._streaming = self._streaming, {}
        for (index, item), pieces in pending.items():
            shown = item if item >= 0 else None
            self.transition(EventKind.STAGE_TOKENS, index, item=shown, text="".join(pieces))

    @property
    def saved(self) -> Usage:
        """What the run's cache hits had cost when they were made."""
        return _usage_of(self._saved)

    def pipeline_name(self) -> str:
        """The name of the pipeline this run runs."""
        return self.plan.name

    def stage_name(self, index: int) -> str | None:
        """Stage ``index``'s id (None for -1: outside any stage)."""
        return self.plan.ids[index] if index >= 0 else None

    def _usage_of_stage(self, stage: str) -> tuple[Usage, set[str]] | None:
        index = self.plan.index_of[stage]
        sums = self._usage.get(index)
        return None if sums is None else (_usage_of(sums), self.models.get(index, set()))

    @property
    def spent(self) -> Usage:
        """What the run's LLM calls used so far."""
        return _usage_of(self._spent)

    @property
    def usage(self) -> dict[int, Usage]:
        """What each stage's LLM calls used, by stage index."""
        return {index: _usage_of(sums) for index, sums in self._usage.items()}

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

    def listen(self, events: EventSink) -> None:
        """Send this run's events to ``events`` too."""
        self.events = events
        self.watched = True

    def trace(self, tracer: Any) -> None:
        """Record this run as OpenTelemetry spans made by ``tracer``."""
        self.spans = SpanRecorder(
            tracer, self.plan.name, self.run_id, self.start_time, usage_of=self._usage_of_stage
        )
        self.watched = True


def _logs_debug(log: Any) -> bool:
    """Whether ``log`` emits debug events (a logger that cannot say is assumed to)."""
    is_enabled_for = getattr(log, "is_enabled_for", None)
    return True if is_enabled_for is None else bool(is_enabled_for(logging.DEBUG))


def _usage_of(sums: list[Any]) -> Usage:
    requests, used_in, used_out, cached, cost = sums
    return Usage(
        requests=requests,
        input_tokens=used_in,
        output_tokens=used_out,
        cached_input_tokens=cached,
        cost_usd=cost,
    )


def _add(sums_of: list[list[Any]], usage: Usage) -> None:
    for totals in sums_of:
        totals[0] += usage.requests
        totals[1] += usage.input_tokens
        totals[2] += usage.output_tokens
        totals[3] += usage.cached_input_tokens
        cost = usage.cost_usd
        totals[4] = None if cost is None or totals[4] is None else totals[4] + cost
