"""A run's success-only write-behind: entries queued as stages succeed, saved in
batches by a task beside the run that outlives fail-fast cancellation and finishes its
saves when the run is cancelled from outside, so every stage that succeeded is kept."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ._store import CacheRecord

if TYPE_CHECKING:
    from ._notices import Notices
    from ._store import CacheStore

#: How long one save may take; it is shielded from the run's cancellation meanwhile.
SAVE_TIMEOUT_S = 30.0


class WriteBehind:
    """The queue of a run's entries and the task that saves them (``sync``: each entry
    can be waited for until its batch is saved, see `committed`)."""

    def __init__(self, store: CacheStore, notices: Notices, *, sync: bool = False) -> None:
        self.store = store
        self.notices = notices
        self.sync = sync
        # Key -> set once the batch holding its entry was saved (or failed), when sync.
        self._commits: dict[str, trio.Event] = {}
        send, receive = trio.open_memory_channel[CacheRecord](math.inf)
        self._send, self._receive = send, receive

    def queue(self, record: CacheRecord) -> None:
        """Save ``record`` in the next batch."""
        if self.sync:
            self._commits[record.key] = trio.Event()
        self._send.send_nowait(record)

    async def committed(self, key: str) -> None:
        """Wait until the entry queued under ``key`` is saved or its save failed (at once
        when none is waiting)."""
        commit = self._commits.get(key)
        if commit is not None:
            await commit.wait()

    async def run(self) -> None:
        """Save queued records in batches until `close`.

        Each save is shielded (for at most ``SAVE_TIMEOUT_S``): cancelling the run from
        outside lets the batch in hand, and then what is still queued, reach the store
        before the cancellation goes on.
        """
        try:
            async for record in self._receive:
                await self._save_shielded([record, *self._drain()])
        finally:
            leftover = self._drain()
            if leftover:
                await self._save_shielded(leftover)

    def close(self) -> None:
        """No more writes: `run` saves what is queued and ends."""
        self._send.close()

    def _drain(self) -> list[CacheRecord]:
        batch = []
        while True:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return batch

    async def _save_shielded(self, batch: list[CacheRecord]) -> None:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + SAVE_TIMEOUT_S
            try:
                await self.store.save(batch)
            except Exception as exc:  # noqa: BLE001 - a full or read-only disk: run uncached
                error = f"{type(exc).__name__}: {exc}"
                self._lost(batch, "cache_write_failed", f"could not be written ({error})", error)
        if scope.cancelled_caught:
            self._lost(batch, "cache_write_timed_out", f"took over {SAVE_TIMEOUT_S:g} s to write")
        if self._commits:
            for record in batch:
                commit = self._commits.pop(record.key, None)
                if commit is not None:
                    commit.set()

    def _lost(self, batch: list[CacheRecord], event: str, what: str, error: str = "") -> None:
        self.notices.mark_uncached([record.stage for record in batch])
        fields = {"error": error} if error else {}
        text = f"the cache {what}: outputs of the run were not saved (see uncached_stages)"
        self.notices.problem(event, text, lost=len(batch), **fields)
