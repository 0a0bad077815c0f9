"""The Dask backend (the ``dask`` extra): run ``SyncStage`` work on a Dask cluster.

Futures are awaited without blocking the Trio loop and without a thread per future: a
done-callback, in Dask's callback thread, fetches the outcome there (with those of every
future done meanwhile, in one ``client.gather``) and hands it back through the Trio
token. Functions travel as cloudpickled bytes to a small runner of
ours (``call_pickled``, so the workers need twinklr-pipeline installed): a lambda, a
closure or a function of ``__main__`` goes by value, any other function by reference, so
its module must be importable on the workers too (``cloudpickle.register_pickle_by_value
(module)`` sends it by value, ``Client.upload_file`` puts it there).
Dask never retries (``retries=0``; the executor owns retries). A cancelled call cancels
its pending future; a task already running on a worker finishes its current call.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import types
from collections.abc import Callable
from typing import Any, Self

import trio

from .._values._current import run_cleanups
from ._runners import call_pickled, pickle_work, require_extra

#: How many of the oldest pending calls a done-callback looks at for its batch.
_SCAN_LIMIT = 512


class DaskRunner:
    """Runs work on a Dask cluster (the ``dask`` extra). Dask never retries a
    submission: retries are the executor's.

    What runs open, the last of them closes: a cluster (or connection) opened by a
    run's first call is closed when the last run using it ends (runs sharing a runner
    nobody holds are counted). To keep one open across runs, hold it: ``async with
    DaskRunner() as runner:`` (closed when the block ends and no run uses it), or
    ``runner.connect()`` before the runs and ``runner.close()`` after. After a run,
    failed or not, the runner holds nothing of it: each future is released once its
    outcome is fetched (or it is cancelled), so the workers keep no result of it.

    Args:
        address: The scheduler to connect to; None: start a ``LocalCluster`` on first
            use.
        n_workers: The local cluster's worker processes.
        local_directory: Where the local cluster keeps its scratch files.
        startup_timeout_s: The most starting or connecting may take.
        shutdown_timeout_s: The most closing may take.

    Raises:
        ModuleNotFoundError: The ``dask`` extra is not installed (with the
            ``pip install`` line that installs it).
    """

    def __init__(
        self,
        address: str | None = None,
        n_workers: int = 2,
        *,
        local_directory: str | None = None,
        startup_timeout_s: float = 60.0,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        require_extra("dask", "distributed", "cloudpickle")
        self.address = address
        self.n_workers = n_workers
        self.local_directory = local_directory
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._client: Any = None
        self._cluster: Any = None
        self._holders = 0  # async with blocks open on this runner
        self._runs = 0  # runs using it (see run)
        self._opened_by_run = False  # a run's first call opened it: the last run closes it
        self._lock = threading.Lock()
        self._batch: list[_Call] = []
        # submitted calls whose outcome has not been fetched yet (see _finished)
        self._pending_lock = threading.Lock()
        self._pending: dict[_Call, None] = {}  # in submission order

    def __repr__(self) -> str:
        where = self.address or f"LocalCluster(n_workers={self.n_workers})"
        return f"DaskRunner({where})"

    def connect(self) -> Any:
        """The client, connecting (or starting the local cluster) first if needed: open
        until `close` (no run closes it). Blocking: call it in a worker thread."""
        return self._open(by_run=False)

    def _open(self, *, by_run: bool) -> Any:
        """The client; opened now if needed, by a run (closed when the last run using
        it ends) or by its holder (``connect``, ``async with``)."""
        with self._lock:
            self._opened_by_run = by_run and (self._client is None or self._opened_by_run)
            if self._client is None:
                import dask  # noqa: PLC0415 (the dask extra)
                from distributed import Client, LocalCluster  # noqa: PLC0415

                if self.address is None:
                    # Every scratch file (the scheduler's too) under local_directory; and
                    # no rescheduling of work whose worker died: the executor owns
                    # retries (Dask's default reruns it up to three more times).
                    settings: dict[str, Any] = {"distributed.scheduler.allowed-failures": 0}
                    if self.local_directory:
                        settings["temporary-directory"] = self.local_directory
                    with dask.config.set(settings):
                        self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                            n_workers=self.n_workers,
                            threads_per_worker=1,
                            processes=True,
                            dashboard_address=":0",  # never a fixed port another holds
                            local_directory=self.local_directory,
                        )
                    self._client = Client(  # type: ignore[no-untyped-call]
                        self._cluster, timeout=self.startup_timeout_s
                    )
                else:
                    self._client = Client(  # type: ignore[no-untyped-call]
                        self.address, timeout=self.startup_timeout_s
                    )
            return self._client

    def close(self) -> None:
        """Close the client (and the local cluster, if we started one). Blocking."""
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
            self._opened_by_run = False
        if client is not None:
            client.close(timeout=self.shutdown_timeout_s)
        if cluster is not None:
            cluster.close(timeout=self.shutdown_timeout_s)

    async def __aenter__(self) -> Self:
        """Hold the runner open across the runs inside the block (connected at once)."""
        self._holders += 1
        try:
            with trio.fail_after(self.startup_timeout_s):
                await trio.to_thread.run_sync(self.connect, abandon_on_cancel=True)
        except BaseException:
            self._holders -= 1
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._holders -= 1
        if self._holders == 0 and self._runs == 0:
            await self.aclose()

    async def _run_ended(self) -> None:
        """A run that used this runner has ended: the last one closes what a run opened
        and nobody holds."""
        self._runs -= 1
        if self._runs == 0 and self._holders == 0 and self._opened_by_run:
            await self.aclose()

    async def aclose(self) -> None:
        """`close`, off the Trio loop, bounded by ``shutdown_timeout_s``."""
        with trio.move_on_after(self.shutdown_timeout_s * 2):
            await trio.to_thread.run_sync(self.close, abandon_on_cancel=True)

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)`` on the cluster; the remote exception propagates as itself."""
        payload = pickle_work(fn, value, "the Dask cluster")
        cleanups = run_cleanups.get()
        if cleanups is not None and self._run_ended not in cleanups:
            # This run's first call: it counts as a user until it ends (the last user to
            # end closes a connection nobody holds; one run's end never cuts another's).
            cleanups.append(self._run_ended)
            self._runs += 1
        client = self._client
        if client is None:  # connecting blocks: in a thread, bounded
            with trio.fail_after(self.startup_timeout_s):
                opened = functools.partial(self._open, by_run=True)
                client = await trio.to_thread.run_sync(opened, abandon_on_cancel=True)
        call = _Call(payload, trio.lowlevel.current_trio_token())
        if not self._batch:
            call.token.run_sync_soon(self._flush, client)
        self._batch.append(call)
        try:
            await call.done.wait()
        except trio.Cancelled:
            future = call.future
            if future is not None:
                future.cancel()
                future.release()  # (nothing of it is kept: see _fetch)
            else:
                call.cancelled = True  # still batched: never submitted
            raise
        if call.error is not None:
            raise call.error
        return call.value

    def _flush(self, client: Any) -> None:
        """Submit every call queued in this Trio tick with one ``client.map`` (one graph
        update for the scheduler instead of one per item)."""
        batch = [call for call in self._batch if not call.cancelled]
        self._batch = []
        if not batch:
            return
        try:
            futures = client.map(
                call_pickled, [call.payload for call in batch], pure=False, retries=0
            )
        except Exception as exc:  # noqa: BLE001 - each waiting call gets the error
            for call in batch:
                call.error = exc
                call.done.set()  # (we are on the Trio thread here)
            return
        with self._pending_lock:
            for call, future in zip(batch, futures, strict=True):
                call.future = future
                call.payload = b""  # (sent: the input is not kept here)
                self._pending[call] = None
        for call in batch:
            call.future.add_done_callback(functools.partial(self._finished, client, call))

    def _finished(self, client: Any, call: _Call, future: Any) -> None:
        """A future is done (in Dask's callback thread): fetch its outcome together with
        those of every other submitted future that is done by now, in one
        ``client.gather`` (one round trip for the batch, as ``client.map`` users do),
        and hand each back to Trio. Their own callbacks then find nothing left to do."""
        with self._pending_lock:
            if call not in self._pending:
                return  # fetched with an earlier batch
            # The oldest pending calls are the likeliest done (Dask runs them roughly in
            # submission order); looking at a bounded number keeps a callback O(1) however
            # many calls are in flight.
            oldest = itertools.islice(self._pending, _SCAN_LIMIT)
            batch = [call, *(c for c in oldest if c is not call and c.future.done())]
            for done in batch:
                del self._pending[done]
        _fetch(client, batch)


