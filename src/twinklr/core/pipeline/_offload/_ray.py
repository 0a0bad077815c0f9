"""The Ray backend (the ``ray`` extra): run ``SyncStage`` work as Ray tasks.

Each call is one Ray task of a small remote function of ours that travels by value (see
`_remote`), awaited through its object reference's future without blocking the Trio
loop. Ray never retries (``max_retries=0``; the executor owns retries). A cancelled
call's task is cancelled with ``ray.cancel(force=True)`` (its worker process killed if
it is running), in one batch off the Trio thread, and the run ends once every cancelled
task has ended.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

import trio

from .._values._current import offer_late
from . import _remote
from ._cluster import ClusterRunner, checked_resources
from ._runners import require_extra


class RayRunner(ClusterRunner):
    """Runs work as Ray tasks (the ``ray`` extra). Ray never retries a task: retries are
    the executor's.

    Its lifecycle is [ClusterRunner][twinklr.core.pipeline.ClusterRunner]'s: Ray is
    initialised on first use (unless it already is: then it is left as found) and shut
    down when the last run using it ends, or held with ``async with RayRunner() as
    runner:``. A function pickled bigger than 100 kB is put in the object store once per
    run, as is an input bigger than ``input_apart`` bytes. Tasks are named
    ``<pipeline>-<stage>-<item>-<token>``. Per-stage options:
    ``SyncStage(fn, runner=runner.options(num_gpus=1))``.

    Args:
        address: The cluster to connect to (``"auto"``, ``"ray://host:10001"``); None:
            start a local one.
        startup_timeout_s: The most starting or connecting may take.
        shutdown_timeout_s: The most shutting down (or ending cancelled tasks) may take.
        input_apart: An input pickled bigger than this many bytes goes in the object
            store.
        **init_kwargs: More arguments for ``ray.init`` (``num_cpus=2``, ``runtime_env``).

    Raises:
        ModuleNotFoundError: The ``ray`` extra is not installed (with the ``pip
            install`` line that installs it).
    """

    where = "the Ray cluster"
    kind = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        startup_timeout_s: float = 60.0,
        shutdown_timeout_s: float = 30.0,
        input_apart: int = 1_000_000,
        **init_kwargs: Any,
    ) -> None:
        require_extra("ray", "ray")
        super().__init__(
            startup_timeout_s=startup_timeout_s,
            shutdown_timeout_s=shutdown_timeout_s,
            input_apart=input_apart,
        )
        self.address = address
        self.init_kwargs = init_kwargs
        self.remote_options: dict[str, Any] = {}

    def __repr__(self) -> str:
        given = {"address": self.address} if self.address else {}
        shown = {**given, **self.init_kwargs, **self.remote_options}
        return f"RayRunner({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    def options(
        self,
        *,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        resources: dict[str, float] | None = None,
    ) -> RayRunner:
        """This runner (the same connection and lifecycle), running a stage's tasks
        with these Ray ``remote_options``: the CPUs, GPUs and custom ``resources`` each
        needs. Ray retries stay off whatever the options.

        Raises:
            TypeError: An option of the wrong type (named, with the value).
        """
        chosen: dict[str, Any] = {}
        for name, amount in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
            if amount is None:
                continue
            if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
                msg = f"RayRunner.options {name} must be a number >= 0, got {amount!r}"
                raise TypeError(msg)
            chosen[name] = amount
        if resources is not None:
            chosen["resources"] = checked_resources("RayRunner.options", resources)
        variant = copy.copy(self)
        variant.remote_options = chosen
        return variant

    def _start(self) -> tuple[Any, Any]:
        import ray  # noqa: PLC0415 (the ray extra)

        keeper = None
        if not ray.is_initialized():
            keeper = _Keeper({"include_dashboard": False, "log_to_driver": False})
            keeper.start(self.address, self.init_kwargs, self.startup_timeout_s)
        remote = ray.remote(max_retries=0)(_remote.call_remote)
        return remote, keeper

    def _pickler(self) -> Any:
        from ray import cloudpickle  # noqa: PLC0415 (Ray's own copy: on every worker)

        return cloudpickle

    def _stop(self, client: Any, cluster: Any) -> None:
        if cluster is not None:  # (Ray was not initialised before we started it)
            cluster.stop(self.shutdown_timeout_s)

    def _put(self, client: Any, payload: bytes) -> Any:
        import ray  # noqa: PLC0415

        return ray.put(payload)

    def _release(self, client: Any, objects: list[Any]) -> None:
        objects.clear()  # (Ray frees an object once nothing refers to it)

    def _cancel(self, client: Any, handles: list[Any]) -> None:
        """Cancel ``handles`` (object references), force-killing running tasks; return
        once every one has ended (or ``shutdown_timeout_s`` has passed)."""
        import ray  # noqa: PLC0415

        for ref in handles:
            with contextlib.suppress(Exception):  # (one that has just ended)
                ray.cancel(ref, force=True)
        ray.wait(handles, num_returns=len(handles), timeout=self.shutdown_timeout_s)

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)`` as a Ray task; the remote exception propagates as itself."""
        client, state = await self._client()
        args = await self._prepare(client, state, fn, value)
        ref = client.options(name=self._key(fn), **self.remote_options).remote(*args)
        done = trio.Event()
        future = ref.future()
        future.add_done_callback(
            functools.partial(_ARRIVALS.arrived, trio.lowlevel.current_trio_token(), done)
        )
        try:
            await done.wait()
        except trio.Cancelled:
            if not future.done():
                self._cancel_soon(ref)
            elif future.exception() is None:  # its value was here: the output all the same
                offer_late(future.result())
            raise
        try:
            return future.result()
        except Exception as exc:
            cause = getattr(exc, "cause", None)  # a RayTaskError: the remote exception
            if isinstance(cause, BaseException):
                raise cause from None
            raise


