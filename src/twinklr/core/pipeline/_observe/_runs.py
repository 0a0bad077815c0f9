"""The run store: every run an executor makes, kept in one SQLite file.

It writes what a run's recorder hands it, takes answers to a run's gates from any
process, keeps what a suspended run is resumed from (claimed by one process at a time),
and forgets old runs; reading is `RunHistory`'s. The file is shared safely by several
processes (WAL, a busy timeout), written by the process whose run it is and read by
anyone (``twinklr-pipeline runs``, the web view); a killed process leaves everything up
to its last write.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import time
from typing import Any

from .._base._database import check_usable, transaction
from .._values._answers import schema_problem
from ._reading import _SUMMARY, RunHistory
from ._records import RecordedRun, RunBegin, RunState
from ._segments import with_segments

#: The most of a gate's input (as JSON text) a run store records; the rest is cut.
INPUT_CHARS = 1_000_000


class RunStore(RunHistory):
    """The runs an executor made, in one SQLite file (``runs=RunStore(...)``).

    Every run of a [PipelineExecutor][twinklr.core.pipeline.PipelineExecutor] given
    the store is recorded: its pipeline and a fingerprint of its definition and input,
    when it started and ended and how, and per stage its status, times, attempts and
    their errors (with tracebacks), cache hits and fan-out items. A run's writer
    batches its writes (about four a second) beside the run, so recording costs the
    stages nothing on their path; a run in progress can be watched from another
    process, and one whose process was killed reads as ``interrupted`` with what it
    had written. A write that fails never fails the run: it is logged as a warning and
    the run goes on unrecorded.

    Args:
        path: The database file (an existing file, or a ``.sqlite``, ``.sqlite3`` or
            ``.db`` path), or else a directory to keep ``twinklr-runs.sqlite3`` in
            (created if missing; it may be the cache's directory).
        busy_timeout_s: How long a write waits for another process's write.

    Raises:
        ValueError: The store could never record a run there (a path under a file, a
            place that cannot be written, a file that is not a SQLite database): said
            now, not by every run.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        super().__init__(path, busy_timeout_s=busy_timeout_s)
        check_usable(self.path, f"RunStore({os.fspath(path)!r}) cannot record runs", database=True)
        self._defined: set[str] = set()  # runs running whose definition row is written
        self._known: dict[str, float] = {}  # definition -> when this store last wrote it

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- writing (the recorder's calls, from a worker thread) -------------------------

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
        """Record ``run`` as it stands: running (its progress so far) or ended; a run
        that ends ``waiting`` keeps ``suspension``, what resuming it needs."""
        now = time.time()
        finished_at = None if status == "running" else now
        pipeline = _storable(run.pipeline)
        # The graph (a large text for a large definition) goes with a run's first write
        # only (the rows written since name it, so nothing prunes it), and not even then
        # when this store wrote it lately (prune spares a definition written within
        # twice that long, named by a run or not).
        defined = run.run_id in self._defined
        defined = defined or now - self._known.get(run.definition, -_KNOWN_S) < _KNOWN_S
        graph = "" if defined else _storable(run.graph)
        details = _storable(details)
        error = None if error is None else _storable(error)

        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                kept = with_segments(db, run, details) if run.resumed else details
                if not defined:
                    db.execute(
                        "INSERT INTO definitions VALUES (?, ?, ?, ?) ON CONFLICT (fingerprint)"
                        " DO UPDATE SET written_at = excluded.written_at",
                        (run.definition, pipeline, graph, now),
                    )
                db.execute(
                    _WRITE_RUN,
                    (
                        run.run_id,
                        pipeline,
                        run.definition,
                        run.input_fingerprint,
                        status,
                        run.started_at,
                        finished_at,
                        now,
                        self.host,
                        os.getpid(),
                        error,
                        run.stage_count,
                        duration_ms,
                        progress,
                        kept,
                    ),
                )
                if status == "waiting" and suspension is not None:
                    db.execute(
                        "INSERT INTO suspensions VALUES (?, ?)"
                        " ON CONFLICT (run_id) DO UPDATE SET state = excluded.state",
                        (run.run_id, suspension),
                    )
                elif run.resumed and status in ("succeeded", "failed"):
                    db.execute("DELETE FROM suspensions WHERE run_id = ?", (run.run_id,))

        self._db.locked(work)
        if not defined:
            self._known[run.definition] = now
        if status == "running":
            self._defined.add(run.run_id)
        else:
            self._defined.discard(run.run_id)

    # -- answering gates from another process ---------------------------------------

    def respond(self, run_id: str, stage_id: str, value: Any) -> str:
        """Answer gate ``stage_id`` of the running or suspended run ``run_id`` (a unique
        prefix will do) with ``value`` (JSON): a running run's own process picks the
        answer up with its next batch, a suspended run's resumption finds it. Returns the
        run's full id; `LookupError` says why not (no such run, neither running nor
        waiting, that gate does not wait, or it has been answered already); `ValueError`
        names the field when ``value`` is not of the gate's answer type (as its recorded
        JSON schema says)."""
        record, gate = self._waiting_gate(run_id, stage_id)
        schema = gate.get("answer_schema")
        if schema is not None and (problem := schema_problem(schema, value)):
            kind = gate.get("answer_type", "answer")
            msg = f"the answer to gate '{stage_id}' is not a valid {kind}: {problem}"
            raise ValueError(msg)
        text = json.dumps(value)

        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                # (one statement: of two processes answering at once, one is refused)
                added = db.execute(
                    "INSERT INTO responses VALUES (?, ?, ?, ?, 0)"
                    " ON CONFLICT (run_id, stage_id) DO NOTHING",
                    (record.run_id, stage_id, text, time.time()),
                ).rowcount
                if not added:
                    msg = f"gate '{stage_id}' of run {record.run_id} has already been answered"
                    raise LookupError(msg)

        self._db.locked(work)
        return record.run_id

    def _waiting_gate(self, run_id: str, stage_id: str) -> tuple[RecordedRun, dict[str, Any]]:
        """The run and its gate ``stage_id`` as recorded waiting; `LookupError` says why
        not (no such run, neither running nor waiting, that gate does not wait)."""
        record = self.get(run_id)
        if record is None:
            msg = f"no run {run_id!r} at {self.location}"
            raise LookupError(msg)
        gates = {gate["stage_id"]: gate for gate in self.waiting(record.run_id)}
        if stage_id not in gates:
            state = (
                "does not wait there"
                if record.status in ("running", "waiting")
                else f"is not running or waiting ({record.status})"
            )
            listed = ", ".join(f"'{gate}'" for gate in gates) or "none"
            msg = (
                f"run {record.run_id} {state}: no gate '{stage_id}' waits for input "
                f"(waiting: {listed})"
            )
            raise LookupError(msg)
        return record, gates[stage_id]

    def recorded_input(self, run_id: str, stage_id: str) -> Any:
        """The input gate ``stage_id`` of ``run_id`` recorded (what approving it
        answers); `LookupError` when it does not wait, `ValueError` when the input was
        too big to be recorded whole."""
        _, gate = self._waiting_gate(run_id, stage_id)
        if gate.get("input_cut"):
            msg = (
                f"gate '{stage_id}' has an input of {gate['input_chars']} characters, more "
                "than the run store keeps: give the answer itself"
            )
            raise ValueError(msg)
        return gate.get("input")

    def forget_response(self, run_id: str, stage_id: str) -> None:
        """Drop the answer given to gate ``stage_id`` of ``run_id`` (the run refused it:
        not of the gate's type), so another may be given."""

        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                query = "DELETE FROM responses WHERE run_id = ? AND stage_id = ?"
                db.execute(query, (run_id, stage_id))

        self._db.locked(work)

    def take_responses(self, run_id: str) -> list[tuple[str, Any]]:
        """The answers given to ``run_id``'s gates not taken yet (marked taken now)."""

        def work(db: sqlite3.Connection) -> list[tuple[str, Any]]:
            with transaction(db):
                rows = db.execute(
                    "UPDATE responses SET taken = 1 WHERE run_id = ? AND taken = 0"
                    " RETURNING stage_id, value, answered_at",
                    (run_id,),
                ).fetchall()
            rows.sort(key=lambda row: row[2])
            return [(stage_id, json.loads(value)) for stage_id, value, _ in rows]

        return self._db.locked(work)

    # -- suspended runs -------------------------------------------------------------

    def suspension(self, run_id: str) -> tuple[RecordedRun, bytes, dict[str, Any]]:
        """What resuming ``run_id`` (a unique prefix of 4+ characters will do) needs: its
        record, the state it was suspended with, and the answers given to its gates
        through the store (``runs respond``). `LookupError` says why there is none."""
        record = self.get(run_id)
        if record is None:
            msg = f"no run {run_id!r} at {self.location}"
            raise LookupError(msg)

        def read(db: sqlite3.Connection) -> tuple[Any, list[Any]]:
            row = db.execute(
                "SELECT state FROM suspensions WHERE run_id = ?", (record.run_id,)
            ).fetchone()
            answers = db.execute(
                "SELECT stage_id, value FROM responses WHERE run_id = ? ORDER BY answered_at",
                (record.run_id,),
            ).fetchall()
            return row, answers

        row, answers = self._db.locked(read)
        if row is None or record.status not in _RESUMABLE:
            msg = (
                f"run {record.run_id} is not suspended ({record.status}): "
                "there is nothing waiting for input to resume"
            )
            if row is not None and record.status == "running":
                msg = f"run {record.run_id} is running: it is being resumed (pid {record.pid})"
            raise LookupError(msg)
        return record, bytes(row[0]), {stage: json.loads(value) for stage, value in answers}

    def claim(self, run_id: str, state: bytes | None = None) -> None:
        """Mark the suspended run ``run_id`` as running in this process (its answers in
        the store as taken, its suspension replaced by ``state`` when given: what a
        later resumption needs if this one does not end), at once for every process: of
        two resuming it, one gets the `LookupError`."""

        def work(db: sqlite3.Connection) -> None:
            with transaction(db):
                row = db.execute(f"SELECT {_SUMMARY} FROM runs WHERE run_id = ?", (run_id,))  # noqa: S608
                found = row.fetchone()
                status = None if found is None else self._record(found).status
                if status not in _RESUMABLE:
                    msg = f"run {run_id} is {status or 'gone'}: another process resumed it"
                    raise LookupError(msg)
                # Only the row as read: of two processes (or hosts) claiming it at once,
                # the one that updates second finds it changed.
                claimed = db.execute(
                    "UPDATE runs SET status = 'running', host = ?, pid = ?, updated_at = ? "
                    "WHERE run_id = ? AND status = ? AND updated_at = ?",
                    (self.host, os.getpid(), time.time(), run_id, found[4], found[7]),
                ).rowcount
                if not claimed:
                    msg = f"run {run_id} is running: another process resumed it"
                    raise LookupError(msg)
                db.execute("UPDATE responses SET taken = 1 WHERE run_id = ?", (run_id,))
                if state is not None:
                    db.execute("UPDATE suspensions SET state = ? WHERE run_id = ?", (state, run_id))

        self._db.locked(work)

    def unclaim(self, run_id: str) -> None:
        """Give back this process's `claim` of ``run_id`` when its resumption ended
        before recording anything (a run that did record keeps what it recorded)."""
        self._db.locked(
            lambda db: db.execute(
                "UPDATE runs SET status = 'waiting' "
                "WHERE run_id = ? AND status = 'running' AND host = ? AND pid = ?",
                (run_id, self.host, os.getpid()),
            )
        )

    def prune(self, *, older_than: float | dt.timedelta | None = None) -> int:
        """Forget runs that finished more than ``older_than`` ago (seconds or a
        timedelta; None: every finished run); returns how many went. Runs in progress
        and every run that can be resumed (suspended, or a resumption cancelled or
        interrupted) are kept, and the definitions no run names any more go with the
        last one."""
        if isinstance(older_than, dt.timedelta):
            older_than = older_than.total_seconds()
        if not self._present():
            return 0
        cutoff = time.time() - (older_than or 0.0)

        def work(db: sqlite3.Connection) -> int:
            with transaction(db):
                removed = db.execute(
                    "DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at <= ? "
                    "AND status != 'waiting' AND run_id NOT IN (SELECT run_id FROM suspensions)",
                    (cutoff,),
                ).rowcount
                db.execute(
                    "DELETE FROM definitions WHERE written_at <= ? AND fingerprint NOT IN "
                    "(SELECT DISTINCT definition FROM runs)",
                    (time.time() - 2 * _KNOWN_S,),
                )
                for table in ("suspensions", "responses"):
                    db.execute(
                        f"DELETE FROM {table} WHERE run_id NOT IN (SELECT run_id FROM runs)"  # noqa: S608
                    )
            return int(removed)

        removed = self._db.locked(work)
        # Interrupted runs never finish: the same age, by their last write.
        kept = self._db.locked(
            lambda db: {run_id for (run_id,) in db.execute("SELECT run_id FROM suspensions")}
        )
        gone = [
            record.run_id
            for record in self.runs(status="interrupted")
            if record.started_at.timestamp() <= cutoff and record.run_id not in kept
        ]
        if gone:
            marks = ",".join("?" * len(gone))
            self._db.locked(
                lambda db: db.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", gone)  # noqa: S608
            )
        return removed + len(gone)


#: A run's row written (again: every column but its id replaced).
_COLUMNS = (
    "pipeline definition input_fingerprint status started_at finished_at updated_at host pid"
    " error stage_count duration_ms progress details"
)
_WRITE_RUN = "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)" + (  # noqa: S608 (fixed names)
    " ON CONFLICT (run_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _COLUMNS.split())
)

#: How long a store trusts that a definition it wrote is still there (prune keeps one
#: written within twice that, whether a run names it or not).
_KNOWN_S = 1800.0

#: What a run with a suspension may be when it is resumed: suspended, or a resumed run
#: that was cancelled or whose process died before it ended.
_RESUMABLE = ("waiting", "cancelled", "interrupted")


def _storable(text: str) -> str:
    """``text`` as every store can keep it: a lone surrogate (a file name that is not
    UTF-8, through ``os.fsdecode``) written as its escape, ``\\udcff``, and a NUL
    (which PostgreSQL's text refuses) as ``\\x00``, instead of failing the whole
    record."""
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "backslashreplace")
    return text
