"""Run pipelines from asyncio programs, with stages written for asyncio.

``await aio.execute(pipeline, initial_input)`` runs the Trio executor on the calling
program's own thread and event loop: Trio in guest mode (`trio.lowlevel.start_guest_run`),
with the asyncio loop as its host. No thread runs the orchestration and the host loop is
never blocked. Every run on one loop shares one Trio run (Trio allows one per thread),
started by the first and ended when the last one ends, so concurrent runs share rate
limiters and everything else a Trio run holds.

Under `execute` and `start`, a stage runs on asyncio unless it is marked as Trio code
(`trio_native`; the library's own stages are), so asyncio stages run unchanged: each call
is an asyncio task on the host loop, cancelled (it sees `asyncio.CancelledError`) when
fail-fast, a timeout or the caller cancels the run. With ``stage_loop="trio"`` unmarked
stages are Trio code and only those marked `asyncio_native` run on asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._base._loops import Loop, mark, refuse_trio_caller
from ._engine._executor import PipelineExecutor
from ._engine._guest import Guest
from ._engine._hosted import HostedRun, begin, finish

if TYPE_CHECKING:
    from ._engine._handle import RunHandle as TrioRunHandle
    from ._kinds._gate import InputRequest
    from ._observe._events import PipelineEvent
    from ._values._context import PipelineContext
    from ._values._results import PipelineResult
    from .definition import PipelineDefinition

__all__ = ["AsyncioRunHandle", "Loop", "asyncio_native", "execute", "start", "trio_native"]

Marked = TypeVar("Marked")


def trio_native(target: Marked) -> Marked:
    """Mark a stage (an async function, a stage class or instance), a planner or a judge
    as Trio code: under `execute` it runs in the Trio run, not as an asyncio task."""
    return mark(target, "trio")


def asyncio_native(target: Marked) -> Marked:
    """Mark a stage, planner or judge as asyncio code: it runs as an asyncio task even
    with ``stage_loop="trio"``."""
    return mark(target, "asyncio")


# -- runs ------------------------------------------------------------------------------


class AsyncioRunHandle(HostedRun):
    """A run started by `start`, to wait for, cancel and watch from asyncio."""

    def __init__(
        self, guest: Guest, events: asyncio.Queue[PipelineEvent] | None, *, recorded: bool
    ) -> None:
        super().__init__(guest, recorded=recorded)
        self._queue = events
        self._events: list[PipelineEvent] = []
        self._closed = False
        self._readers: list[asyncio.Future[None]] = []
        self._asked = False
        self._following = False

    def __repr__(self) -> str:
        return (
            f"<AsyncioRunHandle {self.pipeline!r} run_id={self.run_id} status={self.status.value}>"
        )

    # -- gates: answered from asyncio as from Trio (plain calls, on the loop's thread) --

    def waiting(self) -> list[InputRequest]:
        """The run's gates waiting for input (`WaitForInput` stages), oldest first; as
        [RunHandle.waiting][twinklr.core.pipeline.RunHandle.waiting]."""
        return self._run_handle().waiting()

    def respond(self, stage_id: str, value: Any) -> None:
        """Answer gate ``stage_id`` with ``value``, its output; its dependents go on.
        As [RunHandle.respond][twinklr.core.pipeline.RunHandle.respond]: `LookupError`
        naming the gates that wait when ``stage_id`` is not one of them."""
        self._run_handle().respond(stage_id, value)

    def suspend(self) -> None:
        """End the run as waiting once its only remaining work is gates waiting for
        input; as [RunHandle.suspend][twinklr.core.pipeline.RunHandle.suspend]
        (`RuntimeError` when its executor has no cache and run store)."""
        self._run_handle().suspend()

    def _run_handle(self) -> TrioRunHandle:
        # Called on the loop's thread between the guest run's steps, where the Trio
        # run's state is as still as an asyncio object's: its calls work there as is.
        assert self._trio is not None  # noqa: S101 (set before start returns it)
        return self._trio

    async def events(self) -> AsyncIterator[PipelineEvent]:
        """Every event of the run from its first, then live until it finishes; each call
        is a reader of its own."""
        self._follow()
        index = 0
        while True:
            if index < len(self._events):
                yield self._events[index]
                index += 1
                continue
            if self._closed:
                return
            ready = self._guest.loop.create_future()
            self._readers.append(ready)
            await ready

    # -- following the run's events (its Trio side) --

    def _begun(self) -> None:
        if self._queue is not None:
            self._follow()

    def _ended(self) -> None:
        self._heard(None)

    def _ran(self, handle: TrioRunHandle) -> None:
        if not self._following:  # nobody asked while it ran: its history, at once
            self._events = list(handle._history.events)  # noqa: SLF001 (complete now)

    def _follow(self) -> None:
        """Follow the run's events from now on (from its first): when a reader or a
        queue wants them, since following costs the run a step per event."""
        if self._asked or self._trio is None or self._finished.done():
            return
        self._asked = True
        assert self._guest.token is not None  # noqa: S101 (set before ready)
        self._guest.token.run_sync_soon(self._start_following)

    def _start_following(self) -> None:
        if self._nursery is not None:  # else the run has ended: its history is taken
            self._following = True
            self._nursery.start_soon(self._follow_events)

    async def _follow_events(self) -> None:
        assert self._trio is not None  # noqa: S101 (started)
        async for event in self._trio.events():
            self._heard(event)
        self._heard(None)

    def _heard(self, event: PipelineEvent | None) -> None:
        if event is None:
            self._closed = True
        else:
            self._events.append(event)
            queue = self._queue
            if queue is not None:
                if queue.full():
                    queue.get_nowait()  # the oldest goes, as for a Trio channel
                queue.put_nowait(event)
        readers, self._readers = self._readers, []
        for ready in readers:
            if not ready.done():
                ready.set_result(None)


async def start(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext | None = None,
    *,
    executor: PipelineExecutor | None = None,
    events: asyncio.Queue[PipelineEvent] | None = None,
    stage_loop: Loop = "asyncio",
) -> AsyncioRunHandle:
    """Start ``pipeline`` on this asyncio loop and return its handle once it has started.

    The run goes on in the background (it needs no task of yours); ``await
    handle.wait()`` returns its result.

    Args:
        pipeline: The definition to run; it is validated first.
        initial_input: What the entry stages receive.
        context: Services and shared state; a new, empty one when None.
        executor: The executor to run it with (its cache, tracer and runner); a new
            default one when None.
        events: An asyncio queue that receives every event as it happens; when it is
            full, its oldest event is dropped (a slow consumer never slows the run).
        stage_loop: Where stages that are not marked run: ``"asyncio"`` (tasks on this
            loop) or ``"trio"``.

    Returns:
        An [AsyncioRunHandle][twinklr.core.pipeline.aio.AsyncioRunHandle].

    Raises:
        PipelineValidationError: The definition is invalid (nothing has started).
    """
    refuse_trio_caller("start")
    return await begin(
        lambda guest, recorded: AsyncioRunHandle(guest, events, recorded=recorded),
        executor if executor is not None else PipelineExecutor(),
        pipeline,
        initial_input,
        context,
        stage_loop=stage_loop,
        recorded=True,
    )


async def execute(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext | None = None,
    *,
    executor: PipelineExecutor | None = None,
    events: asyncio.Queue[PipelineEvent] | None = None,
    stage_loop: Loop = "asyncio",
) -> PipelineResult:
    """Run ``pipeline`` to completion on this asyncio loop and return its result.

    Stage failures are reported in the result, never raised. Cancelling the task that
    awaits it (or ``asyncio.timeout`` around it) cancels the whole run at once: every
    stage is cancelled, the run ends, and then `asyncio.CancelledError` is raised.

    Args:
        pipeline: The definition to run; it is validated first.
        initial_input: What the entry stages receive.
        context: Services and shared state; a new, empty one when None.
        executor: The executor to run it with; a new default one when None.
        events: An asyncio queue that receives every event as it happens (see `start`).
        stage_loop: Where stages that are not marked run: ``"asyncio"`` or ``"trio"``.

    Returns:
        The run's [PipelineResult][twinklr.core.pipeline.PipelineResult].

    Raises:
        PipelineValidationError: The definition is invalid (nothing has run).
    """
    refuse_trio_caller("execute")
    handle = await begin(
        lambda guest, recorded: AsyncioRunHandle(guest, events, recorded=recorded),
        executor if executor is not None else PipelineExecutor(),
        pipeline,
        initial_input,
        context,
        stage_loop=stage_loop,
        recorded=events is not None,
    )
    return await finish(handle)