def _fetch(client: Any, batch: list[_Call]) -> None:
    """The outcomes of ``batch``'s finished futures: values in one gather, errors (and
    cancellations) one by one, as the exceptions the calls raise."""
    finished = [call for call in batch if call.future.status == "finished"]
    values: list[Any] | None = None
    if finished:
        try:
            values = client.gather([call.future for call in finished])
        except Exception:  # noqa: BLE001 - fall back to fetching one at a time
            values = None
    fetched = dict(zip(map(id, finished), values or (), strict=False))
    for call in batch:
        future = call.future
        if id(call) in fetched:
            call.value = fetched[id(call)]
        else:
            try:
                call.value = future.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the Trio side as is
                # Only the remote part of its traceback: the frames here hold this batch
                # (and its futures), which a stage result keeping the error would keep.
                call.error = exc.with_traceback(_remote_part(exc.__traceback__))
        # Released now, whoever still refers to the future: the client and the workers
        # keep nothing of a call whose outcome is here.
        future.release()
        call.future = None
    # One hand-off per Trio run for the whole batch: wake every waiting task at once.
    by_token: dict[trio.lowlevel.TrioToken, list[trio.Event]] = {}
    for call in batch:
        by_token.setdefault(call.token, []).append(call.done)
    for token, events in by_token.items():
        # (a finished Trio run means nobody waits for these results any more)
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(_set_all, events)


def _remote_part(tb: types.TracebackType | None) -> types.TracebackType | None:
    """``tb`` without its first frames in this module and in distributed's client (the
    fetching), from the first frame of the remote call on."""
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == __file__
        or tb.tb_frame.f_globals.get("__name__", "").startswith("distributed.")
    ):
        tb = tb.tb_next
    return tb


def _set_all(events: list[trio.Event]) -> None:
    for event in events:
        event.set()


class _Call:
    """One call on its way to the cluster and back."""

    def __init__(self, payload: bytes, token: trio.lowlevel.TrioToken) -> None:
        self.payload = payload
        self.token = token
        self.done = trio.Event()
        self.future: Any = None
        self.cancelled = False
        self.value: Any = None
        self.error: BaseException | None = None
