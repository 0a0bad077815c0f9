"""The channels between stages: each dependency edge carries its value on its own Trio
memory channel.

Creating a memory channel costs more than running a trivial stage (about 5 µs and 2 KB),
and a channel is only busy between its producer finishing and its consumer starting. So
channels come from a pool: the producer takes an empty one per outgoing edge and sends
its output on it; the consumer receives from it and gives it back, empty. A channel whose
consumer never starts (the run stopped first) is dropped, never pooled, so a value can
never cross from one run into another. The pool only holds empty channels, up to
``POOL_LIMIT``; it is shared by every run in the process (list ``append``/``pop`` are
atomic, so runs on several threads may share it too).
"""

from __future__ import annotations

from typing import Any

import trio

#: At most this many idle channels are kept.
POOL_LIMIT = 4096

Channel = tuple[trio.MemorySendChannel[Any], trio.MemoryReceiveChannel[Any]]

_pool: list[Channel] = []


def send_on_new_channel(value: Any) -> Channel:
    """An empty channel from the pool (or a new one) with ``value`` sent on it."""
    try:
        channel = _pool.pop()
    except IndexError:
        channel = trio.open_memory_channel(1)  # (un-subscripted: cheaper per call)
    channel[0].send_nowait(value)
    return channel


def receive_and_recycle(channel: Channel | None) -> Any:
    """The value waiting on ``channel``; the emptied channel goes back to the pool."""
    if channel is None:  # pragma: no cover - a stage starts only once all inputs are sent
        msg = "an input edge has no channel: the stage started before its input was sent"
        raise RuntimeError(msg)
    value = channel[1].receive_nowait()
    if len(_pool) < POOL_LIMIT:
        _pool.append(channel)
    return value


def idle_channels() -> int:
    """How many empty channels the pool holds (for tests and diagnostics)."""
    return len(_pool)
