"""Which event loop a stage's code runs on, and the hand-overs between Trio and asyncio.

The engine is Trio code. A run started from an asyncio program (`aio.execute`) runs on
that program's loop (Trio in guest mode) and sets a *stage host* for its tasks: the
engine asks it how to call each stage (`execute_of`), and it runs the stages written for
asyncio as asyncio tasks on the host loop. Code written for Trio that calls user code
(the refine loop's planner and judge) goes through `call_user`; library code that waits
on Trio primitives (the rate limiter) and may be called from an asyncio task goes
through `run_in_trio`. Outside an asyncio-hosted run none of this costs more than a
context-variable read.

A stage's loop is what it is marked with (`mark`), on the stage object, its class, or
the function a function stage wraps; unmarked stages take the run's default.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any, Literal, Protocol, TypeVar

import sniffio
import trio

Loop = Literal["trio", "asyncio"]

#: The attribute a loop marker sets.
MARK = "__twinklr_loop__"

Marked = TypeVar("Marked")
T = TypeVar("T")


def mark(target: Marked, loop: Loop) -> Marked:
    """Mark a stage (function, class or instance), planner or judge as code for ``loop``."""
    try:
        setattr(target, MARK, loop)
    except (AttributeError, TypeError) as exc:  # a slotted instance, a builtin
        wrapped = getattr(target, "fn", None)  # a function stage: mark its function
        if wrapped is not None and wrapped is not target:
            mark(wrapped, loop)
            return target
        msg = f"cannot mark {target!r} as {loop} code: it takes no attributes ({exc})"
        raise TypeError(msg) from exc
    return target


def loop_of(target: object) -> Loop | None:
    """The loop ``target`` is marked for: its own mark, its class's, or (for a function
    stage) its function's; None when unmarked."""
    found: Loop | None = getattr(target, MARK, None)
    if found is None:
        wrapped = getattr(target, "fn", None)  # a FunctionStage and its function
        if wrapped is not None:
            found = getattr(wrapped, MARK, None)
    if found is None:
        owner = getattr(target, "__self__", None)  # a bound method: its object's mark
        if owner is not None:
            found = loop_of(owner)
    return found


class StageHost(Protocol):
    """Runs the stages written for another event loop (set for an asyncio-hosted run)."""

    def execute_of(self, stage: Any) -> Callable[[Any, Any], Any]:
        """How to call ``stage``: its own ``execute``, or one that runs it on the host."""
        ...

    async def call(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await ``fn(*args)`` as the host loop's code, from Trio."""
        ...

    def runs_here(self, target: object) -> bool:
        """Whether ``target`` is Trio code (called directly) rather than the host's."""
        ...


#: The stage host of the run this task belongs to; None in a plain Trio run.
stage_host: ContextVar[StageHost | None] = ContextVar("twinklr_stage_host", default=None)


def execute_of(stage: Any) -> Callable[[Any, Any], Any]:
    """The callable the engine awaits to run ``stage``: ``stage.execute`` unless the
    run is hosted and the stage is written for the host's loop."""
    host = stage_host.get()
    if host is None:
        return stage.execute  # type: ignore[no-any-return]
    return host.execute_of(stage)


async def call_user(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Await user code ``fn(*args)`` from Trio, on the loop it is written for."""
    host = stage_host.get()
    if host is None or host.runs_here(fn):
        return await fn(*args)
    return await host.call(fn, *args)


#: Runs a pipeline for an executor awaited from asyncio; installed by ``aio``.
_from_asyncio: list[Callable[..., Awaitable[Any]]] = []


def install_asyncio_entry(entry: Callable[..., Awaitable[Any]]) -> None:
    """Make ``entry(executor, pipeline, initial_input, context)`` what an executor's
    ``execute`` awaited from asyncio runs (``aio.execute`` with that executor)."""
    _from_asyncio[:] = [entry]


def awaited_from_asyncio() -> bool:
    """Whether the running coroutine is awaited by an asyncio task (not Trio's)."""
    return sniffio.current_async_library() == "asyncio"


async def execute_from_asyncio(executor: Any, *args: Any) -> Any:
    """Run ``executor.execute(*args)``'s pipeline for an asyncio caller."""
    if not _from_asyncio:  # pragma: no cover (installed when the package is imported)
        msg = "asyncio support is not loaded: import twinklr.core.pipeline.aio"
        raise RuntimeError(msg)
    return await _from_asyncio[0](executor, *args)


async def in_worker_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (blocking work: a store's file) in a worker thread, awaited from
    whichever loop is running."""
    if awaited_from_asyncio():
        import asyncio  # noqa: PLC0415 (an asyncio program has it loaded already)

        return await asyncio.to_thread(fn, *args)
    return await trio.to_thread.run_sync(fn, *args)


#: Runs Trio code for an asyncio task on a hosted run's loop; installed by ``aio``.
_to_trio: list[Callable[..., Awaitable[Any]]] = []


def install_trio_bridge(bridge: Callable[..., Awaitable[Any]]) -> None:
    """Make ``bridge(fn, *args)`` the way asyncio tasks await Trio code."""
    _to_trio[:] = [bridge]


async def run_in_trio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Await ``fn(*args)``, Trio code, from whichever loop is running: directly in Trio,
    through the asyncio-hosted run's Trio loop from an asyncio task."""
    if sniffio.current_async_library() != "asyncio":
        return await fn(*args)
    if not _to_trio:
        msg = (
            "Trio code called from asyncio outside a hosted run: run the pipeline with "
            "twinklr.core.pipeline.aio.execute"
        )
        raise RuntimeError(msg)
    return await _to_trio[0](fn, *args)


# -- asyncio stages in a plain Trio run: through trio-asyncio (the ``asyncio`` extra) ----


class TrioAsyncioStages:
    """The stage host of a plain Trio run whose pipeline has stages marked as asyncio
    code: those run on a trio-asyncio loop, every other stage as Trio code."""

    def __init__(self, aio_as_trio: Callable[[Any], Any]) -> None:
        self._aio_as_trio = aio_as_trio
        self._executes: dict[int, tuple[Any, Callable[[Any, Any], Any]]] = {}

    def runs_here(self, target: object) -> bool:
        return loop_of(target) != "asyncio"

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
        return await self._aio_as_trio(fn)(*args)

    async def _stream(
        self, execute: Callable[[Any, Any], AsyncIterator[Any]], value: Any, context: Any
    ) -> AsyncIterator[Any]:
        produced = execute(value, context)
        try:
            async for item in self._aio_as_trio(produced):
                yield item
        finally:
            with trio.CancelScope(shield=True):  # closed on its own loop
                await self._aio_as_trio(produced.aclose)()  # type: ignore[attr-defined]


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
