"""The Trio run an asyncio loop hosts: Trio in guest mode, shared by every pipeline run
started on that loop (Trio allows one run per thread), started by the first and ended
when the last one ends. Asyncio code on the loop reaches Trio code through it."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

from .._base._loops import trio_bridges


class Guest:
    """The Trio run hosted by one asyncio loop, shared by every pipeline run on it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.users = 0
        self.closing = False
        self.ready: asyncio.Future[None] = loop.create_future()
        self.ended: asyncio.Future[outcome.Outcome[None]] = loop.create_future()
        self.nursery: trio.Nursery | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.runs: set[Any] = set()
        """The pipeline runs on it (each has ``cancel()``)."""
        self.stopping = False
        """The loop is shutting down: its runs are being cancelled."""
        self.keeper: asyncio.Task[None] | None = None
        self._stop: trio.Event | None = None
        if runs_on_trio(loop):  # a trio-asyncio loop: Trio is running already
            loop.trio_as_future(self._main).add_done_callback(self._hosted_done)  # type: ignore[attr-defined]
            return
        trio.lowlevel.start_guest_run(
            self._main,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=self._done,
            host_uses_signal_set_wakeup_fd=True,
        )
        self.keeper = loop.create_task(self._keep())

    async def _keep(self) -> None:
        """See the Trio run end. Should the loop shut down first (``asyncio.run`` cancels
        every task once its main coroutine returns), cancel every run on it and wait for
        the Trio run to end: the loop never closes under a guest run, and each run's
        handle says cancelled."""
        try:
            await asyncio.wait({self.ended})
        except asyncio.CancelledError:
            self.stopping = True
            for run in list(self.runs):
                run.cancel()
            await wait_out(self.ended, raise_cancelled=False)
            raise

    async def closed(self) -> None:
        """Wait (through any cancellation) until the Trio run and its keeper have ended."""
        await wait_out(self.ended, raise_cancelled=False)
        if self.keeper is not None:
            await wait_out(self.keeper, raise_cancelled=False)

    async def _main(self) -> None:
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.token = trio.lowlevel.current_trio_token()
            self.ready.set_result(None)
            trio_bridges[self.loop] = self.to_trio
            await self._stop.wait()

    def _done(self, ended: outcome.Outcome[None]) -> None:
        self._forget()
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

    async def to_trio(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Await Trio code ``fn(*args)`` from an asyncio task on this loop, in this Trio
        run (with the task's context variables); cancelling the task cancels it."""
        loop = self.loop
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

        assert self.token is not None  # noqa: S101 (set before ready)
        assert self.nursery is not None  # noqa: S101
        self.token.run_sync_soon(self.nursery.start_soon, in_trio)
        try:
            await wait_out(done)
        except asyncio.CancelledError:
            self.token.run_sync_soon(scope.cancel)
            await wait_out(done)
            raise
        return done.result().unwrap()

    def _forget(self) -> None:
        """This loop's next user starts a new Trio run; Trio code is no longer reached
        through this one."""
        if guests.get(self.loop) is self:
            del guests[self.loop]
        if trio_bridges.get(self.loop) == self.to_trio:
            del trio_bridges[self.loop]

    def release(self) -> None:
        """One user fewer; the last one ends the Trio run (in Trio or on the host). It
        stays this loop's guest, closing, until it has ended: a new user waits for that
        before starting the next (a thread has one Trio run at a time)."""
        self.users -= 1
        if self.users == 0 and not self.closing:
            self.closing = True
            assert self._stop is not None  # noqa: S101 (set before ready)
            try:
                self._stop.set()  # inside the Trio run
            except RuntimeError:
                assert self.token is not None  # noqa: S101
                self.token.run_sync_soon(self._stop.set)


def runs_on_trio(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is trio-asyncio's, so its callbacks already run inside a Trio run
    (as every loop ``asyncio.run`` makes does once trio-asyncio is imported): the
    pipeline's Trio side then runs in that run, since a thread has one Trio run at most."""
    trio_asyncio = sys.modules.get("trio_asyncio")
    return trio_asyncio is not None and isinstance(loop, trio_asyncio.BaseTrioEventLoop)


guests: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Guest] = weakref.WeakKeyDictionary()


async def wait_out(future: asyncio.Future[Any], *, raise_cancelled: bool = True) -> None:
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


async def join() -> Guest:
    """A user of this loop's guest run, starting one if there is none."""
    loop = asyncio.get_running_loop()
    while True:
        guest = guests.get(loop)
        if guest is None:
            guest = guests[loop] = Guest(loop)
        elif guest.closing:
            await asyncio.wait({guest.ended})
            continue
        guest.users += 1
        try:
            await wait_out(guest.ready)
        except BaseException:
            if guest.ready.done() and guest.ready.exception() is None:
                guest.release()
                if guest.closing:  # the last user: see the Trio run end, nothing left
                    await guest.closed()
            raise
        guest.ready.result()
        return guest
