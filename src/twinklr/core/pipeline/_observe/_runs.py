"""Run history: every run an executor makes, kept in one SQLite file.

A run is one row. Its stages are kept as columns in one blob, not as a row each: a
stage's status is one byte, its attempts four, its queued/started/finished times eight
each (ms since the run started, NaN when not reached). Writing a 10,000-stage run is a
few array conversions, not 10,000 inserts, which is what keeps recording within a few
per cent of the run it records. What only some stages have (an error and its traceback,
the errors of earlier attempts, fan-out items, retries) is JSON beside it. The
definition's graph is stored once per fingerprint.

The file is shared safely by several processes (WAL, a busy timeout), written by the
process whose run it is and read by anyone (``twinklr-pipeline runs``, the web view). A
run still marked running whose process is gone (same host, no such process) or that
has not written for `STALE_AFTER_S` reads as ``interrupted``: a killed process leaves
everything up to its last write.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import sqlite3
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import attrs

from .._base._database import use_wal
from .._values._status import StageStatus
from .._values._timing import ItemTiming, to_ms
from ._events import EventKind, PipelineEvent

T = TypeVar("T")

RunState = Literal["running", "succeeded", "failed", "cancelled", "interrupted", "waiting"]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)
StageState = Literal[
    "pending",
    "queued",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "skipped",
    "soft_failed",
    "cached",
    "cancelled",
    "not_started",
]

#: The file used when the store is given a directory.
DEFAULT_FILENAME = "twinklr-runs.sqlite3"
#: A running run that has not written for this long reads as interrupted (its writer
#: refreshes the row at least every `HEARTBEAT_S`).
STALE_AFTER_S = 60.0
HEARTBEAT_S = 5.0
SCHEMA_VERSION = 3  # 2: answers to gates (responses); 3: suspended runs (suspensions)

#: One byte per stage in the progress blob.
CODES: Mapping[bytes, StageState] = {
    b".": "pending",
    b"q": "queued",
    b"r": "running",
    b"w": "waiting",
    b"s": "succeeded",
    b"f": "failed",
    b"k": "skipped",
    b"o": "soft_failed",
    b"c": "cached",
    b"x": "cancelled",
    b"-": "not_started",
}
CODE_OF: Mapping[StageStatus, int] = {
    StageStatus.SUCCEEDED: ord("s"),
    StageStatus.FAILED: ord("f"),
    StageStatus.SKIPPED: ord("k"),
    StageStatus.SOFT_FAILED: ord("o"),
    StageStatus.CACHED: ord("c"),
    StageStatus.CANCELLED: ord("x"),
}
_TERMINAL_EVENT = {
    "succeeded": EventKind.STAGE_SUCCEEDED,
    "failed": EventKind.STAGE_FAILED,
    "skipped": EventKind.STAGE_SKIPPED,
    "soft_failed": EventKind.STAGE_SOFT_FAILED,
    "cached": EventKind.STAGE_CACHE_HIT,
    "cancelled": EventKind.STAGE_CANCELLED,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS definitions (
    fingerprint TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    graph TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    definition TEXT NOT NULL,
    input_fingerprint TEXT,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    error TEXT,
    stage_count INTEGER NOT NULL,
    duration_ms REAL,
    progress BLOB,
    details TEXT
);
CREATE TABLE IF NOT EXISTS responses (
    run_id TEXT NOT NULL,
    stage_id TEXT NOT NULL,
    value TEXT NOT NULL,
    answered_at REAL NOT NULL,
    taken INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, stage_id)
);
CREATE TABLE IF NOT EXISTS suspensions (
    run_id TEXT PRIMARY KEY,
    state BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_by_pipeline ON runs (pipeline, started_at);
"""

_SUMMARY = (
    "run_id, pipeline, definition, input_fingerprint, status, started_at, finished_at, "
    "updated_at, host, pid, error, stage_count, duration_ms"
)


