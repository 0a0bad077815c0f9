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
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, TypeVar

import trio

from .._base._database import Database, check_usable, database_file, transaction
from ._blobs import BlobFolder
from ._entries import (
    READ,
    SCHEMA_VERSION,
    UPSERT,
    chunks,
    delete,
    evict,
    files_of,
    migrate,
    touch,
    where,
)
from ._store import CacheEntry, CacheRecord, Holds, Kept, Payload, payload_size

T = TypeVar("T")

#: The file used when the store is given a directory.
DEFAULT_FILENAME = "twinklr-cache.sqlite3"
#: Payloads up to this size are kept in the database, larger ones in files beside it.
INLINE_MAX = 256 * 1024
#: SQLite instructions between two checks of a read's deadline.
_PROGRESS_STEPS = 1000
#: How stale an unbounded store lets an entry's last use get before a read rewrites it.
_TOUCH_GRAIN_S = 3600.0


class SQLiteCacheStore:
    """A cache in one SQLite file, shared safely by several processes.

    Payloads over 256 KiB are kept as files beside it, in ``<file>-blobs/``.

    Args:
        path: The database file (an existing file, or a ``.sqlite``, ``.sqlite3`` or
            ``.db`` path), or else a directory to keep ``twinklr-cache.sqlite3`` in
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

    Raises:
        ValueError: No cache could ever be made there (a path under a file, a place
            that cannot be written): said now, not by every run.
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
        given, path = path, database_file(path, DEFAULT_FILENAME)
        if not (read_only or path.exists()):  # (one that cannot be written: read-only)
            check_usable(path, f"SQLiteCacheStore({os.fspath(given)!r}) cannot cache")
        self.path = path
        self.blobs = path.with_name(path.name + "-blobs")
        self._blobs = BlobFolder(self.blobs)
        self.max_bytes = max_bytes
        self.read_only = read_only or (path.exists() and not os.access(path, os.W_OK))
        self.holds = _holds_of(path)
        self._read_timeout_s = read_timeout_s
        self._clock = clock
        self._db = Database(
            path,
            version=SCHEMA_VERSION,
            migrate=migrate,
            busy_timeout_s=busy_timeout_s,
            read_only=self.read_only,
        )

    def __repr__(self) -> str:
        return f"SQLiteCacheStore({str(self.path)!r})"

    @property
    def location(self) -> str:
        """The database file, as messages name it."""
        return str(self.path)

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
                f"SELECT {READ} FROM entries"  # noqa: S608 (a fixed list of columns)
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
            for chunk in chunks(wanted):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT {READ} FROM entries WHERE key IN ({marks})"  # noqa: S608
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
        """Mark ``keys`` used, for LRU eviction (best effort; never on a read-only file)."""
        if not self.read_only:
            touch(db, keys, now, self._db.busy_timeout_ms)

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
                    replaced = files_of(db, [record.key for record in records])
                    db.executemany(UPSERT, rows)
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

    def _evict(
        self, db: sqlite3.Connection, max_bytes: int, written: AbstractSet[str]
    ) -> tuple[int, list[str]]:
        """Delete the least recently used entries beyond ``max_bytes`` (none just
        ``written`` or held); return how many, and the files they named."""
        return evict(db, max_bytes, Kept(written, self.holds))

    async def entries(self, pipeline: str | None = None) -> list[CacheEntry]:
        """Every entry (of ``pipeline``), expired ones included, oldest first."""
        clause, args = where(pipeline, None)
        columns = "key, pipeline, stage, item, created_at, expires_at, size, used_at"
        query = f"SELECT {columns} FROM entries {clause} ORDER BY created_at, key"  # noqa: S608

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
        clause, args = where(pipeline, stage)
        if expired_only:
            clause += (
                " AND" if clause else "WHERE"
            ) + " expires_at IS NOT NULL AND expires_at <= ?"
            args.append(self._clock())

        def delete(db: sqlite3.Connection) -> int:
            query = f"SELECT key, file FROM entries {clause}"  # noqa: S608 (fixed clauses)
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
            files = delete(db, list(doomed), doomed)
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


# The keys runs in progress hold, by database file: every store object of one file in
# this process keeps what any of them holds (they evict from the same entries).
_holds: weakref.WeakValueDictionary[Path, Holds] = weakref.WeakValueDictionary()
_holds_lock = threading.Lock()


def _holds_of(path: Path) -> Holds:
    """The holds of the file at ``path``, shared by the store objects of it."""
    where = path.resolve()
    with _holds_lock:
        holds = _holds.get(where)
        if holds is None:
            holds = _holds[where] = Holds()
        return holds
