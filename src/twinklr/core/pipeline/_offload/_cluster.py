"""What the cluster runners (Dask, Ray) share: their lifecycle, the work they send, and
how they cancel it.

Lifecycle: a runner opens its connection (or starts a local cluster) on first use. What a
run opened, the last run using it closes when it ends; what its holder opened (``async
with runner:``, ``connect()``) stays open until the holder closes it. Each run's
objects on the cluster are released when it ends, failed or not.

Work: a stage's function is pickled once per run and sent as a separate object when it
is big (a closure over a table), its input with each call (as a separate object when it
is big); both unpacked on the worker by `_remote.call_remote`, which travels by value.

Cancelling: cancelled calls are gathered and cancelled in one batch, in a thread of
their own (never on the Trio thread); a run ends only once that is done.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Self

import trio

from .._values._current import current_run, on_run_end
from .._values._usage import work_name
from ._runners import pickled

#: A function pickled bigger than this is sent once per run as an object of its own.
FUNCTION_APART = 100_000


class ClusterRunner:
    """The lifecycle the cluster runners share ([DaskRunner][twinklr.core.pipeline.DaskRunner],
    [RayRunner][twinklr.core.pipeline.RayRunner]).

    A runner connects (or starts its local cluster) on first use. What a run opened, the
    last run using it closes when it ends (runs sharing a runner nobody holds are
    counted: one run's end never cuts another's). To keep it open across runs, hold it:
    ``async with runner:`` (closed when the block ends and no run uses it) or
    ``await runner.aclose()`` when done; blocking code calls ``connect()`` and
    ``close()``. After each run, failed or not, the runner holds nothing of it: its
    results are released once fetched, its cancelled work is cancelled on the cluster
    before the run returns, and the objects it sent (a big function, big inputs) are
    released. Each run's end reaches the runner through
    [on_run_end][twinklr.core.pipeline.on_run_end].
    """

    #: What the errors call the cluster ("the Dask cluster").
    where: ClassVar[str] = "the cluster"
    #: Which cluster the workers' error messages give fixes for ("dask", "ray").
    kind: ClassVar[str] = ""

    def __init__(
        self, *, startup_timeout_s: float, shutdown_timeout_s: float, input_apart: int
    ) -> None:
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self.input_apart = input_apart  # an input pickled bigger is sent apart
        self._conn = _Connection()

    # What a cluster runner implements (blocking calls, made in worker threads).

    def _start(self) -> tuple[Any, Any]:
        """Connect (or start the local cluster): ``(client, cluster or None)``."""
        raise NotImplementedError

    def _stop(self, client: Any, cluster: Any) -> None:
        """Close what `_start` opened."""
        raise NotImplementedError

    def _put(self, client: Any, payload: bytes) -> Any:
        """``payload`` as an object on the cluster, for calls to take as an argument."""
        raise NotImplementedError

    def _release(self, client: Any, objects: list[Any]) -> None:
        """Release objects `_put` made."""
        raise NotImplementedError

    def _cancel(self, client: Any, handles: list[Any]) -> None:
        """Cancel calls in flight, and return once the cluster has let them go."""
        raise NotImplementedError

    def _pickler(self) -> Any:
        """The cloudpickle the workers unpack with (the library, or the cluster's copy)."""
        import cloudpickle  # noqa: PLC0415 (the cluster extras)

        return cloudpickle

    # The lifecycle.

    def connect(self) -> Any:
        """The client, connecting (or starting the local cluster) first if needed: open
        until `close` (no run closes it). Blocking: call it in a worker thread."""
        return self._open(by_run=False)

    def _open(self, *, by_run: bool) -> Any:
        conn = self._conn
        with conn.lock:
            conn.opened_by_run = by_run and (conn.client is None or conn.opened_by_run)
            if conn.client is None:
                conn.client, conn.cluster = self._start()
            return conn.client

    def close(self) -> None:
        """Close the connection (and the local cluster, if it started one). Blocking."""
        conn = self._conn
        with conn.lock:
            client, cluster = conn.client, conn.cluster
            conn.client = conn.cluster = None
            conn.opened_by_run = False
        if client is not None:
            self._stop(client, cluster)

    async def __aenter__(self) -> Self:
        """Hold the runner open across the runs inside the block (connected at once)."""
        self._conn.holders += 1
        try:
            with trio.fail_after(self.startup_timeout_s):
                await trio.to_thread.run_sync(self.connect, abandon_on_cancel=True)
        except BaseException:
            self._conn.holders -= 1
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._conn.holders -= 1
        if self._conn.holders == 0 and not self._conn.runs:
            await self.aclose()

    async def aclose(self) -> None:
        """`close`, off the Trio loop, bounded by ``shutdown_timeout_s`` (twice: the
        client, then the cluster)."""
        with trio.move_on_after(self.shutdown_timeout_s * 2):
            await trio.to_thread.run_sync(self.close, abandon_on_cancel=True)

    async def _client(self) -> tuple[Any, _RunState | None]:
        """The client (connecting in a thread, bounded) and the current run's state
        (None outside any run); a run's first call makes it a user of the runner."""
        conn = self._conn
        run = current_run()
        state = None
        if run is not None:
            state = conn.runs.get(id(run))
            if state is None:  # this run's first call: it uses the runner until it ends
                state = conn.runs[id(run)] = _RunState()
                on_run_end(functools.partial(self._run_ended, id(run)))
        client = conn.client
        if client is None:
            with trio.fail_after(self.startup_timeout_s):
                opened = functools.partial(self._open, by_run=True)
                client = await trio.to_thread.run_sync(opened, abandon_on_cancel=True)
        return client, state

    async def _run_ended(self, run: int) -> None:
        """A run that used this runner has ended: wait until its cancelled work is let
        go, release what it sent; the last run closes what a run opened and nobody
        holds."""
        conn = self._conn
        state = conn.runs.pop(run, None)
        if not conn.idle.is_set():  # cancelling under way: the run ends once it is done
            with trio.move_on_after(self.shutdown_timeout_s):
                await trio.to_thread.run_sync(conn.idle.wait, abandon_on_cancel=True)
        client = conn.client
        if state is not None and state.objects and client is not None:
            release = functools.partial(self._release, client, state.objects)
            with trio.move_on_after(self.shutdown_timeout_s):
                await trio.to_thread.run_sync(release, abandon_on_cancel=True)
        if not conn.runs and conn.holders == 0 and conn.opened_by_run:
            await self.aclose()

    # The work.

    async def _prepare(
        self, client: Any, state: _RunState | None, fn: Callable[[Any], Any], value: Any
    ) -> tuple[Any, ...]:
        """``call_remote``'s arguments for ``fn(value)``: the function (pickled once per
        run, apart when big) and the input (apart when big)."""
        sent = await self._function(client, state, fn)
        payload = pickled(value, self.where, self._pickler())
        arg: Any = payload
        if len(payload) > self.input_apart:
            put = functools.partial(self._put, client, payload)
            # (released by the cluster once the call that takes it is done with it)
            arg = await trio.to_thread.run_sync(put, abandon_on_cancel=True)
        return (sent.token, sent.ref, arg, self.kind)

    async def _function(self, client: Any, state: _RunState | None, fn: Any) -> _Sent:
        """``fn`` as sent in this run (sent now if it was not; outside a run, with the
        call)."""
        if state is None:
            return _Sent(fn, pickled(fn, self.where, self._pickler()))
        functions = state.functions
        sent = functions.get(id(fn))
        while sent is not None and sent.ready is not None:  # another call is sending it
            await sent.ready.wait()
            sent = functions.get(id(fn))
        if sent is not None:
            return sent
        sent = functions[id(fn)] = _Sent(fn, pickled(fn, self.where, self._pickler()))
        if len(sent.ref) > FUNCTION_APART:
            sent.ready = ready = trio.Event()
            try:
                put = functools.partial(self._put, client, sent.ref)
                sent.ref = await trio.to_thread.run_sync(put, abandon_on_cancel=True)
            except BaseException:
                del functions[id(fn)]  # (the next call sends it)
                raise
            finally:
                sent.ready = None
                ready.set()
            state.objects.append(sent.ref)
        return sent

    @staticmethod
    def _key(fn: Any) -> str:
        """A task's name on the cluster: ``<pipeline>-<stage>-<item>-<token>`` (the item
        only for a fan-out's), or the function's name outside a run."""
        unique = uuid.uuid4().hex[:12]
        named = work_name()
        if named is None:
            return f"{getattr(fn, '__name__', 'work')}-{unique}"
        pipeline, stage, item = named
        if item < 0:
            return f"{pipeline}-{stage}-{unique}"
        return f"{pipeline}-{stage}-{item}-{unique}"

    # Cancelling.

    def _cancel_soon(self, handle: Any) -> None:
        """Cancel ``handle``'s call on the cluster, in the next batch (in a thread of
        its own: nothing blocks the Trio loop)."""
        conn = self._conn
        with conn.cancel_lock:
            conn.to_cancel.append(handle)
            if not conn.idle.is_set():
                return  # the canceller running takes it with its next batch
            conn.idle.clear()
        trio.lowlevel.start_thread_soon(self._cancel_all, _ignore, name="twinklr-cancel")

    def _cancel_all(self) -> None:
        conn = self._conn
        while True:
            with conn.cancel_lock:
                handles, conn.to_cancel = conn.to_cancel, []
                if not handles:
                    conn.idle.set()  # (the runs waiting for it may end now)
                    return
            client = conn.client
            if client is not None:
                try:
                    self._cancel(client, handles)
                except Exception:  # noqa: BLE001, S112 - a closed client: nothing left to cancel
                    continue


def _ignore(_outcome: object) -> None:
    pass


class _Connection:
    """What a runner and its per-stage variants (``options``) share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = None
        self.cluster: Any = None
        self.holders = 0  # async with blocks open on the runner
        self.runs: dict[int, _RunState] = {}  # the runs using it
        self.opened_by_run = False  # a run's first call opened it: the last run closes it
        self.cancel_lock = threading.Lock()
        self.to_cancel: list[Any] = []
        self.idle = threading.Event()  # no cancelling under way
        self.idle.set()


class _RunState:
    """What one run sent through a runner."""

    def __init__(self) -> None:
        self.functions: dict[int, _Sent] = {}  # by id of the function
        self.objects: list[Any] = []  # objects put on the cluster, released at its end


class _Sent:
    """A function as sent in a run: its token, and its pickle or the object holding it."""

    def __init__(self, fn: Any, payload: bytes) -> None:
        self.fn = fn  # (kept: its id names it while the run lasts)
        self.token = uuid.uuid4().hex
        self.ref: Any = payload
        self.ready: trio.Event | None = None


def checked_resources(owner: str, resources: object) -> dict[str, float]:
    """``resources`` (a cluster runner's option) as a dict of names to amounts; else a
    TypeError naming ``owner`` and the value."""
    if not isinstance(resources, dict) or not all(
        isinstance(name, str) and isinstance(amount, int | float) and not isinstance(amount, bool)
        for name, amount in resources.items()
    ):
        msg = f"{owner} resources must map names to numbers, got {resources!r}"
        raise TypeError(msg)
    return dict(resources)
