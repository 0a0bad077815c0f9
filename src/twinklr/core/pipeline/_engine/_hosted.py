"""A pipeline run started from asyncio: its Trio side runs in the loop's guest run, and
the asyncio side waits for it, cancels it and sees it to its end.

`PipelineExecutor.execute` awaited from asyncio comes here (the engine imports this
module only then, so a Trio program never loads asyncio for it); ``aio`` adds the
public handle's events on top of `HostedRun`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from .._base._loops import Loop, stage_host
from ._guest import Guest, join, wait_out
from ._handle import RunHandle, RunStatus
from ._hosts import AsyncioStages

if TYPE_CHECKING:
    from .._values._context import PipelineContext
    from .._values._results import PipelineResult
    from ..definition import PipelineDefinition
    from ._executor import PipelineExecutor

Hosted = TypeVar("Hosted", bound="HostedRun")


class HostedRun:
    """One pipeline run on an asyncio loop: started, waited for and cancelled from
    asyncio, run in Trio."""

    def __init__(self, guest: Guest, *, recorded: bool) -> None:
        self._guest = guest
        # A run with a Trio handle (`executor.start`), or one that costs what a plain
        # Trio run costs (no handle: nothing kept, cancelled through its scope only).
        self._recorded = recorded
        self._scope = trio.CancelScope()  # the whole Trio side of the run
        self._trio: RunHandle | None = None
        self._started: asyncio.Future[None] = guest.loop.create_future()
        self._finished: asyncio.Future[PipelineResult] = guest.loop.create_future()
        self._watcher: asyncio.Task[None] | None = None
        self._nursery: trio.Nursery | None = None
        self.run_id = ""
        """The run's id (also in its events, logs and result)."""
        self.pipeline = ""
        """The pipeline's name."""

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
            await self._guest.closed()  # the last run: the Trio run has ended
        return self._finished.result()

    async def _cancelled(self) -> None:
        """The caller was cancelled: cancel the run and see it (and the Trio run, if
        it was the last) to its end, whatever else cancels the caller meanwhile."""
        self.cancel()
        await wait_out(self._finished, raise_cancelled=False)
        if self._watcher is not None:
            self._watcher.cancel()
            await wait_out(self._watcher, raise_cancelled=False)
        if self._guest.closing:
            await self._guest.closed()

    def _watch(self, token: asyncio.Event) -> None:
        """Cancel the run when ``token`` is set (the context's ``cancel_token``)."""

        async def watch() -> None:
            await token.wait()
            self.cancel()

        self._watcher = self._guest.loop.create_task(watch())

    # -- what the public handle adds (events) hooks in here --

    def _begun(self) -> None:
        """The run has a Trio handle (``_trio``) and its nursery."""

    def _ended(self) -> None:
        """The run has ended (or never started): no more events."""

    def _ran(self, handle: RunHandle) -> None:
        """The run with ``handle`` has ended and its result is taken."""

    # -- the run's Trio side --

    def _cancel_in_trio(self) -> None:
        if self._trio is not None:
            self._trio.cancel()  # the result says cancelled
        else:
            self._scope.cancel()  # not started yet, or a run without a Trio handle

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
        stage_host.set(AsyncioStages(guest.loop, guest.token, stage_loop, lambda: guest.stopping))
        result: PipelineResult | None = None
        try:
            with self._scope:
                if self._recorded:
                    result = await self._run_recorded(executor, pipeline, initial_input, context)
                else:  # no handle, no events kept: the run costs what a Trio run costs
                    self._started.set_result(None)
                    result = await executor.execute(pipeline, initial_input, context)
        except BaseException as exc:
            self._ended()
            for future in (self._started, self._finished):
                if not future.done():
                    future.set_exception(exc)
                    if not isinstance(exc, Exception):
                        future.exception()  # raised on below as well: not "never retrieved"
            if not isinstance(exc, Exception):
                raise  # cancellation, KeyboardInterrupt, SystemExit: on to the guest run
        else:
            self._ended()
            if result is None:  # cancelled before it started, or a run without a handle
                self._started.cancel()
                self._finished.cancel()
            else:
                self._finished.set_result(result)
        finally:
            guest.runs.discard(self)
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
            self._begun()
            result = await handle.wait()
            self._nursery = None  # a follower, if any, ends with the run's events
        self._ran(handle)
        return result


async def begin(
    make: Callable[[Guest, bool], Hosted],
    executor: PipelineExecutor,
    pipeline: PipelineDefinition,
    initial_input: Any,
    context: PipelineContext | None,
    *,
    stage_loop: Loop,
    recorded: bool,
) -> Hosted:
    """Start ``pipeline`` on this asyncio loop as ``make(guest, recorded)`` and return
    that once the run has started (cancelled, it cancels the run and sees it end)."""
    if stage_loop not in ("asyncio", "trio"):
        msg = f"stage_loop must be 'asyncio' or 'trio', got {stage_loop!r}"
        raise ValueError(msg)
    pipeline.validate()
    token = getattr(context, "cancel_token", None)
    if not isinstance(token, asyncio.Event):  # the original Twinklr's way to stop a run
        token = None
    guest = await join()
    # A run that may be cancelled from outside keeps a handle: its result says so.
    hosted = make(guest, recorded or token is not None)
    guest.runs.add(hosted)
    if token is not None:
        hosted._watch(token)  # noqa: SLF001 (the run's own set-up)
    start = functools.partial(
        hosted._run,  # noqa: SLF001
        executor,
        pipeline,
        initial_input,
        context,
        stage_loop,
    )
    assert guest.token is not None  # noqa: S101 (set before ready)
    assert guest.nursery is not None  # noqa: S101
    guest.token.run_sync_soon(guest.nursery.start_soon, start)
    try:
        await wait_out(hosted._started)  # noqa: SLF001
    except asyncio.CancelledError:
        await hosted._cancelled()  # noqa: SLF001
        raise
    return hosted


async def finish(hosted: HostedRun) -> PipelineResult:
    """Wait for a started run's result; cancelled, cancel the run and see it end."""
    try:
        return await hosted.wait()
    except asyncio.CancelledError:
        await hosted._cancelled()  # noqa: SLF001 (its own)
        raise


async def execute(
    executor: PipelineExecutor,
    pipeline: PipelineDefinition,
    initial_input: Any,
    context: PipelineContext | None,
) -> PipelineResult:
    """``await executor.execute(...)`` awaited from asyncio: the run on this loop, its
    unmarked stages as asyncio code."""
    hosted = await begin(
        lambda guest, recorded: HostedRun(guest, recorded=recorded),
        executor,
        pipeline,
        initial_input,
        context,
        stage_loop="asyncio",
        recorded=False,
    )
    return await finish(hosted)
