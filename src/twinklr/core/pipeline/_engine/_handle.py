"""Background runs: `PipelineExecutor.start` runs a pipeline in a caller's
nursery and hands back a `RunHandle` to watch, cancel and await it.

The handle keeps every event of its run in order (three per stage, plus retries and
fan-out items), so any number of readers can follow the run from its first event at
their own pace: a slow reader lags, it never holds the run back and never loses an
event. The history lives as long as the handle.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._actor import is_cancellation
from ._result import build_result

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._kinds._gate import InputRequest
    from .._observe._events import EventRelay, PipelineEvent
    from .._values._results import PipelineResult
    from ._run import Run


class RunStatus(enum.Enum):
    """Where a background run is."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """A critical stage failed (or the run task itself crashed)."""
    CANCELLED = "cancelled"
    """``RunHandle.cancel()``, or the nursery the run was started in, cancelled it."""
    WAITING = "waiting"
    """Suspended: its only remaining work was gates waiting for input
    (``result.waiting_stages``); ``PipelineExecutor.resume`` goes on from there."""


class EventHistory:
    """Every event of one run, in order, for readers that come and go (an event sink)."""

    def __init__(self, relay: EventRelay | None) -> None:
        self.events: list[PipelineEvent] = []
        self.closed = False
        #: What LLMs streamed, by stage and fan-out item, in pieces (``STAGE_TOKENS``).
        self.streamed: dict[tuple[str, int | None], list[str]] = {}
        self._relay = relay
        self._lot = trio.lowlevel.ParkingLot()

    @property
    def dropped(self) -> int:
        """Events the caller's own channel lost (the history loses none)."""
        return self._relay.dropped if self._relay is not None else 0

    def emit(self, event: PipelineEvent) -> None:
        """Keep ``event``, wake the readers waiting for it, and relay it on."""
        self.events.append(event)
        if event.text is not None and event.stage is not None:  # (only STAGE_TOKENS)
            self.streamed.setdefault((event.stage, event.item), []).append(event.text)
        if self._lot:
            self._lot.unpark_all()
        if self._relay is not None:
            self._relay.emit(event)

    def close(self) -> None:
        """No more events: readers end once they have read them all."""
        if self.closed:
            return
        self.closed = True
        self._lot.unpark_all()
        if self._relay is not None:
            self._relay.close()

    async def relay(self) -> None:
        """Forward to the caller's channel, when ``start`` was given one."""
        if self._relay is not None:
            await self._relay.relay()

    async def wait_for(self, count: int) -> None:
        """Return once there are more than ``count`` events or no more will come."""
        while len(self.events) <= count and not self.closed:
            await self._lot.park()


class RunEvents:
    """An async iterator over a run's events from its first one (``RUN_STARTED``) to its
    last (``RUN_FINISHED``), live: it waits for the next while the run goes on."""

    def __init__(self, history: EventHistory) -> None:
        self._history = history
        self._next = 0

    def __aiter__(self) -> RunEvents:
        return self

    async def __anext__(self) -> PipelineEvent:
        history = self._history
        if self._next < len(history.events):
            await trio.lowlevel.checkpoint()
        else:
            await history.wait_for(self._next)
            if self._next >= len(history.events):
                raise StopAsyncIteration
        event = history.events[self._next]
        self._next += 1
        return event


