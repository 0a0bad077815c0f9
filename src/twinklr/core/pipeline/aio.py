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
import contextvars
import functools
import inspect
import sys
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar, cast

import outcome
import trio

from ._engine._executor import PipelineExecutor
from ._engine._handle import RunHandle as TrioRunHandle
from ._engine._handle import RunStatus
from ._loops import (
    Loop,
    install_asyncio_entry,
    install_trio_bridge,
    loop_of,
    mark,
    stage_host,
)
from ._results import PipelineResult

if TYPE_CHECKING:
    from ._context import PipelineContext
    from ._observe._events import PipelineEvent
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


# -- Trio -> asyncio: the stages written for asyncio -----------------------------------


class _Waiting:
    """A Trio task waiting for an asyncio task: Trio calls it to abort the wait (the
    asyncio task is cancelled; the Trio task is woken once it has ended)."""

    __slots__ = ("cancelled", "task", "waiter")

    def __init__(self, task: asyncio.Task[Any], waiter: trio.lowlevel.Task) -> None:
        self.task = task
        self.waiter = waiter
        self.cancelled = False

    def __call__(self, _: Any) -> trio.lowlevel.Abort:
        self.cancelled = True
        self.task.cancel()
        return trio.lowlevel.Abort.FAILED


async def _next_item(items: AsyncIterator[Any]) -> tuple[bool, Any]:
    try:
        return True, await items.__anext__()
    except StopAsyncIteration:
        return False, None


