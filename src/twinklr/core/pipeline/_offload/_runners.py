"""Offloading a stage's synchronous work off the Trio thread: to a thread, or to worker
processes (the ``processes`` extra: trio-parallel and cloudpickle).

The executor keeps the orchestration (dependencies, fail-fast, retries, cache, events);
only ``fn(input)`` runs elsewhere. A cancelled run abandons a thread (its call finishes in
the background) and kills a worker process.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

from .._values._current import current_executor, direct_output
from .._values._results import StageResult

if TYPE_CHECKING:
    from .._values._context import PipelineContext


@runtime_checkable
class Runner(Protocol):
    """Runs a synchronous function somewhere and awaits its result."""

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)``, off the Trio thread; its exception propagates."""
        ...


class ThreadRunner:
    """Runs the work in a worker thread (cancellation abandons the thread)."""

    def __repr__(self) -> str:
        return "ThreadRunner()"

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)`` in a thread."""
        return await trio.to_thread.run_sync(fn, value, abandon_on_cancel=True)


def require_extra(extra: str, *modules: str) -> None:
    """Raise ``ModuleNotFoundError`` with the install line when the ``extra``'s
    ``modules`` are not installed (looked up, not imported)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        msg = (
            f"{', '.join(missing)} not installed: this runner needs the {extra} extra,"
            f' pip install "twinklr-pipeline[{extra}]"'
        )
        raise ModuleNotFoundError(msg, name=missing[0])


class ProcessRunner:
    """Runs the work in worker processes (trio-parallel; functions and values travel
    with cloudpickle, so lambdas and closures work). Cancellation kills the worker."""

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            msg = f"ProcessRunner max_workers must be an int >= 1 or None, got {max_workers!r}"
            raise ValueError(msg)
        require_extra("processes", "trio_parallel", "cloudpickle")
        self.max_workers = max_workers
        self._limiter: trio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"ProcessRunner(max_workers={self.max_workers!r})"

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)`` in a worker process."""
        import trio_parallel  # noqa: PLC0415 (the processes extra, loaded lazily)

        payload = pickle_work(fn, value, "a worker process")
        if self._limiter is None:
            self._limiter = trio_parallel.current_default_worker_limiter()
            if self.max_workers is not None:
                self._limiter = trio.CapacityLimiter(self.max_workers)
        return await trio_parallel.run_sync(
            call_pickled, payload, kill_on_cancel=True, limiter=self._limiter
        )


def pickle_work(fn: Callable[[Any], Any], value: Any, where: str) -> bytes:
    """``(fn, value)`` as cloudpickled bytes for ``call_pickled`` in another process;
    what cannot travel is a TypeError saying so."""
    return pickled((fn, value), where)


def pickled(obj: Any, where: str, pickler: Any = None) -> bytes:
    """``obj`` as cloudpickled bytes (by ``pickler``, cloudpickle or a copy of it), to
    send to ``where``; what cannot travel is a TypeError saying so."""
    if pickler is None:
        import cloudpickle  # noqa: PLC0415 (the extras that offload, lazily)

        pickler = cloudpickle

    try:
        return bytes(pickler.dumps(obj))
    except Exception as exc:
        msg = f"cannot send the work to {where}: {type(exc).__name__}: {exc}"
        raise TypeError(msg) from exc


def call_pickled(payload: bytes) -> Any:
    """In the worker: unpack ``(fn, value)`` and call ``fn(value)``."""
    import cloudpickle  # noqa: PLC0415 (runs in the worker process)

    fn, value = cloudpickle.loads(payload)
    return fn(value)


class SyncStage:
    """A stage whose work is a plain synchronous ``fn(input) -> output``, run off the
    Trio thread.

    The output is ``fn``'s return value; an exception is a failure (retried by the
    executor like any other, if the stage has a retry policy).

    Args:
        fn: The synchronous work.
        name: The stage's name (``fn``'s name by default).
        runner: Where ``fn`` runs: a [ThreadRunner][twinklr.core.pipeline.ThreadRunner],
            [ProcessRunner][twinklr.core.pipeline.ProcessRunner],
            [DaskRunner][twinklr.core.pipeline.DaskRunner] or
            [RayRunner][twinklr.core.pipeline.RayRunner]. None: the executor's
            ``runner``, else a worker thread.
    """

    __twinklr_loop__ = "trio"  # Trio code, on any host loop

    def __init__(
        self, fn: Callable[[Any], Any], *, name: str | None = None, runner: Runner | None = None
    ) -> None:
        given: object = fn
        if not callable(given):
            msg = f"SyncStage needs a callable, got {type(given).__name__}"
            raise TypeError(msg)
        self.fn = fn
        self.runner = runner
        self._name: str = name or str(getattr(fn, "__name__", type(fn).__name__))

    @property
    def name(self) -> str:
        """The stage's name (the function's, by default)."""
        return self._name

    def cache_code(self) -> tuple[object, ...]:
        """The code behind this stage's output, for cache keys: its function."""
        return (self.fn,)

    def __repr__(self) -> str:
        return f"SyncStage({self._name}, runner={self.runner!r})"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        """Run ``fn(input)`` on the chosen runner."""
        runner = self.runner
        if runner is None:
            executor = current_executor.get()
            runner = getattr(executor, "runner", None) or _THREADS
        with direct_output():  # (a result on its way when cancelled is still cached)
            output = await runner.run(self.fn, input)
        return StageResult.success(output, stage_name=self._name)


_THREADS = ThreadRunner()