def _pack(column: array[Any]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - the file is little-endian
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.blob = memoryview(blob)
        self.offset = 0

    def take(self, size: int) -> bytes:
        part = bytes(self.blob[self.offset : self.offset + size])
        if len(part) != size:
            msg = "a run's progress blob is cut short"
            raise ValueError(msg)
        self.offset += size
        return part

    def column(self, typecode: str, count: int) -> array[Any]:
        column = array(typecode)
        column.frombytes(self.take(count * column.itemsize))
        if sys.byteorder == "big":  # pragma: no cover
            column.byteswap()
        return column

    def count(self) -> int:
        return int.from_bytes(self.take(4), "little")


@attrs.frozen(kw_only=True)
class Items:
    """A fan-out stage's ended items, as columns (times: the run's clock, seconds)."""

    index: array[int]
    codes: bytes
    started: array[float]
    finished: array[float]
    attempts: array[int]


@attrs.frozen(kw_only=True)
class Progress:
    """Where every stage of a run is: the columns of its progress blob. Times are the
    run's clock readings in seconds (NaN: not reached); ``origin`` is its start."""

    origin: float
    codes: bytes
    """One byte per stage (see `CODES`)."""
    attempts: array[int]
    queued: array[float]
    started: array[float]
    finished: array[float]
    items: Mapping[int, Items] = attrs.field(factory=dict)
    """By stage index."""

    def encode(self) -> bytes:
        """The blob (little-endian): origin, stage count, the stage columns, then per
        fan-out stage its index, item count and item columns."""
        parts = [_pack(array("d", [self.origin])), len(self.codes).to_bytes(4, "little")]
        parts.append(self.codes)
        parts.extend(_pack(c) for c in (self.attempts, self.queued, self.started, self.finished))
        for stage, items in self.items.items():
            parts.append(stage.to_bytes(4, "little"))
            parts.append(len(items.codes).to_bytes(4, "little"))
            parts.append(_pack(items.index))
            parts.append(items.codes)
            parts.extend(_pack(c) for c in (items.started, items.finished, items.attempts))
        return b"".join(parts)

    @classmethod
    def decode(cls, blob: bytes) -> Progress:
        """The columns of a blob `encode` made."""
        reader = _Reader(blob)
        (origin,) = reader.column("d", 1)
        count = reader.count()
        codes = reader.take(count)
        attempts = reader.column("I", count)
        queued, started, finished = (reader.column("d", count) for _ in range(3))
        items: dict[int, Items] = {}
        while reader.offset < len(blob):
            stage, length = reader.count(), reader.count()
            index = reader.column("I", length)
            item_codes = reader.take(length)
            item_started, item_finished = reader.column("d", length), reader.column("d", length)
            items[stage] = Items(
                index=index,
                codes=item_codes,
                started=item_started,
                finished=item_finished,
                attempts=reader.column("I", length),
            )
        return cls(
            origin=origin,
            codes=codes,
            attempts=attempts,
            queued=queued,
            started=started,
            finished=finished,
            items=items,
        )

    def ms(self, clock: float) -> float | None:
        """A clock reading as ms since the run started, rounded as timelines are."""
        if math.isnan(clock):
            return None
        return to_ms(clock - self.origin)


@attrs.frozen(kw_only=True)
class RunBegin:
    """What a run's recorder writes first."""

    run_id: str
    pipeline: str
    definition: str
    graph: str
    input_fingerprint: str | None
    stage_count: int
    started_at: float
    resumed: bool = False
    """A suspended run resumed: its suspension is forgotten once it ends for good."""


@attrs.frozen(kw_only=True)
class RecordedRun:
    """One recorded run (`RunStore.runs`, `RunStore.get`)."""

    run_id: str
    pipeline: str
    """The pipeline's name."""
    definition: str
    """A fingerprint of the definition: its stages, their inputs, patterns and code."""
    input_fingerprint: str | None
    """A fingerprint of the initial input (None: it had none that could be computed)."""
    status: RunState
    """``running``, ``succeeded``, ``failed``, ``cancelled``, ``interrupted`` (still
    marked running, and its process is gone or has not written for a minute) or
    ``waiting`` (suspended until its gates are answered: ``PipelineExecutor.resume``)."""
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    """The run's own duration (Trio's clock), once it has finished."""
    error: str | None
    stage_count: int
    host: str
    pid: int

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (times in ISO 8601, UTC)."""
        fields = attrs.asdict(self)
        fields["started_at"] = self.started_at.isoformat()
        fields["finished_at"] = None if self.finished_at is None else self.finished_at.isoformat()
        return fields


@attrs.frozen(kw_only=True)
class RecordedStage:
    """One stage of a recorded run (`RunStore.stages`)."""

    id: str
    status: StageState
    """Where it is (``pending``, ``queued``, ``running``) or how it ended
    (a [StageStatus][twinklr.core.pipeline.StageStatus] value, or ``not_started``)."""
    queued_ms: float | None
    started_ms: float | None
    finished_ms: float | None
    attempts: int
    error: str | None = None
    traceback: str | None = None
    """The traceback of the exception behind a failure, as text."""
    attempt_errors: tuple[str, ...] = ()
    """The errors of attempts that were retried, in order."""
    items: tuple[ItemTiming, ...] = ()
    """A fan-out stage's items that have ended (once the run has, all of them)."""
    items_total: int | None = None
    """A fan-out stage's item count, once known."""
    branches: tuple[str, ...] | None = None
    """A routing stage's branches taken, once it has ended (None for other stages)."""
    answered_at: str | None = None
    """When a gate (`WaitForInput`) was answered (ISO 8601, UTC)."""

    @property
    def cached(self) -> bool:
        """Whether the stage was served from the cache."""
        return self.status == "cached"

    @property
    def duration_ms(self) -> float | None:
        """From start to finish, once it has finished."""
        if self.started_ms is None or self.finished_ms is None:
            return None
        return self.finished_ms - self.started_ms

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        fields = attrs.asdict(self, recurse=False)
        fields["attempt_errors"] = list(self.attempt_errors)
        fields["items"] = [
            {
                "index": item.index,
                "status": item.status.value,
                "started_ms": item.started_ms,
                "finished_ms": item.finished_ms,
                "attempts": item.attempts,
            }
            for item in self.items
        ]
        fields["cached"] = self.cached
        fields["duration_ms"] = self.duration_ms
        return fields


def _when(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


class RunStore:
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
        path: The database file, or a directory to keep ``twinklr-runs.sqlite3`` in
            (created if missing; it may be the cache's directory).
        busy_timeout_s: How long a write waits for another process's write.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / DEFAULT_FILENAME
        self.path = path
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self.host = socket.gethostname()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # -- the connection ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # one thread at a time (the lock)
            )
            try:
                use_wal(connection, self._busy_timeout_s)
                connection.execute("PRAGMA synchronous = NORMAL")
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                if version != SCHEMA_VERSION:
                    with _transaction(connection):
                        for statement in _SCHEMA.split(";\n"):
                            if statement.strip():
                                connection.execute(statement)
                        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return work(self._connect())

    def close(self) -> None:
        """Close the connection (the next call opens it again)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

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

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "INSERT OR IGNORE INTO definitions VALUES (?, ?, ?)",
                    (run.definition, run.pipeline, run.graph),
                )
                db.execute(
                    "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        run.run_id,
                        run.pipeline,
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
                        details,
                    ),
                )
                if status == "waiting" and suspension is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO suspensions VALUES (?, ?)",
                        (run.run_id, suspension),
                    )
                elif run.resumed and status in ("succeeded", "failed"):
                    db.execute("DELETE FROM suspensions WHERE run_id = ?", (run.run_id,))

        self._locked(work)

    # -- answering gates from another process ---------------------------------------

    def waiting(self, run_id: str) -> list[dict[str, Any]]:
        """The gates (`WaitForInput`) of a running or suspended run that wait for input,
        as its last batch recorded them: ``{"stage_id", "prompt", "since"}`` each."""
        record = self.get(run_id)
        if record is None or record.status not in ("running", "waiting"):
            return []
        row = self._row(record.run_id, "details")
        details = json.loads(row[0]) if row is not None and row[0] else {}
        return list(details.get("waiting", ()))

    def respond(self, run_id: str, stage_id: str, value: Any) -> str:
        """Answer gate ``stage_id`` of the running or suspended run ``run_id`` (a unique
        prefix will do) with ``value`` (JSON): a running run's own process picks the
        answer up with its next batch, a suspended run's resumption finds it. Returns the
        run's full id; `LookupError` says why not (no such run, neither running nor
        waiting, or that gate does not wait)."""
        record = self.get(run_id)
        if record is None:
            msg = f"no run {run_id!r} at {self.path}"
            raise LookupError(msg)
        waiting = [gate["stage_id"] for gate in self.waiting(record.run_id)]
        if stage_id not in waiting:
            state = (
                "does not wait there"
                if record.status in ("running", "waiting")
                else f"is not running or waiting ({record.status})"
            )
            listed = ", ".join(f"'{gate}'" for gate in waiting) or "none"
            msg = (
                f"run {record.run_id} {state}: no gate '{stage_id}' waits for input "
                f"(waiting: {listed})"
            )
            raise LookupError(msg)
        text = json.dumps(value)

        def work(db: sqlite3.Connection) -> None:
            with _transaction(db):
                db.execute(
                    "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?, 0)",
                    (record.run_id, stage_id, text, time.time()),
                )

        self._locked(work)
        return record.run_id

    def take_responses(self, run_id: str) -> list[tuple[str, Any]]:
        """The answers given to ``run_id``'s gates not taken yet (marked taken now)."""

        def work(db: sqlite3.Connection) -> list[tuple[str, Any]]:
            with _transaction(db):
                rows = db.execute(
                    "SELECT stage_id, value FROM responses WHERE run_id = ? AND taken = 0",
                    (run_id,),
                ).fetchall()
                db.execute("UPDATE responses SET taken = 1 WHERE run_id = ?", (run_id,))
            return [(stage_id, json.loads(value)) for stage_id, value in rows]

        return self._locked(work)

    # -- suspended runs -------------------------------------------------------------

    def suspension(self, run_id: str) -> tuple[RecordedRun, bytes, dict[str, Any]]:
        """What resuming ``run_id`` (a unique prefix will do) needs: its record, the
        state it was suspended with, and the answers given to its gates through the
        store (``runs respond``). `LookupError` says why there is none."""
        record = self.get(run_id)
        if record is None:
            msg = f"no run {run_id!r} at {self.path}"
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

        row, answers = self._locked(read)
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
            with _transaction(db):
                row = db.execute(f"SELECT {_SUMMARY} FROM runs WHERE run_id = ?", (run_id,))  # noqa: S608
                found = row.fetchone()
                status = None if found is None else self._record(found).status
                if status not in _RESUMABLE:
                    msg = f"run {run_id} is {status or 'gone'}: another process resumed it"
                    raise LookupError(msg)
                db.execute(
                    "UPDATE runs SET status = 'running', host = ?, pid = ?, updated_at = ? "
                    "WHERE run_id = ?",
                    (self.host, os.getpid(), time.time(), run_id),
                )
                db.execute("UPDATE responses SET taken = 1 WHERE run_id = ?", (run_id,))
                if state is not None:
                    db.execute("UPDATE suspensions SET state = ? WHERE run_id = ?", (state, run_id))

        self._locked(work)

    def unclaim(self, run_id: str) -> None:
        """Give back this process's `claim` of ``run_id`` when its resumption ended
        before recording anything (a run that did record keeps what it recorded)."""
        self._locked(
            lambda db: db.execute(
                "UPDATE runs SET status = 'waiting' "
                "WHERE run_id = ? AND status = 'running' AND host = ? AND pid = ?",
                (run_id, self.host, os.getpid()),
            )
        )

    # -- reading -----------------------------------------------------------------------

    def runs(
        self,
        *,
        pipeline: str | None = None,
        status: RunState | None = None,
        limit: int | None = None,
    ) -> list[RecordedRun]:
        """Recorded runs, newest first, of ``pipeline`` and in ``status`` if given."""
        if not self.path.exists():
            return []
        clauses, arguments = [], []
        if pipeline is not None:
            clauses.append("pipeline = ?")
            arguments.append(pipeline)
        derived = status in ("running", "interrupted")
        if status is not None:
            clauses.append("status = ?")
            arguments.append("running" if derived else status)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        bound = "" if limit is None or derived else f" LIMIT {int(limit)}"
        query = f"SELECT {_SUMMARY} FROM runs{where} ORDER BY started_at DESC{bound}"  # noqa: S608
        rows = self._locked(lambda db: db.execute(query, arguments).fetchall())
        records = [self._record(row) for row in rows]
        if derived:
            records = [record for record in records if record.status == status]
            if limit is not None:
                records = records[:limit]
        return records

    def get(self, run_id: str) -> RecordedRun | None:
        """The run ``run_id`` (a unique prefix of it will do), or None."""
        row = self._row(run_id, _SUMMARY)
        return None if row is None else self._record(row)

    def stages(self, run_id: str) -> list[RecordedStage]:
        """Each stage of the run, in the definition's order."""
        row = self._row(run_id, "progress, details, definition")
        if row is None:
            return []
        progress_blob, details_text, definition = row
        graph = self.graph_of(definition)
        ids = [stage["id"] for stage in graph["stages"]]
        details = json.loads(details_text) if details_text else {}
        return list(_stage_records(ids, progress_blob, details))

    def graph(self, run_id: str) -> dict[str, Any] | None:
        """The definition the run ran: ``{"pipeline", "stages": [{"id", "inputs",
        "pattern", "critical", "code"}]}``."""
        row = self._row(run_id, "definition")
        return None if row is None else self.graph_of(row[0])

    def graph_of(self, definition: str) -> dict[str, Any]:
        """The graph stored under the definition fingerprint ``definition``."""
        row = self._locked(
            lambda db: db.execute(
                "SELECT graph FROM definitions WHERE fingerprint = ?", (definition,)
            ).fetchone()
        )
        return json.loads(row[0]) if row else {"pipeline": "", "stages": []}

    def events(self, run_id: str) -> list[PipelineEvent]:
        """The run's events as far as it is recorded, in time order: the run's start,
        each stage's queued, started and final event, retries and fan-out items, and
        once it has ended, ``RUN_FINISHED``."""
        record = self.get(run_id)
        if record is None:
            return []
        stages = self.stages(record.run_id)
        row = self._row(record.run_id, "details")
        details = json.loads(row[0]) if row and row[0] else {}
        graph = self.graph_of(record.definition)
        return _events(record, stages, details.get("retries", ()), _depths(graph))

    def prune(self, *, older_than: float | dt.timedelta | None = None) -> int:
        """Forget runs that finished more than ``older_than`` ago (seconds or a
        timedelta; None: every finished run); returns how many went. Runs in progress
        and suspended runs (``waiting``) are kept, and the definitions no run names any
        more go with the last one."""
        if isinstance(older_than, dt.timedelta):
            older_than = older_than.total_seconds()
        if not self.path.exists():
            return 0
        cutoff = time.time() - (older_than or 0.0)

        def work(db: sqlite3.Connection) -> int:
            with _transaction(db):
                removed = db.execute(
                    "DELETE FROM runs WHERE finished_at IS NOT NULL AND finished_at <= ? "
                    "AND status != 'waiting'",
                    (cutoff,),
                ).rowcount
                db.execute(
                    "DELETE FROM definitions WHERE fingerprint NOT IN "
                    "(SELECT DISTINCT definition FROM runs)"
                )
                for table in ("suspensions", "responses"):
                    db.execute(
                        f"DELETE FROM {table} WHERE run_id NOT IN (SELECT run_id FROM runs)"  # noqa: S608
                    )
            return int(removed)

        removed = self._locked(work)
        # Interrupted runs never finish: the same age, by their last write.
        gone = [
            record.run_id
            for record in self.runs(status="interrupted")
            if record.started_at.timestamp() <= cutoff
        ]
        if gone:
            marks = ",".join("?" * len(gone))
            self._locked(
                lambda db: db.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", gone)  # noqa: S608
            )
        return removed + len(gone)

    def _row(self, run_id: str, columns: str) -> tuple[Any, ...] | None:
        if not self.path.exists():
            return None
        query = f"SELECT {columns} FROM runs WHERE run_id = ?"  # noqa: S608
        row = self._locked(lambda db: db.execute(query, (run_id,)).fetchone())
        if row is None and run_id:
            like = f"SELECT {columns} FROM runs WHERE run_id LIKE ? LIMIT 2"  # noqa: S608
            rows = self._locked(lambda db: db.execute(like, (run_id + "%",)).fetchall())
            row = rows[0] if len(rows) == 1 else None
        return row  # type: ignore[no-any-return]

    def _record(self, row: Sequence[Any]) -> RecordedRun:
        (
            run_id,
            pipeline,
            definition,
            input_fingerprint,
            status,
            started_at,
            finished_at,
            updated_at,
            host,
            pid,
            error,
            stage_count,
            duration_ms,
        ) = row
        if status == "running" and (
            (host == self.host and not _alive(pid)) or time.time() - updated_at > STALE_AFTER_S
        ):
            status = "interrupted"
        started = _when(started_at)
        assert started is not None  # noqa: S101 (NOT NULL)
        return RecordedRun(
            run_id=run_id,
            pipeline=pipeline,
            definition=definition,
            input_fingerprint=input_fingerprint,
            status=status,
            started_at=started,
            finished_at=_when(finished_at),
            duration_ms=duration_ms,
            error=error,
            stage_count=stage_count,
            host=host,
            pid=pid,
        )


#: What a run with a suspension may be when it is resumed: suspended, or a resumed run
#: that was cancelled or whose process died before it ended.
_RESUMABLE = ("waiting", "cancelled", "interrupted")


class _transaction:  # noqa: N801 (used as a statement)
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _stage_records(
    ids: Sequence[str], blob: bytes | None, details: Mapping[str, Any]
) -> Iterator[RecordedStage]:
    per_stage: Mapping[str, Any] = details.get("stages", {})
    totals: Mapping[str, int] = details.get("items_total", {})
    progress = Progress.decode(blob) if blob else None
    for index, stage_id in enumerate(ids):
        if progress is None or index >= len(progress.codes):
            yield RecordedStage(
                id=stage_id,
                status="pending",
                queued_ms=None,
                started_ms=None,
                finished_ms=None,
                attempts=0,
            )
            continue
        extra = per_stage.get(stage_id, {})
        columns = progress.items.get(index)
        items: tuple[ItemTiming, ...] = ()
        if columns is not None:
            items = tuple(
                ItemTiming(
                    index=columns.index[i],
                    status=StageStatus(CODES[columns.codes[i : i + 1]]),
                    started_ms=progress.ms(columns.started[i]) or 0.0,
                    finished_ms=progress.ms(columns.finished[i]) or 0.0,
                    attempts=columns.attempts[i],
                )
                for i in range(len(columns.codes))
            )
        yield RecordedStage(
            id=stage_id,
            status=CODES.get(progress.codes[index : index + 1], "pending"),
            queued_ms=progress.ms(progress.queued[index]),
            started_ms=progress.ms(progress.started[index]),
            finished_ms=progress.ms(progress.finished[index]),
            attempts=progress.attempts[index],
            error=extra.get("error"),
            traceback=extra.get("traceback"),
            attempt_errors=tuple(extra.get("attempt_errors", ())),
            branches=tuple(extra["branches"]) if "branches" in extra else None,
            answered_at=extra.get("answered_at"),
            items=items,
            items_total=totals.get(stage_id),
        )


def _depths(graph: Mapping[str, Any]) -> dict[str, int]:
    """Each stage's depth in the graph (entry stages 0)."""
    inputs = {stage["id"]: stage["inputs"] for stage in graph["stages"]}
    depths: dict[str, int] = {}

    def depth(stage_id: str) -> int:
        known = depths.get(stage_id)
        if known is None:
            depths[stage_id] = 0  # a cycle (never recorded: refused by validation)
            known = depths[stage_id] = 1 + max(
                (depth(i) for i in inputs.get(stage_id, ()) if i in inputs), default=-1
            )
        return known

    for stage_id in inputs:
        depth(stage_id)
    return depths


def _events(
    record: RecordedRun,
    stages: Sequence[RecordedStage],
    retries: Sequence[Sequence[Any]],
    depths: Mapping[str, int],
) -> list[PipelineEvent]:
    """A run's events rebuilt from its record, sorted by time; at equal times, a stage
    before those that depend on it, and a stage's own in the order a run makes them
    (queued, started, retries, items, its end)."""
    timed: list[tuple[float, int, int, int, PipelineEvent]] = []
    last = len(depths) + 1

    def add(time_ms: float, rank: int, **fields: Any) -> None:
        stage = fields.get("stage")
        depth = (-1 if rank == 0 else last) if stage is None else depths.get(stage, 0)
        event = PipelineEvent(
            time_ms=time_ms, pipeline=record.pipeline, run_id=record.run_id, **fields
        )
        timed.append((time_ms, depth, rank, len(timed), event))

    add(0.0, 0, kind=EventKind.RUN_STARTED)
    for stage in stages:
        if stage.queued_ms is not None:
            add(stage.queued_ms, 1, kind=EventKind.STAGE_QUEUED, stage=stage.id)
        if stage.started_ms is not None:
            add(stage.started_ms, 2, kind=EventKind.STAGE_STARTED, stage=stage.id)
        done = 0
        for item in sorted(stage.items, key=lambda item: item.finished_ms):
            ok = item.status not in (StageStatus.FAILED, StageStatus.CANCELLED)
            done += ok
            add(
                item.finished_ms,
                4,
                kind=EventKind.ITEM_FINISHED,
                stage=stage.id,
                item=item.index,
                attempt=item.attempts,
                done=done,
                total=stage.items_total,
            )
        terminal = _TERMINAL_EVENT.get(stage.status)
        if terminal is not None and stage.finished_ms is not None:
            add(
                stage.finished_ms,
                5,
                kind=terminal,
                stage=stage.id,
                attempt=stage.attempts or None,
                error=stage.error,
            )
    for stage_id, item, attempt, error, delay_ms, time_ms in retries:
        failed = {"stage": stage_id, "item": item, "attempt": attempt, "error": error}
        add(time_ms, 3, kind=EventKind.ATTEMPT_FAILED, **failed)
        add(time_ms, 3, kind=EventKind.STAGE_RETRYING, delay_ms=delay_ms, **failed)
    if record.status not in ("running", "interrupted") and record.duration_ms is not None:
        add(
            record.duration_ms,
            6,
            kind=EventKind.RUN_FINISHED,
            success=record.status == "succeeded",
            error=record.error,
        )
    timed.sort(key=lambda entry: entry[:4])
    return [entry[4] for entry in timed]
