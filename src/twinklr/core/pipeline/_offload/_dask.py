"""The Dask backend (the ``dask`` extra): run ``SyncStage`` work on a Dask cluster.

Futures are awaited without blocking the Trio loop and without a thread per future: a
done-callback, in Dask's callback thread, fetches the outcome there (with those of every
future done meanwhile, in one ``client.gather``) and hands it back through the Trio
token. The calls of one Trio tick go in one ``client.map``. The workers need only dask
and cloudpickle: the code that unpacks the work travels by value (see `_remote`), as do
a lambda, a closure and a function of ``__main__``; any other function goes by
reference, so its module must be on the workers (``cloudpickle.register_pickle_by_value
(module)`` sends it by value, ``Client.upload_file`` puts it there; a worker without it
says so). Dask never retries (``retries=0``; the executor owns retries). Cancelled
calls are cancelled in one batch off the Trio thread, and a run ends once the scheduler
has released them; a task already running on a worker finishes its current call.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import trio

from .._values._current import offer_late
from . import _remote
from ._cluster import ClusterRunner, checked_resources
from ._runners import require_extra

#: How many of the oldest pending calls a done-callback looks at for its batch.
_SCAN_LIMIT = 512


class DaskRunner(ClusterRunner):
    """Runs work on a Dask cluster (the ``dask`` extra). Dask never retries a
    submission: retries are the executor's.

    Its lifecycle is [ClusterRunner][twinklr.core.pipeline.ClusterRunner]'s: opened on
    first use, or held open with ``async with DaskRunner() as runner:``; after a run the
    runner holds nothing of it. A function pickled bigger than 100 kB is sent once per
    run and stage (scattered), an input bigger than ``input_apart`` bytes is scattered
    rather than put in the task graph. Tasks are named
    ``<pipeline>-<stage>-<item>-<token>`` (the item for a fan-out's), so the dashboard
    reads. Per-stage options: ``SyncStage(fn, runner=runner.options(resources=...))``.

    Args:
        address: The scheduler to connect to; None: start a ``LocalCluster`` on first
            use.
        n_workers: The local cluster's worker processes.
        local_directory: Where the local cluster keeps its scratch files.
        startup_timeout_s: The most starting or connecting may take.
        shutdown_timeout_s: The most closing (or letting cancelled work go) may take.
        input_apart: An input pickled bigger than this many bytes is scattered.

    Raises:
        ModuleNotFoundError: The ``dask`` extra is not installed (with the
            ``pip install`` line that installs it).
    """

    where = "the Dask cluster"
    kind = "dask"

    def __init__(
        self,
        address: str | None = None,
        n_workers: int = 2,
        *,
        local_directory: str | None = None,
        startup_timeout_s: float = 60.0,
        shutdown_timeout_s: float = 30.0,
        input_apart: int = 1_000_000,
    ) -> None:
        require_extra("dask", "distributed", "cloudpickle")
        super().__init__(
            startup_timeout_s=startup_timeout_s,
            shutdown_timeout_s=shutdown_timeout_s,
            input_apart=input_apart,
        )
        self.address = address
        self.n_workers = n_workers
        self.local_directory = local_directory
        self.submit_options: dict[str, Any] = {}
        self._queues()

    def _queues(self) -> None:
        """Fresh queues of calls (a runner's own, not shared with its variants)."""
        self._batch: list[_Call] = []
        # submitted calls whose outcome has not been fetched yet (see _finished)
        self._pending_lock = threading.Lock()
        self._pending: dict[_Call, None] = {}  # in submission order

    def __repr__(self) -> str:
        where = self.address or f"LocalCluster(n_workers={self.n_workers})"
        options = "".join(f", {name}={value!r}" for name, value in self.submit_options.items())
        return f"DaskRunner({where}{options})"

    def options(
        self,
        *,
        resources: dict[str, float] | None = None,
        workers: str | list[str] | None = None,
        allow_other_workers: bool = False,
        priority: int = 0,
    ) -> DaskRunner:
        """This runner (the same connection and lifecycle), submitting a stage's work
        with these options: abstract ``resources`` its tasks need, the ``workers`` they
        may run on (unless ``allow_other_workers``), their ``priority``. Dask retries
        stay off whatever the options.

        Raises:
            TypeError: An option of the wrong type (named, with the value).
        """
        chosen: dict[str, Any] = {}
        if resources is not None:
            chosen["resources"] = checked_resources("DaskRunner.options", resources)
        if workers is not None:
            chosen["workers"] = workers
            chosen["allow_other_workers"] = bool(allow_other_workers)
        if not isinstance(priority, int) or isinstance(priority, bool):
            msg = f"DaskRunner.options priority must be an int, got {priority!r}"
            raise TypeError(msg)
        if priority:
            chosen["priority"] = priority
        variant = copy.copy(self)
        variant.submit_options = chosen
        variant._queues()  # noqa: SLF001 (its own class)
        return variant

    def _start(self) -> tuple[Any, Any]:
        import dask  # noqa: PLC0415 (the dask extra)
        from distributed import Client, LocalCluster  # noqa: PLC0415

        if self.address is not None:
            return Client(self.address, timeout=self.startup_timeout_s), None  # type: ignore[no-untyped-call]
        # Every scratch file (the scheduler's too) under local_directory; and no
        # rescheduling of work whose worker died: the executor owns retries (Dask's
        # default reruns it up to three more times).
        settings: dict[str, Any] = {"distributed.scheduler.allowed-failures": 0}
        if self.local_directory:
            settings["temporary-directory"] = self.local_directory
        with dask.config.set(settings):
            cluster = LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=self.n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # never a fixed port another holds
                local_directory=self.local_directory,
            )
        return Client(cluster, timeout=self.startup_timeout_s), cluster  # type: ignore[no-untyped-call]

    def _stop(self, client: Any, cluster: Any) -> None:
        client.close(timeout=self.shutdown_timeout_s)
        if cluster is not None:
            cluster.close(timeout=self.shutdown_timeout_s)

    def _put(self, client: Any, payload: bytes) -> Any:
        return client.scatter(payload, hash=False)

    def _release(self, client: Any, objects: list[Any]) -> None:
        for future in objects:
            future.release()

    def _cancel(self, client: Any, handles: list[Any]) -> None:
        """Cancel ``handles`` (futures): release them (the scheduler lets go of a task
        no client wants, and the worker of its call); return once the scheduler has
        (or ``shutdown_timeout_s`` has passed). Releasing, not ``client.cancel``: the
        scheduler cancels key by key, logging each (5 s for 10,000 against 1.7 s)."""
        keys = [future.key for future in handles]
        released = threading.Event()

        def release_all() -> None:
            for future in handles:
                future.release()
            released.set()

        # Released on the client's event loop, all in one callback: from here, each
        # release is a wake-up of that loop (10,000 of them took seconds).
        client.loop.add_callback(release_all)
        released.wait(self.shutdown_timeout_s)
        deadline = time.monotonic() + self.shutdown_timeout_s
        while keys and time.monotonic() < deadline:
            status = client.sync(client.scheduler.get_task_status, keys=keys)
            keys = [key for key, state in status.items() if state not in _LET_GO]
            if keys:
                time.sleep(0.005)

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)`` on the cluster; the remote exception propagates as itself."""
        client, state = await self._client()
        call = _Call(
            await self._prepare(client, state, fn, value),
            self._key(fn),
            trio.lowlevel.current_trio_token(),
        )
        if not self._batch:
            call.token.run_sync_soon(self._flush, client)
        self._batch.append(call)
        try:
            await call.done.wait()
        except trio.Cancelled:
            if self._cancelled(call):
                await self._late(call)
            raise
        if call.error is not None:
            raise call.error
        return call.value

    def _cancelled(self, call: _Call) -> bool:
        """``call``'s task is cancelled: True when its outcome is on its way back (done
        on the cluster, or being fetched); else its future is cancelled in the next
        batch (not fetched any more: nobody waits for it)."""
        future = call.future
        if call.done.is_set() or call.arrived:
            return True
        if future is None:
            call.cancelled = True  # still batched: never submitted
            return False
        with self._pending_lock:
            if call not in self._pending:
                return True  # being fetched (released there)
            if future.status == "finished":
                return True  # its done-callback is about to fetch it
            del self._pending[call]
        call.future = None
        self._cancel_soon(future)
        return False

    async def _late(self, call: _Call) -> None:
        """Wait for the outcome of a cancelled call that was on its way back
        (shielded, at most ``shutdown_timeout_s``): a value is the unit's output all
        the same (the engine caches it; the task's cancellation goes on)."""
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.shutdown_timeout_s
            await call.done.wait()
        if call.done.is_set() and call.error is None:
            offer_late(call.value)

    def _flush(self, client: Any) -> None:
        """Submit every call queued in this Trio tick with one ``client.map`` (one graph
        update for the scheduler instead of one per item)."""
        batch = [call for call in self._batch if not call.cancelled]
        self._batch = []
        if not batch:
            return
        try:
            futures = client.map(
                _remote.call_remote,
                *zip(*(call.args for call in batch), strict=True),
                key=[call.key for call in batch],
                pure=False,
                retries=0,
                **self.submit_options,
            )
        except Exception as exc:  # noqa: BLE001 - each waiting call gets the error
            for call in batch:
                call.error = exc
                call.done.set()  # (we are on the Trio thread here)
            return
        with self._pending_lock:
            for call, future in zip(batch, futures, strict=True):
                call.future = future
                call.args = ()  # (sent: the input is not kept here)
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
                return  # fetched with an earlier batch, or cancelled
            # The oldest pending calls are the likeliest done (Dask runs them roughly in
            # submission order); looking at a bounded number keeps a callback O(1) however
            # many calls are in flight.
            oldest = itertools.islice(self._pending, _SCAN_LIMIT)
            batch = [call, *(c for c in oldest if c is not call and c.future.done())]
            for done in batch:
                del self._pending[done]
        _fetch(client, batch)


#: The scheduler's states of a task it has let go (None: forgotten).
_LET_GO = frozenset({None, "released", "forgotten"})


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
        call.arrived = True  # (before the future goes: see DaskRunner._cancelled)
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
        tb.tb_frame.f_code.co_filename in _OURS
        or tb.tb_frame.f_globals.get("__name__", "").startswith("distributed.")
    ):
        tb = tb.tb_next
    return tb


_OURS = frozenset({__file__, _remote.__file__})


def _set_all(events: list[trio.Event]) -> None:
    for event in events:
        event.set()


class _Call:
    """One call on its way to the cluster and back."""

    def __init__(self, args: tuple[Any, ...], key: str, token: trio.lowlevel.TrioToken) -> None:
        self.args = args
        self.key = key
        self.token = token
        self.done = trio.Event()
        self.future: Any = None
        self.cancelled = False
        self.arrived = False  # its outcome is here (the done event is being set)
        self.value: Any = None
        self.error: BaseException | None = None
