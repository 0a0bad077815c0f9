"""A run's recorder: the one writer task that keeps a run store up to date.

It runs beside the run's stages. Every `INTERVAL_S` it takes a snapshot of the run (on
the Trio thread, between stage steps: where every stage is, as `Progress` columns) and
writes it from a worker thread, skipping a write when nothing changed unless the row's
heartbeat is due; a run shorter than `FIRST_WRITE_S` is written once, at its end. The
run's end is written by `finish`, shielded, before the run returns. Any write that
fails is a warning and the end of recording for that run, never a failure of the run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._contract import RunStoreProtocol
from ._reading import HEARTBEAT_S
from ._records import RunBegin, RunState

if TYPE_CHECKING:
    from .._kinds._gate import Gates

#: Seconds before a run's first write: a run shorter than this is written once, at its
#: end (a thread hand-off and a commit at the start would cost a short run more than
#: its stages do). A process killed before then leaves no record of the run.
FIRST_WRITE_S = 0.05
#: Seconds between two tries of a store whose write failed (a server restarting).
RETRY_S = 5.0

#: Seconds between two snapshots of a running run (a watcher sees a stage's end within
#: this, plus its own polling).
INTERVAL_S = 0.25

Snapshot = Callable[[bool], tuple[bytes, str]]
"""``snapshot(final)``: the run's progress blob and details JSON (``final``: the run has
ended, so a stage that never ran is ``not_started``)."""


class RunRecorder:
    """Writes one run into a run store, off the stages' path."""

    def __init__(
        self,
        store: RunStoreProtocol,
        begin: RunBegin,
        snapshot: Snapshot,
        log: Any,
        gates: Gates | None = None,
    ) -> None:
        self.store = store
        self.begin = begin
        self.snapshot = snapshot
        self.log = log
        self.gates = gates
        self.failing = False  # the last write failed: retried after RETRY_S, warned once
        self._retry_at = 0.0
        self._closed = False
        self._wake = trio.Event()
        self._last: tuple[bytes, str] | None = None

    async def write_behind(self) -> None:
        """Record the run's progress until `close`: first after `FIRST_WRITE_S`, then
        every `INTERVAL_S` when something changed (at least every `HEARTBEAT_S`)."""
        delay = FIRST_WRITE_S
        written_at = -HEARTBEAT_S
        while True:
            with trio.move_on_after(delay):
                await self._wake.wait()
            if self._closed:
                return
            delay = INTERVAL_S
            if self.gates is not None and self.gates.waiting():
                await self._take_answers(self.gates)
            current = self.snapshot(False)  # noqa: FBT003 (the snapshot's one flag)
            now = trio.current_time()
            if current == self._last and now - written_at < HEARTBEAT_S:
                continue
            written = await self._write(
                functools.partial(
                    self.store.write,
                    self.begin,
                    status="running",
                    progress=current[0],
                    details=current[1],
                )
            )
            if written:
                self._last, written_at = current, now

    async def _take_answers(self, gates: Gates) -> None:
        """Answers given through the store (``twinklr-pipeline runs respond``, from any
        process) to this run's waiting gates."""
        try:
            answers = await trio.to_thread.run_sync(self.store.take_responses, self.begin.run_id)
        except Exception as exc:  # noqa: BLE001 - the gates still answer through the handle
            self.log.warning("run_answers_unread", store=self.store.location, error=str(exc))
            return
        for stage_id, value in answers:
            try:
                gates.respond(stage_id, value)
            except LookupError as exc:  # answered meanwhile, or gone: the first answer won
                self.log.warning("run_answer_ignored", stage=stage_id, reason=str(exc))
            except ValueError as exc:  # not of the gate's type: it waits for another
                gates.refused[stage_id] = str(exc)
                self.log.warning("run_answer_refused", stage=stage_id, reason=str(exc))
                forget = functools.partial(self.store.forget_response, self.begin.run_id, stage_id)
                await trio.to_thread.run_sync(forget)

    def close(self) -> None:
        """The run's stages have ended: the writer stops taking snapshots."""
        self._closed = True
        self._wake.set()

    async def finish(
        self,
        status: RunState,
        error: str | None,
        duration_ms: float,
        suspension: bytes | None = None,
    ) -> None:
        """Record how the run ended (shielded: a cancelled run is recorded too), with
        what resuming it needs when it was suspended."""
        progress, details = self.snapshot(True)  # noqa: FBT003
        with trio.CancelScope(shield=True):
            await self._write(
                last=True,
                call=lambda: self.store.write(
                    self.begin,
                    status=status,
                    progress=progress,
                    details=details,
                    error=error,
                    duration_ms=duration_ms,
                    suspension=suspension,
                ),
            )

    async def _write(self, call: Callable[[], None], *, last: bool = False) -> bool:
        """Write with ``call``. A store that fails never fails the run: the first failure
        is one warning, and the run goes on unrecorded, trying again at most every
        `RETRY_S` (and for its ``last`` write, how it ended) until the store is back (a
        server restarted), which is said too. Whether it was written."""
        now = trio.current_time()
        if self.failing and now < self._retry_at and not last:
            return False
        try:
            await trio.to_thread.run_sync(call)
        except Exception as exc:  # noqa: BLE001 - the run goes on unrecorded; say so
            self._retry_at = now + RETRY_S
            if not self.failing:
                self.failing = True
                self.log.warning(
                    "run_record_failed",
                    store=self.store.location,
                    error=f"{type(exc).__name__}: {exc}",
                )
            return False
        if self.failing:
            self.failing = False
            self.log.info("run_record_resumed", store=self.store.location)
        return True
