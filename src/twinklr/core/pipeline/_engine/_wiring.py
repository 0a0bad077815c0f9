"""The channels between stages: each dependency edge carries its value on a memory
channel of its own, a one-shot channel.

An edge carries exactly one value in a run (its producer's output, sent once), so its
channel is a one-shot channel: a Trio channel (``trio.abc.Channel``) with room for one
value, sent once and received once. It is a single small object (48 bytes, about
0.2 µs to make) where a Trio memory channel is five objects and a deque (about 1.8 KB
and 8 µs to open, and several cache misses per value in a large DAG), which was the
largest cost an edge had. Nothing is pooled or shared: a channel lives as long as its value
waits, and one whose consumer never starts (the run stopped first) goes with the run.

The executor only uses the non-blocking calls (a stage's task starts once every input
was sent, so its reads never park), but the channel is a complete one: ``await
receive()`` parks until the value is sent, ``async for`` ends after the one value, and
closing wakes a parked receiver.
"""

from __future__ import annotations

from typing import Any

import trio

# What the slot holds when it has no value: none sent yet / sent and taken / closed.
_EMPTY: Any = object()
_TAKEN: Any = object()
_CLOSED: Any = object()


class OneShotChannel(trio.abc.Channel[Any]):
    """A memory channel that carries one value from one sender to one receiver.

    Created empty (``OneShotChannel()``) or already holding its value
    (``OneShotChannel(value)``, what a finishing stage does for each outgoing edge).
    A second send raises ``trio.ClosedResourceError``; a receive after the value was
    taken raises ``trio.EndOfChannel``; anything after `close` raises
    ``trio.ClosedResourceError``.
    """

    __slots__ = ("_receiver", "_value")

    def __init__(self, value: Any = _EMPTY) -> None:
        self._value = value
        self._receiver: trio.lowlevel.Task | None = None

    def send_nowait(self, value: Any) -> None:
        """Send the one value (never blocks: there is room for it)."""
        if self._value is not _EMPTY:
            msg = "a one-shot channel carries one value" if self._value is not _CLOSED else None
            raise trio.ClosedResourceError(msg)
        self._value = value
        if self._receiver is not None:
            trio.lowlevel.reschedule(self._receiver)
            self._receiver = None

    async def send(self, value: Any) -> None:
        """Send the one value, with the checkpoint an async send owes its caller."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self.send_nowait(value)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def receive_nowait(self) -> Any:
        """The value if it was sent (``trio.WouldBlock`` if not yet)."""
        value = self._value
        if value is _EMPTY:
            raise trio.WouldBlock
        if value is _TAKEN:
            raise trio.EndOfChannel
        if value is _CLOSED:
            raise trio.ClosedResourceError
        self._value = _TAKEN
        return value

    async def receive(self) -> Any:
        """The value, waiting for it to be sent if need be."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._value is not _EMPTY:
            value = self.receive_nowait()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return value
        if self._receiver is not None:
            msg = "another task is already receiving on this channel"
            raise trio.BusyResourceError(msg)
        self._receiver = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._receiver = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return self.receive_nowait()

    def close(self) -> None:
        """Close the channel: an unsent or untaken value is dropped, and a task waiting
        in `receive` wakes to ``trio.ClosedResourceError``."""
        self._value = _CLOSED
        if self._receiver is not None:
            trio.lowlevel.reschedule(self._receiver)
            self._receiver = None

    async def aclose(self) -> None:
        """`close`, with a checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()


#: Stands in for the channel of an edge whose value has not been sent: reading it raises
#: ``trio.ClosedResourceError`` (a stage starts only once every input was sent).
NOT_SENT = OneShotChannel()
NOT_SENT.close()