class _Arrivals:
    """The done events of calls whose outcome has arrived (set in Ray's threads), set
    on their Trio thread in batches: one wake-up of a Trio loop for every outcome that
    arrived meanwhile, not one each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[trio.lowlevel.TrioToken, list[trio.Event]] = {}

    def arrived(self, token: trio.lowlevel.TrioToken, done: trio.Event, _future: object) -> None:
        with self._lock:
            events = self._waiting.get(token)
            if events is not None:
                events.append(done)  # (the wake-up under way sets it too)
                return
            self._waiting[token] = [done]
        try:
            token.run_sync_soon(self._set, token)
        except trio.RunFinishedError:  # nobody waits for these any more
            with self._lock:
                self._waiting.pop(token, None)

    def _set(self, token: trio.lowlevel.TrioToken) -> None:
        with self._lock:
            events = self._waiting.pop(token, ())
        for event in events:
            event.set()


_ARRIVALS = _Arrivals()


class _Keeper:
    """The thread Ray is started and shut down in, alive as long as Ray is: Ray's own
    processes die with the thread that started them (a parent-death signal, which Linux
    sends when that thread ends), so not a pool thread that may end when idle."""

    def __init__(self, defaults: dict[str, Any]) -> None:
        self._defaults = defaults
        self._ready = threading.Event()
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self, address: str | None, init_kwargs: dict[str, Any], timeout_s: float) -> None:
        """Start Ray in the keeper's thread; return once it is up (its error raised)."""

        def keep() -> None:
            import ray  # noqa: PLC0415

            try:
                ray.init(address=address, **{**self._defaults, **init_kwargs})
            except BaseException as exc:  # noqa: BLE001 - raised in the starting thread
                self._error = exc
                return
            finally:
                self._ready.set()
            self._done.wait()
            ray.shutdown()

        self._thread = threading.Thread(target=keep, name="twinklr-ray", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            msg = f"Ray did not start within {timeout_s} s"
            raise TimeoutError(msg)
        if self._error is not None:
            raise self._error

    def stop(self, timeout_s: float) -> None:
        """Shut Ray down (in the keeper's thread) and wait for it, at most ``timeout_s``."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
