"""Live events: every stage transition as a frozen value, relayed to a caller's channel.

Back-pressure policy (bounded buffer, drop-oldest): the run never waits for a consumer.
Events go into a buffer of ``buffer_size`` events that a relay task forwards to the
caller's memory channel with ``await send``; when a slow consumer lets the buffer fill,
the oldest buffered event is dropped and counted. When the run ends, the relay forwards
what is still buffered for at most ``flush_timeout_s`` seconds, then drops the rest; the
last event, ``RUN_FINISHED``, says how many were dropped. The executor never closes the
caller's channel.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Any, Protocol

import attrs
import trio


class EventKind(enum.Enum):
    """What happened."""

    RUN_STARTED = "run_started"
    STAGE_QUEUED = "stage_queued"
    """All of the stage's inputs have arrived."""
    STAGE_STARTED = "stage_started"
    ATTEMPT_FAILED = "attempt_failed"
    """An attempt failed and another will follow (``stage_retrying`` comes next)."""
    STAGE_RETRYING = "stage_retrying"
    STAGE_SUCCEEDED = "stage_succeeded"
    STAGE_FAILED = "stage_failed"
    STAGE_SKIPPED = "stage_skipped"
    STAGE_SOFT_FAILED = "stage_soft_failed"
    STAGE_CACHE_HIT = "stage_cache_hit"
    STAGE_CANCELLED = "stage_cancelled"
    ITEM_FINISHED = "item_finished"
    """A fan-out item ended: ``done`` of ``total`` items have succeeded (a failed or
    cancelled item is not counted; its ``error`` says why), for progress bars."""
    INPUT_REQUESTED = "input_requested"
    """A gate (`WaitForInput`) opened its request: ``handle.waiting()`` lists it."""
    INPUT_RECEIVED = "input_received"
    """A gate's request was answered (``handle.respond``)."""
    STAGE_TOKENS = "stage_tokens"
    """Text an LLM is streaming for the stage (its ``item``, for fan-out): ``text`` is
    what came since the last such event (deltas are gathered, a few a second)."""
    RUN_FINISHED = "run_finished"

    __hash__ = object.__hash__  # by identity, as members compare (Enum's is Python code)


#: The event that ends each stage's life (exactly one per stage that started).
TERMINAL_KINDS = frozenset(
    {
        EventKind.STAGE_SUCCEEDED,
        EventKind.STAGE_FAILED,
        EventKind.STAGE_SKIPPED,
        EventKind.STAGE_SOFT_FAILED,
        EventKind.STAGE_CACHE_HIT,
        EventKind.STAGE_CANCELLED,
    }
)


@attrs.frozen(kw_only=True, slots=False)
class PipelineEvent:
    """One transition of a run or of one of its stages.

    Frozen, compared and hashed by value. Not slotted on purpose: the fields a kind does
    not use are None on the class, so the executor's hot path builds an event as a
    seven-entry dict (see `stage_event`).
    """

    kind: EventKind
    """What happened."""
    pipeline: str
    """The pipeline's name."""
    run_id: str
    """The run's id."""
    time_ms: float
    """When, in ms since the run started (Trio's clock)."""
    stage: str | None = None
    """The stage id (None for run events)."""
    attempt: int | None = None
    """The attempt number, for attempt and retry events and terminal ones."""
    item: int | None = None
    """The fan-out item's index, for item events (and retries of an item)."""
    error: str | None = None
    """What went wrong, for failures."""
    delay_ms: float | None = None
    """The backoff before the next attempt, for retry events."""
    done: int | None = None
    """Items ended so far, for ``ITEM_FINISHED``."""
    total: int | None = None
    """Items in all, for ``ITEM_FINISHED``."""
    success: bool | None = None
    """The run's outcome, for ``RUN_FINISHED``."""
    dropped: int | None = None
    """Events dropped by back-pressure, for ``RUN_FINISHED``."""
    text: str | None = None
    """Streamed text, for ``STAGE_TOKENS``."""

    def as_log_fields(self) -> dict[str, Any]:
        """The fields worth logging (those that are set), without kind/pipeline/run."""
        fields = attrs.asdict(self, recurse=False)
        for name in ("kind", "pipeline", "run_id", "time_ms"):
            del fields[name]
        return {name: value for name, value in fields.items() if value is not None}


