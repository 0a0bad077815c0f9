"""The embedded default store: one SQLite file, shared safely by several processes.

WAL mode (readers never wait for the writer), ``synchronous=NORMAL`` (a killed process
loses nothing committed; a power cut may lose the last transactions), a busy timeout for
processes that write at once, and one transaction per ``save`` so a write is all or
nothing. Every call runs in a worker thread, never on the Trio loop; one connection per
store, used by one thread at a time.

Large payloads (above ``INLINE_MAX``) are files in a directory beside the database
(``<file>-blobs``, see ``_blobs``); a file no row names (its writer was killed) is
removed by `SQLiteCacheStore.prune`.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, TypeVar

import trio

from .._base._database import Database, create, database_file, transaction
from ._blobs import BlobFolder
from ._store import CacheEntry, CacheRecord, Holds, Kept, Payload, evictable, payload_size

T = TypeVar("T")

#: The file used when the store is given a directory.
DEFAULT_FILENAME = "twinklr-cache.sqlite3"
#: Payloads up to this size are kept in the database, larger ones in files beside it.
INLINE_MAX = 256 * 1024
#: SQLite instructions between two checks of a read's deadline.
_PROGRESS_STEPS = 1000
#: Keys per query when fetching by key (below SQLite's limit on bound parameters).
_CHUNK = 500
#: The columns a read takes.
_READ = "key, payload, file, size, used_at"
#: How stale an unbounded store lets an entry's last use get before a read rewrites it.
_TOUCH_GRAIN_S = 3600.0
#: The schema's version (``PRAGMA user_version``); a file of an older one is emptied
#: (its entries were written under an older key format and can never hit).
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    stage TEXT NOT NULL,
    item INTEGER,
    run_group TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    used_at REAL NOT NULL,
    size INTEGER NOT NULL,
    payload BLOB,
    file TEXT
);
CREATE INDEX IF NOT EXISTS entries_by_group ON entries (pipeline, run_group);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used_at);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries
BEGIN UPDATE totals SET bytes = bytes + new.size; END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries
BEGIN UPDATE totals SET bytes = bytes - old.size; END;
CREATE TRIGGER IF NOT EXISTS entries_resized AFTER UPDATE OF size ON entries
BEGIN UPDATE totals SET bytes = bytes - old.size + new.size; END;
"""

# A key already stored keeps the run group it was first written in: a run of another
# input that writes it again (an indexed lookup finds it anyway) must not take it away
# from the runs that read it with their group.
_UPSERT = """
INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (key) DO UPDATE SET
    stage = excluded.stage, item = excluded.item, created_at = excluded.created_at,
    expires_at = excluded.expires_at, used_at = excluded.used_at, size = excluded.size,
    payload = excluded.payload, file = excluded.file
"""


