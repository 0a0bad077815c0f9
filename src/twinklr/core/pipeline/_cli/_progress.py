"""Following a run as it goes: plain lines for logs and pipes, a redrawn table on a
terminal (``_live``, with the ``cli`` extra), and Ctrl-C cancelling the run cleanly."""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import sys
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

import trio
import trio.lowlevel

from .._observe._events import TERMINAL_KINDS, EventKind, PipelineEvent
from .._values._answers import type_name
from ..errors import CacheWarning

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .._engine._executor import PipelineExecutor
    from .._engine._handle import RunHandle
    from .._kinds._gate import InputRequest
    from .._values._results import PipelineResult
    from ..definition import PipelineDefinition


#: Called before a log line is written (see ``_common``): the progress says the events
#: before it first, so a line never comes ahead of the transition that led to it.
before_log: list[Callable[[], None]] = []


class Progress:
    """Prints a run's events as plain lines (one per stage transition worth seeing)."""

    _SHOWN: ClassVar[dict[EventKind, str]] = {
        EventKind.STAGE_STARTED: "started",
        EventKind.STAGE_RETRYING: "retrying",
        EventKind.STAGE_SUCCEEDED: "done",
        EventKind.STAGE_FAILED: "FAILED",
        EventKind.STAGE_SKIPPED: "skipped",
        EventKind.STAGE_SOFT_FAILED: "soft-failed",
        EventKind.STAGE_CACHE_HIT: "cached",
        EventKind.STAGE_CANCELLED: "cancelled",
        EventKind.INPUT_REQUESTED: "waiting for input",
        EventKind.INPUT_RECEIVED: "answered",
    }

    #: The events that end a stage (a retry, a gate's question or answer do not).
    _ENDED: ClassVar[frozenset[EventKind]] = TERMINAL_KINDS

    def __init__(self, out: TextIO, *, quiet: bool) -> None:
        self.out = out
        self.quiet = quiet
        self.running: dict[str, None] = {}
        self.cancelled: dict[str, None] = {}
        self._counted: dict[str, int | None] = {}  # each fan-out's items said done
        #: How a waiting gate may be answered from elsewhere (``--store DIR``, said with
        #: its ``runs respond`` line), or why it cannot; None: it is asked here.
        self.answer_with: str | None = None

    def show(self, event: PipelineEvent) -> None:
        if event.stage is not None:
            if event.kind is EventKind.STAGE_STARTED:
                self.running[event.stage] = None
            elif event.kind is EventKind.STAGE_CANCELLED:
                self.cancelled[event.stage] = None
            if event.kind in self._ENDED:
                self.running.pop(event.stage, None)
        if self.quiet:
            return
        line = self._line(event)
        if line is not None:
            print(f"[{event.time_ms:9.1f} ms] {line}", file=self.out, flush=True)

    def _line(self, event: PipelineEvent) -> str | None:
        if event.kind is EventKind.ITEM_FINISHED:
            counted = f"{event.stage}: {event.done}/{event.total} items"
            if event.error:
                return f"{counted} (item {event.item} failed: {event.error})"
            if self._counted.get(event.stage or "") == event.done:
                return None  # (an item cancelled: the count did not move)
            self._counted[event.stage or ""] = event.done
            return counted
        word = self._SHOWN.get(event.kind)
        if word is None or event.stage is None:
            return None
        # (the line names the stage: its error need not say it again)
        error = (event.error or "").removeprefix(f"stage '{event.stage}' ")
        detail = f" ({error})" if error else ""
        if event.kind is EventKind.INPUT_REQUESTED and self.answer_with is not None:
            detail = self.answer_with.format(run_id=event.run_id, stage=event.stage)
        if event.kind is EventKind.STAGE_RETRYING:
            detail = f" (attempt {event.attempt}: {event.error}; next in {event.delay_ms:g} ms)"
        return f"{event.stage}: {word}{detail}"

    async def consume(self, events: trio.MemoryReceiveChannel[PipelineEvent]) -> None:
        async for event in events:
            self.show(event)


async def execute_with_progress(
    executor: PipelineExecutor,
    pipeline: PipelineDefinition,
    initial_input: Any,
    context: Any,
    progress: Progress,
    *,
    ask: Callable[[InputRequest], Any] | None = None,
    resume: str | None = None,
) -> PipelineResult | None:
    """Run with live progress; Ctrl-C cancels the run (returns None). ``ask`` answers
    the run's gates (called in a worker thread: it may read the terminal); ``resume``
    goes on with that suspended run instead of starting one. What was not cached is
    said (one line each) when it ends."""
    with cache_lines(sys.stderr):
        return await _follow(
            executor, pipeline, initial_input, context, progress, ask=ask, resume=resume
        )


