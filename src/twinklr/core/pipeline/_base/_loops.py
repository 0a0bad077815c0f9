"""Which event loop a stage's code runs on, and the hand-overs between Trio and asyncio.

The engine is Trio code. A run started from an asyncio program (`aio.execute`) runs on
that program's loop (Trio in guest mode) and sets a *stage host* for its tasks: the
engine asks it how to call each stage (`execute_of`), and it runs the stages written for
asyncio as asyncio tasks on the host loop. Code written for Trio that calls user code
(the refine loop's planner and judge) goes through `call_user`; library code that waits
on Trio primitives (the rate limiter) and may be called from an asyncio task goes
through `run_in_trio`. Outside an asyncio-hosted run none of this costs more than a
context-variable read. The hosts themselves are the engine's (``_engine._hosts``,
``_engine._guest``); this module knows them only by the protocol they implement.

A stage's loop is what it is marked with (`mark`), on the stage object, its class, or
the function a function stage wraps; unmarked stages take the run's default.
"""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Awaitable, Callable
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


def awaited_from_asyncio() -> bool:
    """Whether the running coroutine is awaited by an asyncio task (not Trio's)."""
    return sniffio.current_async_library() == "asyncio"


async def in_worker_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (blocking work: a store's file) in a worker thread, awaited from
    whichever loop is running."""
    if awaited_from_asyncio():
        import asyncio  # noqa: PLC0415 (an asyncio program has it loaded already)

        return await asyncio.to_thread(fn, *args)
    return await trio.to_thread.run_sync(fn, *args)


#: How asyncio code on a loop awaits Trio code: the Trio run that loop hosts (a
#: pipeline run started from asyncio) sets its bridge here while it lasts.
trio_bridges: weakref.WeakKeyDictionary[object, Callable[..., Awaitable[Any]]] = (
    weakref.WeakKeyDictionary()
)


async def run_in_trio(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Await ``fn(*args)``, Trio code, from whichever loop is running: directly in Trio,
    through the asyncio-hosted run's Trio loop from an asyncio task."""
    if not awaited_from_asyncio():
        return await fn(*args)
    import asyncio  # noqa: PLC0415 (an asyncio program has it loaded already)

    bridge = trio_bridges.get(asyncio.get_running_loop())
    if bridge is None:
        msg = (
            "Trio code was called from asyncio outside a pipeline run: run the pipeline "
            "with twinklr.core.pipeline.aio.execute"
        )
        raise RuntimeError(msg)
    return await bridge(fn, *args)


def wrong_loop(stage_id: str, exc: BaseException) -> str | None:
    """What to do about ``exc``, raised by stage ``stage_id``, when it is Trio code run as
    an asyncio task or asyncio code run in a Trio run (a ``RuntimeError`` raised inside
    that library: no Trio task, no asyncio loop; or Trio refusing what an asyncio
    future yielded to it); None for anything else."""
    if not isinstance(exc, RuntimeError | TypeError):
        return None
    text = str(exc)
    if isinstance(exc, TypeError):
        asyncio_in_trio = "library written for some other framework like asyncio" in text
        trio_on_asyncio = False
    else:
        libraries = {
            str(frame.f_globals.get("__name__", "")).partition(".")[0]
            for frame, _ in traceback.walk_tb(exc.__traceback__)
        }
        trio_on_asyncio = "trio" in libraries and "must be called from async context" in text
        asyncio_in_trio = "asyncio" in libraries and "no running event loop" in text
    if trio_on_asyncio:
        return (
            f"stage '{stage_id}' awaited Trio code as an asyncio task: under aio.execute a "
            "stage runs on asyncio unless it is marked as Trio code; mark it with "
            'aio.trio_native, or run unmarked stages in Trio with stage_loop="trio"'
        )
    if asyncio_in_trio:
        return (
            f"stage '{stage_id}' awaited asyncio code in a Trio run, where no asyncio loop "
            "runs: mark it with aio.asyncio_native (it then runs on a trio-asyncio loop: "
            "the 'asyncio' extra), or run the pipeline from asyncio with aio.execute"
        )
    return None


def refuse_trio_caller(name: str) -> None:
    """Raise a clear error when ``aio.{name}``, made for asyncio, is awaited from Trio."""
    if sniffio.current_async_library() == "trio":
        msg = (
            f"aio.{name} runs a pipeline from asyncio; in a Trio program, call "
            f"PipelineExecutor().{name}(...) instead"
        )
        raise RuntimeError(msg)
