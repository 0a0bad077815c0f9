"""The embedded default store: one SQLite file, shared safely by several processes.

WAL mode (readers never wait for the writer), ``synchronous=NORMAL`` (a killed process
loses nothing committed; a power cut may lose the last transactions), a busy timeout for
processes that write at once, and one transaction per ``save`` so a write is all or
nothing. Every call runs in a worker thread, never on the Trio loop; one connection per
store, used by one thread at a time.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, TypeVar

import trio

from ._store import CacheEntry, CacheRecord

T = TypeVar("T")

#: The file used when the store is given a directory.
DEFAULT_FILENAME = "twinklr-cache.sqlite3"
#: Keys per query when fetching by key (below SQLite's limit on bound parameters).
_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    stage TEXT NOT NULL,
    item INTEGER,
    run_group TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_group ON entries (pipeline, run_group);
"""


# A key already stored keeps the run group it was first written in: a run of another
# input that writes it again (an indexed lookup finds it anyway) must not take it away
# from the runs that read it with their group.
_UPSERT = """
INSERT INTO entries VALUES (?,?,?,?,?,?,?,?)
ON CONFLICT (key) DO UPDATE SET
    stage = excluded.stage, item = excluded.item, created_at = excluded.created_at,
    expires_at = excluded.expires_at, payload = excluded.payload
"""


class SQLiteCacheStore:
    """A cache in one SQLite file.

    ``path`` is the database file, or a directory to keep ``twinklr-cache.sqlite3`` in
    (created if missing). ``busy_timeout_s`` bounds how long a write waits for another
    process's write.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        path = Path(path)
        if path.is_dir() or str(path).endswith(("/", "\\")):
            path = path / DEFAULT_FILENAME
        self.path = path
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._clock = clock
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({str(self.path)!r})"

    # -- the connection, in worker threads --------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # used by one worker thread at a time (the lock)
            )
            try:
                connection.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.executescript(_SCHEMA)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            return work(self._connect())

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Not abandoned on cancel: a started transaction finishes (or rolls back) first.
        return await trio.to_thread.run_sync(self._locked, work)

    # -- the store protocol -------------------------------------------------------------

    async def load(self, pipeline: str, group: str) -> dict[str, str]:
        """Key -> payload for every unexpired entry of ``pipeline`` in ``group``."""
        now = self._clock()

        def read(db: sqlite3.Connection) -> dict[str, str]:
            rows = db.execute(
                "SELECT key, payload FROM entries WHERE pipeline = ? AND run_group = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (pipeline, group, now),
            )
            return dict(rows.fetchall())

        return await self._run(read)

    async def keys(self, pipeline: str) -> AbstractSet[str]:
        """The keys of every entry of ``pipeline``."""

        def read(db: sqlite3.Connection) -> set[str]:
            rows = db.execute("SELECT key FROM entries WHERE pipeline = ?", (pipeline,))
            return {key for (key,) in rows}

        return await self._run(read)

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, str]:
        """Key -> payload for those of ``keys`` that are unexpired entries of ``pipeline``."""
        now = self._clock()
        wanted = list(dict.fromkeys(keys))

        def read(db: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, payload FROM entries WHERE key IN ({marks})"  # noqa: S608
                    " AND pipeline = ? AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, pipeline, now),
                )
                found.update(rows.fetchall())
            return found

        return await self._run(read)

    async def save(self, records: Sequence[CacheRecord]) -> None:
        """Write ``records`` in one transaction (an entry with the same key is replaced,
        but keeps its run group)."""
        rows = [
            (r.key, r.pipeline, r.stage, r.item, r.group, r.created_at, r.expires_at, r.payload)
            for r in records
        ]

        def write(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, rows)
            except BaseException:
                # SQLite has already rolled back after some errors (SQLITE_FULL): a
                # second ROLLBACK would fail and hide the real error.
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

        if rows:
            await self._run(write)

    async def entries(self, pipeline: str | None = None) -> list[CacheEntry]:
        """Every entry (of ``pipeline``), expired ones included, oldest first."""
        where, args = _where(pipeline, None)

        columns = "key, pipeline, stage, item, created_at, expires_at, length(payload)"
        query = f"SELECT {columns} FROM entries {where} ORDER BY created_at, key"  # noqa: S608

        def read(db: sqlite3.Connection) -> list[CacheEntry]:
            rows = db.execute(query, args).fetchall()
            return [
                CacheEntry(
                    key=key,
                    pipeline=pipe,
                    stage=stage,
                    item=item,
                    created_at=created,
                    expires_at=expires,
                    size=size,
                )
                for key, pipe, stage, item, created, expires, size in rows
            ]

        return await self._run(read)

    async def clear(
        self, pipeline: str | None = None, *, stage: str | None = None, expired_only: bool = False
    ) -> int:
        """Delete matching entries; return how many were deleted."""
        where, args = _where(pipeline, stage)
        if expired_only:
            where += (" AND" if where else "WHERE") + " expires_at IS NOT NULL AND expires_at <= ?"
            args.append(self._clock())

        def delete(db: sqlite3.Connection) -> int:
            query = f"DELETE FROM entries {where}"  # noqa: S608 (fixed clauses, bound values)
            cursor = db.execute(query, args)
            return cursor.rowcount

        return await self._run(delete)

    async def aclose(self) -> None:
        """Close the connection (a later call opens it again)."""

        def close(_db: sqlite3.Connection) -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        if self._connection is not None:
            await self._run(close)


def _where(pipeline: str | None, stage: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if pipeline is not None:
        clauses.append("pipeline = ?")
        args.append(pipeline)
    if stage is not None:
        clauses.append("stage = ?")
        args.append(stage)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args