class SQLiteCacheStore:
    """A cache in one SQLite file, shared safely by several processes.

    Payloads over 256 KiB are kept as files beside it, in ``<file>-blobs/``.

    Args:
        path: The database file, or a directory to keep ``twinklr-cache.sqlite3`` in
            (created if missing).
        max_bytes: A bound on the payloads it keeps: beyond it a save evicts the
            entries used least recently, except those runs in progress in this process
            hold (what they read and wrote). None: unbounded.
        read_only: Open it without ever writing (automatic when the file cannot be
            written): it is read from, and saves fail (the run goes on uncached,
            warned once).
        busy_timeout_s: How long a write waits for another process's write.
        read_timeout_s: How long a read may take, in real time (SQLite interrupts it:
            the run goes on with fewer hits).
        clock: The wall clock entries are dated by (for tests).
    """

    #: Reads are bounded by the store itself, in real time (see ``read_timeout_s``).
    bounds_reads = True

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int | None = None,
        read_only: bool = False,
        busy_timeout_s: float = 10.0,
        read_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        path = database_file(path, DEFAULT_FILENAME)
        self.path = path
        self.blobs = path.with_name(path.name + "-blobs")
        self._blobs = BlobFolder(self.blobs)
        self.max_bytes = max_bytes
        self.read_only = read_only or (path.exists() and not os.access(path, os.W_OK))
        self.holds = Holds()
        self._read_timeout_s = read_timeout_s
        self._clock = clock
        self._db = Database(
            path,
            version=SCHEMA_VERSION,
            migrate=_migrate,
            busy_timeout_s=busy_timeout_s,
            read_only=self.read_only,
        )

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({str(self.path)!r})"

    def hold(self, keys: AbstractSet[str]) -> None:
        """Never evict ``keys`` (a live set) until `release` (see ``Holds``)."""
        self.holds.hold(keys)

    def release(self, keys: AbstractSet[str]) -> None:
        """Stop holding ``keys``."""
        self.holds.release(keys)

    # -- the connection, in worker threads --------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        # Not abandoned on cancel: a started transaction finishes (or rolls back) first.
        return await trio.to_thread.run_sync(self._db.locked, work)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` interrupted by SQLite once it takes longer than ``read_timeout_s``."""

        def bounded(db: sqlite3.Connection) -> T:
            deadline = time.monotonic() + self._read_timeout_s
            db.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
            try:
                return work(db)
            finally:
                db.set_progress_handler(None, 0)

        return await self._run(bounded)

    # -- the store protocol -------------------------------------------------------------

    async def load(self, pipeline: str, group: str) -> dict[str, Payload]:
        """Key -> payload for every unexpired entry of ``pipeline`` in ``group``."""
        now = self._clock()

        def read(db: sqlite3.Connection) -> dict[str, Payload]:
            if not self._db.current:
                return {}
            rows = db.execute(
                f"SELECT {_READ} FROM entries"  # noqa: S608 (a fixed list of columns)
                " WHERE pipeline = ? AND run_group = ? AND (expires_at IS NULL OR expires_at > ?)",
                (pipeline, group, now),
            ).fetchall()
            found: dict[str, Payload] = {}
            self._touch(db, self._payloads(rows, found, now), now)
            return found

        return await self._read(read)

    async def keys(self, pipeline: str) -> AbstractSet[str]:
        """The keys of every entry of ``pipeline``."""

        def read(db: sqlite3.Connection) -> set[str]:
            if not self._db.current:
                return set()
            rows = db.execute("SELECT key FROM entries WHERE pipeline = ?", (pipeline,))
            return {key for (key,) in rows}

        return await self._read(read)

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, Payload]:
        """Key -> payload for those of ``keys`` that are unexpired entries of ``pipeline``."""
        now = self._clock()
        wanted = list(dict.fromkeys(keys))

        def read(db: sqlite3.Connection) -> dict[str, Payload]:
            if not self._db.current:
                return {}
            found: dict[str, Payload] = {}
            stale: list[str] = []
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT {_READ} FROM entries WHERE key IN ({marks})"  # noqa: S608
                    " AND pipeline = ? AND (expires_at IS NULL OR expires_at > ?)",
                    (*chunk, pipeline, now),
                ).fetchall()
                stale += self._payloads(rows, found, now)
            self._touch(db, stale, now)
            return found

        return await self._read(read)

    def _payloads(
        self,
        rows: Iterable[tuple[str, bytes | None, str | None, int, float]],
        found: dict[str, Payload],
        now: float,
    ) -> list[str]:
        """Put the payloads of ``rows`` in ``found``; return the keys whose last use
        should be rewritten: all of them when the store is bounded (exact LRU), else
        those not used within ``_TOUCH_GRAIN_S`` (recency then only matters to a later
        ``prune``, and reruns in quick succession read without writing)."""
        stale = now if self.max_bytes is not None else now - _TOUCH_GRAIN_S
        touch = []
        for key, inline, file, size, used_at in rows:
            if file is not None:
                found[key] = self._blobs.read(file, size)
            elif inline is not None:
                found[key] = inline
            if used_at < stale:
                touch.append(key)
        return touch

    def _touch(self, db: sqlite3.Connection, keys: list[str], now: float) -> None:
        """Mark ``keys`` used, for LRU eviction: best effort, never waiting for another
        process's write (and nothing on a read-only file)."""
        if self.read_only or not keys:
            return
        db.execute("PRAGMA busy_timeout = 0")
        try:
            for chunk in _chunks(keys):
                marks = ",".join("?" * len(chunk))
                db.execute(
                    f"UPDATE entries SET used_at = ? WHERE key IN ({marks})",  # noqa: S608
                    (now, *chunk),
                )
        except sqlite3.OperationalError:
            pass  # busy or read-only after all: the entries keep their old recency
        finally:
            db.execute(f"PRAGMA busy_timeout = {self._db.busy_timeout_ms}")

    async def save(self, records: Sequence[CacheRecord]) -> None:
        """Write ``records`` in one transaction (an entry with the same key is replaced,
        but keeps its run group), then evict beyond ``max_bytes``: never what was just
        written, nor what runs in progress here hold."""
        now = self._clock()
        written = {record.key for record in records}

        def write(db: sqlite3.Connection) -> None:
            rows, files = self._rows(records, now)
            replaced: list[str] = []
            try:
                with transaction(db):
                    replaced = self._files_of(db, [record.key for record in records])
                    db.executemany(_UPSERT, rows)
                    if self.max_bytes is not None:
                        replaced += self._evict(db, self.max_bytes, written)[1]
            except BaseException:
                self._blobs.unlink(files)
                raise
            self._blobs.unlink(name for name in replaced if name not in files)

        if records:
            await self._run(write)

    def _rows(self, records: Sequence[CacheRecord], now: float) -> tuple[list[Any], list[str]]:
        """The rows to write, and the blob files written for the large payloads."""
        rows, files = [], []
        try:
            for r in records:
                size = payload_size(r.payload)
                inline: Payload | None = r.payload
                file = None
                if size > INLINE_MAX:
                    file = self._blobs.write(r.key, r.payload)
                    files.append(file)
                    inline = None
                rows.append(
                    (
                        r.key,
                        r.pipeline,
                        r.stage,
                        r.item,
                        r.group,
                        r.created_at,
                        r.expires_at,
                        now,
                        size,
                        inline,
                        file,
                    )
                )
        except BaseException:
            self._blobs.unlink(files)
            raise
        return rows, files

    def _files_of(self, db: sqlite3.Connection, keys: list[str]) -> list[str]:
        files = []
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT file FROM entries WHERE key IN ({marks}) AND file IS NOT NULL",  # noqa: S608
                chunk,
            )
            files += [name for (name,) in rows]
        return files

    def _evict(
        self, db: sqlite3.Connection, max_bytes: int, written: AbstractSet[str]
    ) -> tuple[int, list[str]]:
        """Delete the least recently used entries beyond ``max_bytes`` (none just
        ``written`` or held); return how many, and the files they named."""
        (total,) = db.execute("SELECT bytes FROM totals").fetchone()
        if total <= max_bytes:
            return 0, []
        rows = db.execute("SELECT key, size, file FROM entries ORDER BY used_at, created_at")
        files: dict[str, str | None] = {}
        candidates = ((key, size) for key, size, files[key] in rows)
        doomed = list(evictable(candidates, total, max_bytes, Kept(written, self.holds)))
        return len(doomed), self._delete(db, doomed, files)

    def _delete(
        self, db: sqlite3.Connection, keys: list[str], files: dict[str, str | None]
    ) -> list[str]:
        for chunk in _chunks(keys):
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)  # noqa: S608
        return [name for key in keys if (name := files.get(key)) is not None]

    async def entries(self, pipeline: str | None = None) -> list[CacheEntry]:
        """Every entry (of ``pipeline``), expired ones included, oldest first."""
        where, args = _where(pipeline, None)
        columns = "key, pipeline, stage, item, created_at, expires_at, size, used_at"
        query = f"SELECT {columns} FROM entries {where} ORDER BY created_at, key"  # noqa: S608

        def read(db: sqlite3.Connection) -> list[CacheEntry]:
            if not self._db.current:
                return []
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
                    used_at=used,
                )
                for key, pipe, stage, item, created, expires, size, used in rows
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
            query = f"SELECT key, file FROM entries {where}"  # noqa: S608 (fixed clauses)
            return self._remove(db, lambda: dict(db.execute(query, args).fetchall()))

        return await self._run(delete)

    async def prune(self, *, max_bytes: int | None = None, older_than: float | None = None) -> int:
        """Delete expired entries, entries not used for ``older_than`` seconds, then the
        least recently used beyond ``max_bytes``, none that a run in progress here holds,
        and blob files no entry names; return how many entries were deleted."""
        now = self._clock()

        def prune(db: sqlite3.Connection) -> int:
            def doomed() -> dict[str, str | None]:
                rows = db.execute(
                    "SELECT key, file FROM entries"
                    " WHERE (expires_at IS NOT NULL AND expires_at <= ?) OR used_at <= ?",
                    (now, -1.0 if older_than is None else now - older_than),
                )
                return {key: file for key, file in rows if key not in self.holds}

            removed = self._remove(db, doomed, max_bytes=max_bytes)
            self._sweep(db)
            return removed

        return await self._run(prune)

    def _remove(
        self,
        db: sqlite3.Connection,
        select: Callable[[], dict[str, str | None]],
        *,
        max_bytes: int | None = None,
    ) -> int:
        """Delete what ``select`` picks (then, given ``max_bytes``, the LRU beyond it) in
        one transaction, then the files they named."""
        with transaction(db):
            doomed = select()
            files = self._delete(db, list(doomed), doomed)
            count = len(doomed)
            if max_bytes is not None:
                evicted, more = self._evict(db, max_bytes, frozenset())
                count, files = count + evicted, files + more
        self._blobs.unlink(files)
        return count

    def _sweep(self, db: sqlite3.Connection) -> None:
        """Remove blob files no entry names (a killed writer's), once old enough."""
        named = {name for (name,) in db.execute("SELECT file FROM entries WHERE file IS NOT NULL")}
        self._blobs.sweep(named)

    async def aclose(self) -> None:
        """Close the connection (a later call opens it again)."""

        if self._db.is_open:
            await trio.to_thread.run_sync(self._db.close)


def _chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _where(pipeline: str | None, stage: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if pipeline is not None:
        clauses.append("pipeline = ?")
        args.append(pipeline)
    if stage is not None:
        clauses.append("stage = ?")
        args.append(stage)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


def _migrate(db: sqlite3.Connection, _found: int) -> None:
    """A new file, or one of an older format, whose entries can never hit: afresh."""
    db.execute("DROP TABLE IF EXISTS entries")
    db.execute("DROP TABLE IF EXISTS totals")
    create(db, _SCHEMA)
