"""Reading the run history: the SQLite file the run store keeps, opened and read.

A run is one row; its stages' progress is one blob of columns (``_columns``); what
only some stages have (an error and its traceback, the errors of earlier attempts,
fan-out items, retries) is JSON beside it. The definition's graph is stored once per
fingerprint. A run still marked running whose process is gone (same host, no such
process) or that has not written for `STALE_AFTER_S` reads as ``interrupted``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._base._database import Database, create, database_file
from ._events import PipelineEvent
from ._records import RecordedRun, RecordedStage, RunState, stage_records, when
from ._replay import depths, events

#: The file used when the store is given a directory.
DEFAULT_FILENAME = "twinklr-runs.sqlite3"
#: A running run that has not written for this long reads as interrupted (its writer
#: refreshes the row at least every `HEARTBEAT_S`).
STALE_AFTER_S = 60.0
HEARTBEAT_S = 5.0
SCHEMA_VERSION = 4  # 2: answers to gates (responses); 3: suspended runs (suspensions);
# 4: when a definition was last written (definitions.written_at)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS definitions (
    fingerprint TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    graph TEXT NOT NULL,
    written_at REAL NOT NULL DEFAULT 0
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


#: The most runs one listing returns.
MAX_LIMIT = 100_000


def parse_limit(text: str) -> int:
    """``text`` as a listing's limit: a whole number from 1 to `MAX_LIMIT` in plain
    digits; `ValueError` naming the limit otherwise."""
    if not re.fullmatch(r"[0-9]{1,9}", text) or not 1 <= int(text) <= MAX_LIMIT:
        msg = f"limit must be a whole number from 1 to {MAX_LIMIT}, not {text!r}"
        raise ValueError(msg)
    return int(text)


#: A run id's prefix that finds it: literal hex, four characters at least.
_PREFIX = re.compile(r"[0-9a-f]{4,}")


class RunHistory:
    """The runs recorded in one SQLite file, read (`RunStore` writes them too).

    Args:
        path: The database file, or a directory to keep ``twinklr-runs.sqlite3`` in.
        busy_timeout_s: How long a write waits for another process's write.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_s: float = 10.0) -> None:
        self.path = database_file(Path(path), DEFAULT_FILENAME)
        self.host = socket.gethostname()
        self._db = Database(
            self.path, version=SCHEMA_VERSION, migrate=_migrate, busy_timeout_s=busy_timeout_s
        )

    @property
    def location(self) -> str:
        """The database file, as messages and ``--store`` name it."""
        return str(self.path)

    def _present(self) -> bool:
        """Whether anything can be recorded there yet (a file not made yet holds no run)."""
        return self.path.exists()

    def close(self) -> None:
        """Close the connection (the next call opens it again)."""
        self._db.close()

    def runs(
        self,
        *,
        pipeline: str | None = None,
        status: RunState | None = None,
        limit: int | None = None,
    ) -> list[RecordedRun]:
        """Recorded runs, newest first, of ``pipeline`` and in ``status`` if given, at most
        ``limit`` (from 1 to `MAX_LIMIT`; `ValueError` otherwise)."""
        if limit is not None and not (type(limit) is int and 1 <= limit <= MAX_LIMIT):
            msg = f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}"
            raise ValueError(msg)
        if not self._present():
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
        rows = self._db.locked(lambda db: db.execute(query, arguments).fetchall())
        records = [self._record(row) for row in rows]
        if derived:
            records = [record for record in records if record.status == status]
            if limit is not None:
                records = records[:limit]
        return records

    def get(self, run_id: str) -> RecordedRun | None:
        """The run ``run_id`` (a unique prefix of 4+ characters will do), or None."""
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
        return list(stage_records(ids, progress_blob, details))

    def segments(self, run_id: str) -> list[dict[str, Any]]:
        """A resumed run's segments before its last (its row holds the last): each one's
        start and end, how it ended, the stages that ran in it, the gates it waited at
        (``since``) and when they were answered (``answers``). Empty for a run that was
        never resumed."""
        row = self._row(run_id, "details")
        details = json.loads(row[0]) if row is not None and row[0] else {}
        return list(details.get("segments", ()))

    def graph(self, run_id: str) -> dict[str, Any] | None:
        """The definition the run ran: ``{"pipeline", "stages": [{"id", "inputs",
        "pattern", "critical", "code"}]}``."""
        row = self._row(run_id, "definition")
        return None if row is None else self.graph_of(row[0])

    def graph_of(self, definition: str) -> dict[str, Any]:
        """The graph stored under the definition fingerprint ``definition``."""
        row = self._db.locked(
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
        return events(record, stages, details.get("retries", ()), depths(graph))

    def waiting(self, run_id: str) -> list[dict[str, Any]]:
        """The gates (`WaitForInput`) of a running or suspended run that wait for input,
        as its last batch recorded them: ``{"stage_id", "prompt", "since"}`` each."""
        record = self.get(run_id)
        if record is None or record.status not in ("running", "waiting"):
            return []
        row = self._row(record.run_id, "details")
        details = json.loads(row[0]) if row is not None and row[0] else {}
        return list(details.get("waiting", ()))

    def _row(self, run_id: str, columns: str) -> tuple[Any, ...] | None:
        if not self._present():
            return None
        query = f"SELECT {columns} FROM runs WHERE run_id = ?"  # noqa: S608
        row = self._db.locked(lambda db: db.execute(query, (run_id,)).fetchone())
        if row is None and _PREFIX.fullmatch(run_id):  # (hex: no LIKE wildcard in it)
            like = f"SELECT {columns} FROM runs WHERE run_id LIKE ? LIMIT 2"  # noqa: S608
            rows = self._db.locked(lambda db: db.execute(like, (run_id + "%",)).fetchall())
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
        started = when(started_at)
        assert started is not None  # noqa: S101 (NOT NULL)
        return RecordedRun(
            run_id=run_id,
            pipeline=pipeline,
            definition=definition,
            input_fingerprint=input_fingerprint,
            status=status,
            started_at=started,
            finished_at=when(finished_at),
            duration_ms=duration_ms,
            error=error,
            stage_count=stage_count,
            host=host,
            pid=pid,
        )


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


def _migrate(db: sqlite3.Connection, _found: int) -> None:
    # Every table is created if missing: an older file gains the newer tables (and its
    # definitions the column they gained).
    create(db, _SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(definitions)")}
    if "written_at" not in columns:
        db.execute("ALTER TABLE definitions ADD COLUMN written_at REAL NOT NULL DEFAULT 0")