class RunHandle:
    """A run going on in the background (see
    [PipelineExecutor.start][twinklr.core.pipeline.PipelineExecutor.start]).

    ``cancel()`` ends it promptly with its stages cancelled; ``await wait()`` returns its
    [PipelineResult][twinklr.core.pipeline.PipelineResult] whatever happened (a cancelled
    run's result has ``cancelled=True`` and names its cancelled stages); ``events()``
    follows it live.
    """

    def __init__(self, run: Run, history: EventHistory) -> None:
        self.run_id: str = run.run_id
        """The run's id (also in its events, logs and result)."""
        self.pipeline: str = run.plan.name
        """The pipeline's name."""
        self._run = run
        self._history = history
        self._scope = trio.CancelScope()
        self._done = trio.Event()
        self._result: PipelineResult | None = None
        self._status = RunStatus.RUNNING

    def __repr__(self) -> str:
        return f"<RunHandle {self.pipeline!r} run_id={self.run_id} status={self._status.value}>"

    @property
    def status(self) -> RunStatus:
        """Running, or how the run ended."""
        return self._status

    @property
    def result(self) -> PipelineResult | None:
        """The result once the run has ended, else None (``wait()`` waits for it)."""
        return self._result

    def cancel(self) -> None:
        """Cancel the run; returns at once and may be called any number of times.
        A run that has already ended is left as it ended."""
        self._run.stopped = True  # a stage queued but not yet started never starts
        self._scope.cancel()

    async def wait(self) -> PipelineResult:
        """Wait for the run to end and return its result (never raises for the run's
        own failures or cancellation)."""
        await self._done.wait()
        assert self._result is not None  # noqa: S101 (set before _done)
        return self._result

    def waiting(self) -> list[InputRequest]:
        """The run's gates waiting for input (`WaitForInput` stages), oldest first."""
        return self._run.gates.waiting()

    def respond(self, stage_id: str, value: Any) -> None:
        """Answer gate ``stage_id`` with ``value``, its output; its dependents go on.

        Raises `LookupError` naming the gates that wait when ``stage_id`` is not one of
        them (unknown, not waiting yet, or already answered).
        """
        self._run.gates.respond(stage_id, value)

    def suspend(self) -> None:
        """End the run as waiting (status ``WAITING``, ``result.waiting_stages``) once
        its only remaining work is gates waiting for input, now if it already is: the
        gates are withdrawn and nothing else is cancelled. A later process goes on with
        ``PipelineExecutor.resume(run_id, responses=...)``.

        Raises:
            RuntimeError: The run cannot be resumed: its executor has no cache and run
                store to keep it in.
        """
        if self._run.on_suspend is None:
            msg = (
                f"run {self.run_id} cannot be suspended: its executor needs a cache (what "
                "finished is served from it) and a run store (the run is kept there): "
                "PipelineExecutor(cache=SQLiteCacheStore(path), runs=RunStore(path))"
            )
            raise RuntimeError(msg)
        self._run.suspend()

    def events(self) -> RunEvents:
        """Every event of the run from its first, then live until it finishes; each call
        is a reader of its own."""
        return RunEvents(self._history)

    def streamed(self) -> dict[tuple[str, int | None], str]:
        """The text LLM providers have streamed so far (``provider.stream``), by stage id
        and fan-out item (None outside fan-out), in the order the streams began: what a
        page or a log shows of a long answer while it grows."""
        return {key: "".join(pieces) for key, pieces in self._history.streamed.items()}

    async def _main(
        self,
        drive: Callable[[Callable[[], None]], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The run's task: drive the run inside the handle's cancel scope, then settle
        the result, whatever ended it."""
        cancelled = False
        try:
            with self._scope:
                await drive(lambda: task_status.started(self))
        except BaseException as exc:
            # The caller's nursery cancelled us (or the run task crashed): the result
            # says so, and the exception goes on to the nursery.
            cancelled = is_cancellation(exc)
            self._settle(cancelled=cancelled, crashed=not cancelled, exc=exc)
            raise
        self._settle(cancelled=self._scope.cancelled_caught, crashed=False)

    def _settle(self, *, cancelled: bool, crashed: bool, exc: BaseException | None = None) -> None:
        run = self._run
        self._history.close()
        result = build_result(run, cancelled=cancelled)
        if crashed:
            error = f"the run task ended with {type(exc).__name__}: {exc}"
            result = _with_error(result, error)
        self._result = result
        if cancelled:
            self._status = RunStatus.CANCELLED
        elif result.waiting_stages:
            self._status = RunStatus.WAITING
        elif result.success:
            self._status = RunStatus.SUCCEEDED
        else:
            self._status = RunStatus.FAILED
        self._done.set()


def _with_error(result: PipelineResult, error: str) -> PipelineResult:
    return attrs.evolve(result, success=False, error=result.error or error)