class _AsyncioStages:
    """The stage host of an asyncio-hosted run: runs asyncio stages as host tasks."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken, default: Loop
    ) -> None:
        self.loop = loop
        self.token = token
        self.default = default
        self._executes: dict[int, tuple[Any, Callable[[Any, Any], Any]]] = {}
        self._waiting: dict[asyncio.Task[Any], _Waiting] = {}
        self._quiet = contextvars.Context()  # the wake-ups need no context of their own

    def runs_here(self, target: object) -> bool:
        return (loop_of(target) or self.default) == "trio"

    def execute_of(self, stage: Any) -> Callable[[Any, Any], Any]:
        known = self._executes.get(id(stage))
        if known is not None and known[0] is stage:
            return known[1]
        execute = stage.execute
        if self.runs_here(stage):
            adapted = execute
        elif inspect.isasyncgenfunction(execute):
            adapted = functools.partial(self._stream, execute)
        else:
            adapted = functools.partial(self.call, execute)
        self._executes[id(stage)] = (stage, adapted)
        return adapted  # type: ignore[no-any-return]

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        # The task starts with a copy of this Trio task's context: the run's context
        # variables (its context, the writes being recorded) reach the stage's code.
        # Trio's cancellation cancels the task and is raised once the task has ended,
        # so nothing is left running. (Few objects per call: this is the hand-over's
        # whole cost, and allocation is what costs most, through the collector.)
        coroutine = cast("Coroutine[Any, Any, Any]", fn(*args))
        task = self.loop.create_task(coroutine, context=contextvars.copy_context())
        waiting = self._waiting[task] = _Waiting(task, trio.lowlevel.current_task())
        task.add_done_callback(self._wake, context=self._quiet)
        await trio.lowlevel.wait_task_rescheduled(waiting)
        if waiting.cancelled:
            await trio.lowlevel.checkpoint()  # raises the Cancelled that stopped us
        if task.cancelled():
            msg = "the stage's asyncio task was cancelled from outside the pipeline run"
            raise RuntimeError(msg)
        return task.result()

    def _wake(self, task: asyncio.Task[Any]) -> None:
        waiter = self._waiting.pop(task).waiter
        try:
            trio.lowlevel.reschedule(waiter)  # the host loop's thread, between guest ticks
        except RuntimeError:  # the guest's run context is not this thread's
            self.token.run_sync_soon(trio.lowlevel.reschedule, waiter)

    async def _stream(
        self, execute: Callable[[Any, Any], AsyncIterator[Any]], value: Any, context: Any
    ) -> AsyncIterator[Any]:
        # Each step of the generator is a host task of its own.
        items = execute(value, context)
        try:
            while True:
                more, item = await self.call(_next_item, items)
                if not more:
                    return
                yield item
        finally:
            with trio.CancelScope(shield=True):
                await self.call(items.aclose)  # type: ignore[attr-defined]


# -- asyncio -> Trio: the shared guest run ---------------------------------------------


class _Guest:
    """The Trio run hosted by one asyncio loop, shared by every pipeline run on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.closing = False
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
        self.nursery: trio.Nursery | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        if _runs_on_trio(loop):  # a trio-asyncio loop: Trio is running already
            loop.trio_as_future(self._main).add_done_callback(self._hosted_done)  # type: ignore[attr-defined]
            return
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=self._done,
            host_uses_signal_set_wakeup_fd=True,
        )

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            self.ready.set_result(None)
            await self._stop.wait()

    def _done(self, ended: outcome.Outcome[None]) -> None:
        if _guests.get(self.loop) is self:
            del _guests[self.loop]
        self.closing = True
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"the Trio guest run ended at once: {ended!r}"))
        self.ended.set_result(ended)

    def _hosted_done(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self._done(outcome.Error(asyncio.CancelledError()))
        else:
            error = future.exception()
            self._done(outcome.Value(None) if error is None else outcome.Error(error))

    def release(self) -> None:
        """One user fewer; the last one ends the Trio run (in Trio or on the host)."""
        self.users -= 1
        if self.users == 0 and not self.closing:
            self.closing = True
            if _guests.get(self.loop) is self:
                del _guests[self.loop]  # a new user starts a new guest run
            assert self._stop is not None  # noqa: S101 (set before ready)
            try:
                self._stop.set()  # inside the Trio run
            except RuntimeError:
                assert self.token is not None  # noqa: S101
                self.token.run_sync_soon(self._stop.set)


def _runs_on_trio(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is trio-asyncio's, so its callbacks already run inside a Trio run
    (as every loop ``asyncio.run`` makes does once trio-asyncio is imported): the
    pipeline's Trio side then runs in that run, since a thread has one Trio run at most."""
    trio_asyncio = sys.modules.get("trio_asyncio")
    return trio_asyncio is not None and isinstance(loop, trio_asyncio.BaseTrioEventLoop)


_guests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Guest] = weakref.WeakKeyDictionary()


async def _wait_out(future: asyncio.Future[Any], *, raise_cancelled: bool = True) -> None:
    """Wait for ``future`` however often this task is cancelled meanwhile; then raise
    the first cancellation, if any and if asked (what was started is seen to its end)."""
    cancelled: asyncio.CancelledError | None = None
    while not future.done():
        try:
            await asyncio.wait({future})
        except asyncio.CancelledError as exc:
            cancelled = cancelled or exc
    if cancelled is not None and raise_cancelled:
        raise cancelled


async def _join() -> _Guest:
    """A user of this loop's guest run, starting one if there is none."""
    loop = asyncio.get_running_loop()
    while True:
        guest = _guests.get(loop)
        if guest is None:
            guest = _guests[loop] = _Guest(loop)
        elif guest.closing:
            await asyncio.wait({guest.ended})
            continue
        guest.users += 1
        try:
            await _wait_out(guest.ready)
        except BaseException:
            if guest.ready.done() and guest.ready.exception() is None:
                guest.release()
            raise
        guest.ready.result()
        return guest


def _bridge_task(guest: _Guest) -> Callable[..., Awaitable[Any]]:
    async def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        loop = guest.loop
        done: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        scope = trio.CancelScope()
        context = contextvars.copy_context()

        async def in_trio() -> None:
            for var, value in context.items():  # the asyncio task's context variables
                var.set(value)
            with scope:
                done.set_result(await outcome.acapture(fn, *args))
            if not done.done():
                done.set_result(outcome.Error(asyncio.CancelledError()))

        assert guest.token is not None  # noqa: S101 (set before ready)
        assert guest.nursery is not None  # noqa: S101
        guest.token.run_sync_soon(guest.nursery.start_soon, in_trio)
        try:
            await _wait_out(done)
        except asyncio.CancelledError:
            guest.token.run_sync_soon(scope.cancel)
            await _wait_out(done)
            raise
        return done.result().unwrap()

    return run


async def _bridge(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Await Trio code ``fn(*args)`` from an asyncio task, in this loop's guest run."""
    guest = _guests.get(asyncio.get_running_loop())
    if guest is None or guest.closing:
        msg = (
            "Trio code was called from asyncio outside a pipeline run: run the pipeline "
            "with twinklr.core.pipeline.aio.execute"
        )
        raise RuntimeError(msg)
    return await _bridge_task(guest)(fn, *args)


install_trio_bridge(_bridge)


async def _execute_for(
    executor: PipelineExecutor,
    pipeline: PipelineDefinition,
    initial_input: Any,
    context: PipelineContext | None,
) -> PipelineResult:
    """``await executor.execute(...)`` from asyncio: `execute` with that executor."""
    return await execute(pipeline, initial_input, context, executor=executor)


install_asyncio_entry(_execute_for)


# -- runs ------------------------------------------------------------------------------


class AsyncioRunHandle:
    """A run started by `start`, to wait for, cancel and watch from asyncio."""

    def __init__(
        self, guest: _Guest, events: asyncio.Queue[PipelineEvent] | None, *, recorded: bool
    ) -> None:
        self._guest = guest
        self._queue = events
        self._recorded = recorded  # events kept for readers (`start`), or none (`execute`)
        self._scope = trio.CancelScope()  # the whole Trio side of the run
        self._trio: TrioRunHandle | None = None
        self._started: asyncio.Future[None] = guest.loop.create_future()
        self._finished: asyncio.Future[PipelineResult] = guest.loop.create_future()
        self._events: list[PipelineEvent] = []
        self._closed = False
        self._readers: list[asyncio.Future[None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._asked = False
        self._following = False
        self._nursery: trio.Nursery | None = None
        self.run_id = ""
        """The run's id (also in its events, logs and result)."""
        self.pipeline = ""
        """The pipeline's name."""

    def __repr__(self) -> str:
        return (
            f"<AsyncioRunHandle {self.pipeline!r} run_id={self.run_id} status={self.status.value}>"
        )

    @property
    def status(self) -> RunStatus:
        """Running, or how the run ended."""
        return RunStatus.RUNNING if self._trio is None else self._trio.status

    @property
    def result(self) -> PipelineResult | None:
        """The result once the run has ended, else None (``wait()`` waits for it)."""
        return self._finished.result() if self._finished.done() else None

    def cancel(self) -> None:
        """Cancel the run; returns at once and may be called any number of times. A run
        that has already ended is left as it ended."""
        if not self._finished.done():
            assert self._guest.token is not None  # noqa: S101 (set before ready)
            self._guest.token.run_sync_soon(self._cancel_in_trio)

    async def wait(self) -> PipelineResult:
        """Wait for the run to end and return its result (never raises for the run's own
        failures or cancellation; cancelling the waiter leaves the run going)."""
        await asyncio.wait({self._finished})
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.wait({self._watcher})
        if self._guest.closing:
            await asyncio.wait({self._guest.ended})  # the last run: the Trio run has ended
        return self._finished.result()

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

    async def _cancelled(self) -> None:
        """The caller was cancelled: cancel the run and see it (and the Trio run, if
        it was the last) to its end, whatever else cancels the caller meanwhile."""
        self.cancel()
        await _wait_out(self._finished, raise_cancelled=False)
        if self._watcher is not None:
            self._watcher.cancel()
            await _wait_out(self._watcher, raise_cancelled=False)
        if self._guest.closing:
            await _wait_out(self._guest.ended, raise_cancelled=False)

    def _watch(self, token: asyncio.Event) -> None:
        """Cancel the run when ``token`` is set (the context's ``cancel_token``)."""

        async def watch() -> None:
            await token.wait()
            self.cancel()

        self._watcher = self._guest.loop.create_task(watch())

    # -- the run's Trio side --

    def _cancel_in_trio(self) -> None:
        if self._trio is not None:
            self._trio.cancel()  # the result says cancelled
        else:
            self._scope.cancel()  # not started yet, or a run without a Trio handle

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

    async def _run(
        self,
        executor: PipelineExecutor,
        pipeline: PipelineDefinition,
        initial_input: Any,
        context: PipelineContext | None,
        stage_loop: Loop,
    ) -> None:
        guest = self._guest
        assert guest.token is not None  # noqa: S101 (set before ready)
        stage_host.set(_AsyncioStages(guest.loop, guest.token, stage_loop))
        result: PipelineResult | None = None
        try:
            with self._scope:
                if self._recorded:
                    result = await self._run_recorded(executor, pipeline, initial_input, context)
                else:  # no handle, no events kept: the run costs what a Trio run costs
                    self._started.set_result(None)
                    result = await executor.execute(pipeline, initial_input, context)
        except BaseException as exc:
            self._heard(None)
            for future in (self._started, self._finished):
                if not future.done():
                    future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        future.exception()  # raised on below as well: not "never retrieved"
            if not isinstance(exc, Exception):
                raise  # cancellation, KeyboardInterrupt, SystemExit: on to the guest run
        else:
            self._heard(None)
            if result is None:  # cancelled before it started, or a run without a handle
                self._started.cancel()
                self._finished.cancel()
            else:
                self._finished.set_result(result)
        finally:
            guest.release()

    async def _run_recorded(
        self,
        executor: PipelineExecutor,
        pipeline: PipelineDefinition,
        initial_input: Any,
        context: PipelineContext | None,
    ) -> PipelineResult:
        async with trio.open_nursery() as nursery:
            handle = await executor.start(nursery, pipeline, initial_input, context)
            self._trio, self.run_id, self.pipeline = handle, handle.run_id, handle.pipeline
            self._nursery = nursery
            self._started.set_result(None)
            if self._queue is not None:
                self._follow()
            result = await handle.wait()
            self._nursery = None  # the follower, if any, ends with the run's events
        if not self._following:  # nobody asked while it ran: its history, at once
            self._events = list(handle._history.events)  # noqa: SLF001 (complete now)
        return result


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
    return await _begin(
        pipeline,
        initial_input,
        context,
        executor=executor,
        events=events,
        stage_loop=stage_loop,
        recorded=True,
    )


async def _begin(
    pipeline: PipelineDefinition,
    initial_input: Any,
    context: PipelineContext | None,
    *,
    executor: PipelineExecutor | None,
    events: asyncio.Queue[PipelineEvent] | None,
    stage_loop: Loop,
    recorded: bool,
) -> AsyncioRunHandle:
    if stage_loop not in ("asyncio", "trio"):
        msg = f"stage_loop must be 'asyncio' or 'trio', got {stage_loop!r}"
        raise ValueError(msg)
    pipeline.validate()
    executor = executor if executor is not None else PipelineExecutor()
    token = getattr(context, "cancel_token", None)
    if not isinstance(token, asyncio.Event):  # the original Twinklr's way to stop a run
        token = None
    guest = await _join()
    # A run that may be cancelled from outside keeps a handle: its result says so.
    handle = AsyncioRunHandle(guest, events, recorded=recorded or token is not None)
    if token is not None:
        handle._watch(token)  # noqa: SLF001 (its own)
    run = functools.partial(handle._run, executor, pipeline, initial_input, context, stage_loop)  # noqa: SLF001
    assert guest.token is not None  # noqa: S101 (set before ready)
    assert guest.nursery is not None  # noqa: S101
    guest.token.run_sync_soon(guest.nursery.start_soon, run)
    try:
        await _wait_out(handle._started)  # noqa: SLF001 (its own future)
    except asyncio.CancelledError:
        await handle._cancelled()  # noqa: SLF001 (its own)
        raise
    return handle


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
    handle = await _begin(
        pipeline,
        initial_input,
        context,
        executor=executor,
        events=events,
        stage_loop=stage_loop,
        recorded=events is not None,
    )
    try:
        return await handle.wait()
    except asyncio.CancelledError:
        await handle._cancelled()  # noqa: SLF001 (its own)
        raise
