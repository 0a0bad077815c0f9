"""What a run store is to the rest of the package: `RunStoreProtocol`.

The executor records through it, ``resume`` and the gates read and claim through it, the
``runs`` command and the web view read through it; none of them knows how a store keeps
its runs (SQL stays inside the stores). `RunStore` keeps them in one SQLite file, for one
host; a store shared by several hosts implements the same protocol.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._events import PipelineEvent
    from ._records import RecordedRun, RecordedStage, RunBegin, RunState


@runtime_checkable
class RunStoreProtocol(Protocol):
    """What the executor, ``resume``, gates, the ``runs`` command and the web view need
    of a run store ([RunStore][twinklr.core.pipeline.RunStore] is one).

    Every method blocks (callers run them in worker threads) and may be called from
    several threads, processes and hosts at once: a run is written by the process whose
    run it is and read, answered and resumed from anywhere. A run is named by its id or,
    where the method says so, by a unique prefix of 4+ characters of it. Errors:
    `LookupError` for a run or gate that is not there (its message says why), `ValueError`
    for a value that cannot be taken (naming it).
    """

    @property
    def location(self) -> str:
        """Where the runs are kept, as messages and the ``--store`` option name it (a
        path, or a URL without its password)."""
        ...

    # Recording (the executor's recorder, from a worker thread).

    def write(
        self,
        run: RunBegin,
        *,
        status: RunState,
        progress: bytes,
        details: str,
        error: str | None = None,
        duration_ms: float | None = None,
        suspension: bytes | None = None,
    ) -> None:
        """Record ``run`` as it stands (replacing what was recorded of it): running with
        its ``progress`` so far, or ended; one that ends ``waiting`` keeps
        ``suspension``, what resuming it needs, until a resumption of it ends."""
        ...

    # Reading (the runs command, the web view).

    def runs(
        self,
        *,
        pipeline: str | None = None,
        status: RunState | None = None,
        limit: int | None = None,
    ) -> list[RecordedRun]:
        """Recorded runs, newest first, of ``pipeline`` and in ``status`` if given, at
        most ``limit``."""
        ...

    def get(self, run_id: str) -> RecordedRun | None:
        """The run ``run_id`` (a unique prefix will do), or None."""
        ...

    def stages(self, run_id: str) -> list[RecordedStage]:
        """Each stage of the run, in the definition's order."""
        ...

    def segments(self, run_id: str) -> list[dict[str, Any]]:
        """A resumed run's segments before its last; empty for one never resumed."""
        ...

    def graph(self, run_id: str) -> dict[str, Any] | None:
        """The definition the run ran (``{"pipeline", "stages": [...]}``), or None."""
        ...

    def events(self, run_id: str) -> list[PipelineEvent]:
        """The run's events as far as it is recorded, in time order."""
        ...

    def waiting(self, run_id: str) -> list[dict[str, Any]]:
        """The gates of a running or suspended run that wait for input."""
        ...

    # Gates, answered from any process.

    def respond(self, run_id: str, stage_id: str, value: Any) -> str:
        """Answer gate ``stage_id`` of ``run_id`` (a unique prefix will do) with
        ``value``; returns the run's full id. Once only: a second answer is a
        `LookupError`, as is a gate that does not wait; a value not of the gate's answer
        type is a `ValueError` naming the field."""
        ...

    def recorded_input(self, run_id: str, stage_id: str) -> Any:
        """The input gate ``stage_id`` of ``run_id`` waits with (what approving it
        answers)."""
        ...

    def forget_response(self, run_id: str, stage_id: str) -> None:
        """Drop the answer given to gate ``stage_id`` (the run refused it), so another
        may be given."""
        ...

    def take_responses(self, run_id: str) -> list[tuple[str, Any]]:
        """The answers given to ``run_id``'s gates and not taken yet, marked taken."""
        ...

    # Suspended runs, resumed by one process at a time.

    def suspension(self, run_id: str) -> tuple[RecordedRun, bytes, dict[str, Any]]:
        """What resuming ``run_id`` (a unique prefix will do) needs: its record, the
        state it was suspended with, and the answers given to its gates."""
        ...

    def claim(self, run_id: str, state: bytes | None = None) -> None:
        """Mark the suspended run as running in this process, at once for every process
        and host: of two claiming it, one gets the `LookupError`. ``state`` replaces its
        suspension (what a later resumption needs if this one does not end)."""
        ...

    def unclaim(self, run_id: str) -> None:
        """Give back this process's `claim` when its resumption recorded nothing."""
        ...

    # Upkeep.

    def prune(self, *, older_than: float | dt.timedelta | None = None) -> int:
        """Forget runs that finished more than ``older_than`` ago (every finished run
        when None), never one in progress or one that can be resumed; returns how many
        went."""
        ...

    def close(self) -> None:
        """Let go of connections (the next call opens them again)."""
        ...