# The optional fields default to None on the class itself, so an event whose instance
# dict lacks them (one made by stage_event) reads them as None, like the constructor's.
for _field in attrs.fields(PipelineEvent):
    if _field.default is None:
        setattr(PipelineEvent, _field.name, None)

_new = object.__new__
_setattr = object.__setattr__


def stage_event(  # noqa: PLR0917 (positional on purpose: this is the hot path)
    kind: EventKind,
    pipeline: str,
    run_id: str,
    time_ms: float,
    stage: str,
    attempt: int | None,
    error: str | None,
) -> PipelineEvent:
    """The same frozen `PipelineEvent` as the constructor makes, for the three
    events every stage sends, built by setting its instance dict in one go (the
    executor's hot path: about a third of the constructor's cost)."""
    event: PipelineEvent = _new(PipelineEvent)
    _setattr(
        event,
        "__dict__",
        {
            "kind": kind,
            "pipeline": pipeline,
            "run_id": run_id,
            "time_ms": time_ms,
            "stage": stage,
            "attempt": attempt,
            "error": error,
        },
    )
    return event


class EventSink(Protocol):
    """Where a run's events go: `EventRelay`, or a run handle's history."""

    @property
    def dropped(self) -> int:
        """Events lost to back-pressure so far."""

    def emit(self, event: PipelineEvent) -> None:
        """Take ``event``; never blocks."""

    def close(self) -> None:
        """The run has ended: no more events."""

    async def relay(self) -> None:
        """Forward the events, beside the run, until closed (may return at once)."""


class EventRelay:
    """Forwards a run's events to a caller's channel without ever slowing the run."""

    def __init__(
        self,
        channel: trio.MemorySendChannel[PipelineEvent],
        *,
        buffer_size: int = 1024,
        flush_timeout_s: float = 1.0,
    ) -> None:
        self.channel = channel
        self.buffer: deque[PipelineEvent] = deque()
        self.buffer_size = buffer_size
        self.flush_timeout_s = flush_timeout_s
        self.dropped = 0
        self._wake = trio.Event()
        self._closed = False
        self._scope = trio.CancelScope()

    def emit(self, event: PipelineEvent) -> None:
        """Hand ``event`` on, or buffer it (dropping the oldest when full); never blocks."""
        if not self.buffer and not self._closed:
            # Nothing queued ahead of it: straight into the caller's channel if it has
            # room, with no relay task switch per event.
            try:
                self.channel.send_nowait(event)
            except trio.WouldBlock:
                pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone()
                return
            else:
                return
        if len(self.buffer) >= self.buffer_size:
            self.buffer.popleft()
            self.dropped += 1
        self.buffer.append(event)
        self._wake.set()

    def close(self) -> None:
        """No more events: the relay forwards what is buffered, for at most
        ``flush_timeout_s`` from now (a send in progress included), and ends."""
        self._closed = True
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + self.flush_timeout_s)
        self._wake.set()

    async def relay(self) -> None:
        """Forward buffered events until closed and flushed, or out of time."""
        with self._scope:
            while True:
                while self.buffer:
                    event = self.buffer.popleft()
                    try:  # room in the caller's buffer: no task switch per event
                        self._send_nowait(event)
                    except trio.WouldBlock:
                        await self._send(event)
                if self._closed:
                    break
                await self._wake.wait()
                self._wake = trio.Event()
        self.dropped += len(self.buffer)
        self.buffer.clear()

    def _send_nowait(self, event: PipelineEvent) -> None:
        try:
            self.channel.send_nowait(event)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._gone()

    def _gone(self) -> None:
        # The consumer went away (or closed our end): nobody is listening any more.
        self.dropped += 1 + len(self.buffer)
        self.buffer.clear()
        self._closed = True

    async def _send(self, event: PipelineEvent) -> None:
        try:
            await self.channel.send(event)
        except trio.Cancelled:
            self.dropped += 1  # out of time with this one in hand
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._gone()