async def _follow(
    executor: PipelineExecutor,
    pipeline: PipelineDefinition,
    initial_input: Any,
    context: Any,
    progress: Progress,
    *,
    ask: Callable[[InputRequest], Any] | None,
    resume: str | None,
) -> PipelineResult | None:
    send, receive = trio.open_memory_channel[PipelineEvent](math.inf)
    result = None
    said_first = functools.partial(_say_pending, receive, progress)
    before_log.append(said_first)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.consume, receive)
            with trio.CancelScope() as run_scope:
                nursery.start_soon(_cancel_on_interrupt, run_scope)
                if resume is not None:
                    result = await executor.resume(
                        resume, pipeline=pipeline, context=context, events=send
                    )
                elif ask is None:
                    result = await executor.execute(pipeline, initial_input, context, events=send)
                else:
                    async with trio.open_nursery() as running:
                        handle = await executor.start(
                            running, pipeline, initial_input, context, events=send
                        )
                        running.start_soon(_answer_gates, handle, ask)
                        result = await handle.wait()
                        running.cancel_scope.cancel()  # no gate is left to answer
            send.close()
            nursery.cancel_scope.deadline = trio.current_time() + 1  # let progress catch up
            if result is not None:
                await _drained(receive)
            nursery.cancel_scope.cancel()
    finally:
        before_log.remove(said_first)
    return result


def _say_pending(receive: trio.MemoryReceiveChannel[PipelineEvent], progress: Progress) -> None:
    """Show the events not shown yet, now (a log line is about to be written). Only on
    the run's own thread: a worker thread's line waits for nothing."""
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return
    while True:
        try:
            progress.show(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return


async def _answer_gates(handle: RunHandle, ask: Callable[[InputRequest], Any]) -> None:
    """Ask for each gate's answer as it opens; a refused one (not of the gate's answer
    type) is said, and asked again."""
    async for event in handle.events():
        if event.kind is EventKind.INPUT_REQUESTED:
            for request in handle.waiting():
                if request.stage_id == event.stage:
                    while True:
                        answer = await trio.to_thread.run_sync(ask, request, abandon_on_cancel=True)
                        try:
                            handle.respond(request.stage_id, answer)
                        except ValueError as refused:
                            print(f"  refused: {refused}", file=sys.stderr, flush=True)
                        except LookupError:  # answered meanwhile (runs respond, the web view)
                            break
                        else:
                            break


def ask_on_terminal(request: InputRequest) -> Any:
    """A gate's question on the terminal: its prompt and input, then y gives the gate its
    input as it is, n (or the end of the input) None, and anything else is read as the
    answer in JSON (asked again until it is JSON)."""
    shown = request.input
    if isinstance(shown, list):
        shown = f"{len(shown)} items: " + ", ".join(repr(item)[:60] for item in shown[:3])
    print(f"{request.stage_id}: {request.prompt}\n  {str(shown)[:300]}", file=sys.stderr)
    if request.answer_type is not None:
        print(f"  the answer must be a {type_name(request.answer_type)}", file=sys.stderr)
    while True:
        print("  approve? [y/N, or the answer as JSON] ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip()
        if answer.lower() in ("y", "yes"):
            return request.input
        if answer.lower() in ("", "n", "no"):
            return None
        try:
            return json.loads(answer)
        except ValueError as exc:
            print(f"  not JSON: {exc}", file=sys.stderr, flush=True)


async def _drained(receive: trio.MemoryReceiveChannel[PipelineEvent]) -> None:
    while receive.statistics().current_buffer_used:
        await trio.lowlevel.checkpoint()


async def _cancel_on_interrupt(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


@contextlib.contextmanager
def cache_lines(out: TextIO) -> Iterator[None]:
    """Each `CacheWarning` said inside, printed to ``out`` as one line when it ends
    (``--quiet`` too: nothing else would say what was not cached); other warnings are
    shown as Python shows them."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CacheWarning)
            yield
    finally:
        for said in caught:
            if issubclass(said.category, CacheWarning):
                print(f"cache: {said.message}", file=out)
            else:
                warnings.showwarning(said.message, said.category, said.filename, said.lineno)
