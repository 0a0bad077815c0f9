"""Stage hosts: how a run calls the stages written for another event loop.

A run started from an asyncio program (`aio.execute`) runs its asyncio stages as tasks
on that program's loop (`AsyncioStages`); a plain Trio run whose pipeline marks stages
as asyncio code runs them on a trio-asyncio loop (`TrioAsyncioStages`, the ``asyncio``
extra). Either is set as the run's stage host (``_base._loops.stage_host``), which
the engine asks how to call each stage.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, cast

import trio

from .._base._loops import Loop, loop_of, stage_host


async def _next_item(items: AsyncIterator[Any]) -> tuple[bool, Any]:
    try:
        return True, await items.__anext__()
    except StopAsyncIteration:
        return False, None


class _Host:
    """What both hosts share: which stages run on the other loop, and their calls."""

    def __init__(self) -> None:
        self._executes: dict[int, tuple[Any, Callable[[Any, Any], Any]]] = {}

    def runs_here(self, target: object) -> bool:
        """Whether ``target`` is Trio code (called directly) rather than the host's."""
        raise NotImplementedError

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await ``fn(*args)`` as the host loop's code, from Trio."""
        raise NotImplementedError

    def execute_of(self, stage: Any) -> Callable[[Any, Any], Any]:
        """How to call ``stage``: its own ``execute``, or one that runs it on the host
        (worked out once per stage object)."""
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

    async def _stream(
        self, execute: Callable[[Any, Any], AsyncIterator[Any]], value: Any, context: Any
    ) -> AsyncIterator[Any]:
        # Each step of the generator is a call of its own on the host loop.
        items = execute(value, context)
        try:
            while True:
                more, item = await self.call(_next_item, items)
                if not more:
                    return
                yield item
        finally:
            with trio.CancelScope(shield=True):  # closed on its own loop
                await self.call(items.aclose)  # type: ignore[attr-defined]


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


class AsyncioStages(_Host):
    """The stage host of an asyncio-hosted run: runs asyncio stages as host tasks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        token: trio.lowlevel.TrioToken,
        default: Loop,
        stopping: Callable[[], bool] = bool,
    ) -> None:
        super().__init__()
        self.loop = loop
        self.stopping = stopping  # the loop is shutting down (its runs are being cancelled)
        self.token = token
        self.default = default
        self._waiting: dict[asyncio.Task[Any], _Waiting] = {}
        self._quiet = contextvars.Context()  # the wake-ups need no context of their own

    def runs_here(self, target: object) -> bool:
        return (loop_of(target) or self.default) == "trio"

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
            if self.stopping():  # asyncio.run ending: the run's own cancellation is coming
                await trio.sleep_forever()
            msg = "the stage's asyncio task was cancelled from outside the pipeline run"
            raise RuntimeError(msg)
        return task.result()

    def _wake(self, task: asyncio.Task[Any]) -> None:
        waiter = self._waiting.pop(task).waiter
        try:
            trio.lowlevel.reschedule(waiter)  # the host loop's thread, between guest ticks
        except RuntimeError:  # the guest's run context is not this thread's
            self.token.run_sync_soon(trio.lowlevel.reschedule, waiter)


class TrioAsyncioStages(_Host):
    """The stage host of a plain Trio run whose pipeline has stages marked as asyncio
    code: those run on a trio-asyncio loop, every other stage as Trio code."""

    def __init__(self, aio_as_trio: Callable[[Any], Any]) -> None:
        super().__init__()
        self._aio_as_trio = aio_as_trio

    def runs_here(self, target: object) -> bool:
        return loop_of(target) != "asyncio"

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return await self._aio_as_trio(fn)(*args)


def load_trio_asyncio() -> Any:
    """The trio-asyncio module (the ``asyncio`` extra), imported on first use.

    Importing trio-asyncio makes every event loop that asyncio creates outside Trio, in
    any thread, one of its own: ``asyncio.run`` then runs inside a Trio run of its own,
    and libraries that run asyncio in threads of their own (Dask's client, for one)
    break. When it is this function that imports it, asyncio outside Trio is left as it
    was: trio-asyncio hands loop creation outside Trio to a policy it is given, and it is
    given the one that was in place. A program that imported trio-asyncio itself keeps
    the behaviour it chose.
    """
    imported = "trio_asyncio" in sys.modules
    try:
        import trio_asyncio  # noqa: PLC0415 (the optional extra, loaded when used)
    except ImportError as exc:
        msg = (
            "stages marked as asyncio code need an asyncio loop: run the pipeline with "
            "twinklr.core.pipeline.aio.execute from asyncio, or install trio-asyncio "
            '(pip install "twinklr-pipeline[asyncio]") to run them from Trio'
        )
        raise ModuleNotFoundError(msg) from exc
    if not imported:
        policies = getattr(trio_asyncio, "_loop", None)
        faked = getattr(policies, "_FakedPolicy", None)
        original = getattr(policies, "_original_policy", None)
        if faked is not None and original is not None:
            faked.policy = original  # every thread's default, outside Trio
    return trio_asyncio


@asynccontextmanager
async def trio_asyncio_host() -> AsyncIterator[None]:
    """A trio-asyncio loop for the stages marked as asyncio code, while the run lasts."""
    trio_asyncio = load_trio_asyncio()
    async with trio_asyncio.open_loop():
        token = stage_host.set(TrioAsyncioStages(trio_asyncio.aio_as_trio))
        try:
            yield
        finally:
            stage_host.reset(token)
