"""The channels of a run: one memory channel per dependency edge.

Creating a Trio memory channel costs more than running a trivial stage, so a run's
channels are handed back to its plan when the run ends and reused by the next run of the
same definition. A run hands them back only once every channel is empty again, so a
value can never leak from one run into another.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._plan import Plan


class Wiring:
    """``inbox[c]``: receive ends of stage ``c``'s input edges, in input order;
    ``outbox[p]``: send ends of stage ``p``'s output edges."""

    __slots__ = ("inbox", "outbox")

    def __init__(self, deps: Sequence[Sequence[int]]) -> None:
        self.inbox: list[list[trio.MemoryReceiveChannel[Any]]] = []
        self.outbox: list[list[trio.MemorySendChannel[Any]]] = [[] for _ in deps]
        open_channel = trio.open_memory_channel  # (un-subscripted: cheaper per call)
        for inputs in deps:
            receivers: list[trio.MemoryReceiveChannel[Any]] = []
            for producer in inputs:
                send, receive = open_channel(1)
                self.outbox[producer].append(send)
                receivers.append(receive)
            self.inbox.append(receivers)


def acquire(plan: Plan) -> Wiring:
    """Channels for a new run of ``plan``: a spare set, or a new one."""
    spares = plan.spare_wiring
    return spares.pop() if spares else Wiring(plan.deps)


def release(plan: Plan, wiring: Wiring, unread: Sequence[int]) -> None:
    """Empty the inboxes of the ``unread`` stages (those that never started), then keep
    ``wiring`` for the next run (one spare set per plan)."""
    for stage in unread:
        for receive in wiring.inbox[stage]:
            with contextlib.suppress(trio.WouldBlock):
                receive.receive_nowait()
    if not plan.spare_wiring:
        plan.spare_wiring.append(wiring)
