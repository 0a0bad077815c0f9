"""The cache in PostgreSQL (the ``postgres`` extra): one store shared by every host.

Entries are rows of ``cache_entries`` in the store's schema, payloads as ``bytea``
(exact bytes, up to 1 GB). A run's holds are rows of ``cache_holds`` with a lease, so
a bounded store on any host never evicts what a run in progress on another host read or
wrote; a host that dies leaves holds that lapse with their lease. Calls are blocking
psycopg calls in worker threads, each one transaction, each statement bounded by the
server's statement timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

import trio

from .._base._postgresql import PostgresDatabase
from ._store import CacheEntry, CacheRecord, Payload, payload_size

T = TypeVar("T")

_SCHEMA_V1 = """
CREATE TABLE cache_entries (
    key text PRIMARY KEY,
    pipeline text NOT NULL,
    stage text NOT NULL,
    item integer,
    run_group text NOT NULL,
    payload bytea NOT NULL,
    size bigint NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision,
    used_at double precision NOT NULL
);
CREATE INDEX cache_entries_by_group ON cache_entries (pipeline, run_group);
CREATE INDEX cache_entries_by_pipeline ON cache_entries (pipeline);
CREATE INDEX cache_entries_by_use ON cache_entries (used_at);
CREATE TABLE cache_holds (
    holder text NOT NULL,
    key text NOT NULL,
    lease_until double precision NOT NULL,
    PRIMARY KEY (holder, key)
);
CREATE INDEX cache_holds_by_key ON cache_holds (key);
"""

#: Reading an entry moves its last use when the last one is older than this (a read is
#: then not always a write); always, in a bounded store (its eviction order).
_TOUCH_GRAIN_S = 3600.0

_READ = "key, payload, expires_at, used_at"


class PostgresCacheStore:
    """A cache store in PostgreSQL, shared by every host that names it (the
    ``postgres`` extra): content-addressed entries, exact payload bytes, large values.

    A bounded store (``max_bytes``) evicts the entries used least recently, never one a
    run in progress holds on any host: a run's holds are rows with a lease
    (``hold_lease_s``), renewed while the run uses the store and dropped when it ends.

    Args:
        dsn: A libpq connection string or ``postgresql://`` URL (its password is never
            shown: ``repr`` and errors give the DSN without it).
        schema: The schema the tables are made in (created if missing, migrated by
            version).
        max_bytes: A bound on the payloads it keeps. None: unbounded.
        hold_lease_s: How long a run's holds outlive its last use of the store (a
            host that died lets them go after it).
        statement_timeout_s: The most one statement may take on the server.
        connect_timeout_s: The most connecting may take.
        max_connections: The connection pool's size.
        clock: The wall clock entries are dated by (for tests).

    Raises:
        ModuleNotFoundError: The ``postgres`` extra is not installed.
        ValueError: ``schema`` is not a plain lower-case identifier.
    """

    #: Reads are bounded in real time by the server's statement timeout.
    bounds_reads = True

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "twinklr",
        max_bytes: int | None = None,
        hold_lease_s: float = 600.0,
        statement_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = PostgresDatabase(
            "PostgresCacheStore",
            dsn,
            schema=schema,
            component="cache",
            migrations=[_SCHEMA_V1],
            statement_timeout_s=statement_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )
        self.max_bytes = max_bytes
        self.hold_lease_s = hold_lease_s
        self._clock = clock
        self._holder = uuid.uuid4().hex  # this store's runs, in cache_holds
        self._held: list[AbstractSet[str]] = []
        self._written: set[str] = set()  # held keys already in cache_holds
        self._renewed = 0.0

    def __repr__(self) -> str:
        return f"PostgresCacheStore({self._db.where!r}, schema={self._db.schema!r})"

    @property
    def location(self) -> str:
        """The database, as errors name it (without its password)."""
        return self._db.where

    # -- holds ------------------------------------------------------------------------

    def hold(self, keys: AbstractSet[str]) -> None:
        """Never evict ``keys`` (a live set: keys added later count too, written as
        rows with the next call) until `release`, whatever host evicts."""
        self._held.append(keys)

    def release(self, keys: AbstractSet[str]) -> None:
        """Stop holding ``keys`` (their rows go with the next call)."""
        self._held = [held for held in self._held if held is not keys]

    def _holds_due(self, now: float) -> tuple[list[str], list[str], bool]:
        """What to tell the server of this store's holds (on the Trio thread, where the
        held sets change): keys newly held, keys no longer held, whether to renew."""
        held = set().union(*self._held)  # (set operations in C: a run holds thousands)
        new, gone = list(held - self._written), list(self._written - held)
        renew = bool(held) and now - self._renewed > self.hold_lease_s / 3
        self._written = held
        if renew or new:
            self._renewed = now
        return new, gone, renew

    def _write_holds(self, conn: Any, now: float, due: tuple[list[str], list[str], bool]) -> None:
        new, gone, renew = due
        lease = now + self.hold_lease_s
        if gone:
            conn.execute(
                "DELETE FROM cache_holds WHERE holder = %s AND key = ANY(%s)", (self._holder, gone)
            )
        if renew:
            conn.execute(
                "UPDATE cache_holds SET lease_until = %s WHERE holder = %s", (lease, self._holder)
            )
        if new:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO cache_holds VALUES (%s, %s, %s)"
                    " ON CONFLICT (holder, key) DO UPDATE SET lease_until = excluded.lease_until",
                    [(self._holder, key, lease) for key in new],
                )

    async def _run(self, work: Callable[[Any, float], T]) -> T:
        """``work(connection, now)`` in one transaction in a worker thread (not abandoned
        on cancel: a started transaction finishes or rolls back first), after writing
        the holds that changed."""
        now = self._clock()
        due = self._holds_due(now)

        def call(conn: Any) -> T:
            self._write_holds(conn, now, due)
            return work(conn, now)

        try:
            return await trio.to_thread.run_sync(self._db.run, call)
        except BaseException:
            self._written -= set(due[0])  # (not written: the next call writes them)
            raise

    # -- the store protocol -------------------------------------------------------------

    async def load(self, pipeline: str, group: str) -> dict[str, Payload]:
        """Key -> payload for every unexpired entry of ``pipeline`` in ``group``."""

        def read(conn: Any, now: float) -> dict[str, Payload]:
            rows = conn.execute(
                f"SELECT {_READ} FROM cache_entries WHERE pipeline = %s AND run_group = %s"  # noqa: S608
                " AND (expires_at IS NULL OR expires_at > %s)",
                (pipeline, group, now),
            ).fetchall()
            return self._served(conn, rows, now)

        return await self._run(read)

    async def keys(self, pipeline: str) -> AbstractSet[str]:
        """The keys of every entry of ``pipeline``."""

        def read(conn: Any, _now: float) -> set[str]:
            rows = conn.execute("SELECT key FROM cache_entries WHERE pipeline = %s", (pipeline,))
            return {key for (key,) in rows}

        return await self._run(read)

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, Payload]:
        """Key -> payload for those of ``keys`` that are unexpired entries of ``pipeline``
        (one query, however many keys)."""
        wanted = list(dict.fromkeys(keys))

        def read(conn: Any, now: float) -> dict[str, Payload]:
            rows = conn.execute(
                f"SELECT {_READ} FROM cache_entries WHERE key = ANY(%s) AND pipeline = %s"  # noqa: S608
                " AND (expires_at IS NULL OR expires_at > %s)",
                (wanted, pipeline, now),
            ).fetchall()
            return self._served(conn, rows, now)

        return await self._run(read) if wanted else {}

    def _served(self, conn: Any, rows: list[tuple[Any, ...]], now: float) -> dict[str, Payload]:
        """The payloads of ``rows``, their last use moved to ``now`` where it is stale."""
        stale = now if self.max_bytes is not None else now - _TOUCH_GRAIN_S
        touched = [key for key, _, _, used_at in rows if used_at < stale]
        if touched:
            conn.execute(
                "UPDATE cache_entries SET used_at = %s WHERE key = ANY(%s)", (now, touched)
            )
        return {key: payload for key, payload, _, _ in rows}

    async def save(self, records: Sequence[CacheRecord]) -> None:
        """Write ``records`` in one transaction (an entry with the same key is replaced
        but keeps its run group), then evict beyond ``max_bytes``: never what was just
        written, nor what a run in progress on any host holds."""
        rows = [
            (
                r.key,
                r.pipeline,
                r.stage,
                r.item,
                r.group,
                r.payload,
                payload_size(r.payload),
                r.created_at,
                r.expires_at,
            )
            for r in records
        ]
        written = [r.key for r in records]

        def write(conn: Any, now: float) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO cache_entries VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET pipeline = excluded.pipeline,"
                    " stage = excluded.stage, item = excluded.item, payload = excluded.payload,"
                    " size = excluded.size, created_at = excluded.created_at,"
                    " expires_at = excluded.expires_at, used_at = excluded.used_at",
                    [(*row, now) for row in rows],
                )
            if self.max_bytes is not None:
                self._evict(conn, now, self.max_bytes, written)

        if rows:
            await self._run(write)

    def _evict(self, conn: Any, now: float, max_bytes: int, written: list[str]) -> int:
        """Delete the least recently used entries beyond ``max_bytes``, none in
        ``written`` or held by a live lease (one eviction at a time per schema)."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('twinklr-cache-evict'))")
        (total,) = conn.execute("SELECT coalesce(sum(size), 0) FROM cache_entries").fetchone()
        excess = int(total) - max_bytes
        if excess <= 0:
            return 0
        deleted = conn.execute(
            "WITH ranked AS (SELECT key, size, sum(size) OVER (ORDER BY used_at, key) AS upto"
            " FROM cache_entries e WHERE NOT (key = ANY(%s)) AND NOT EXISTS"
            " (SELECT 1 FROM cache_holds h WHERE h.key = e.key AND h.lease_until > %s))"
            " DELETE FROM cache_entries WHERE key IN"
            " (SELECT key FROM ranked WHERE upto - size < %s)",
            (written, now, excess),
        )
        return int(deleted.rowcount)

    async def prune(self, *, max_bytes: int | None = None, older_than: float | None = None) -> int:
        """Delete expired entries, entries not used for ``older_than`` seconds, then the
        least recently used beyond ``max_bytes``, none that a run in progress on any host
        holds; return how many were deleted."""

        def prune(conn: Any, now: float) -> int:
            unused = -1.0 if older_than is None else now - older_than
            removed = conn.execute(
                "DELETE FROM cache_entries e WHERE"
                " ((expires_at IS NOT NULL AND expires_at <= %s) OR used_at <= %s)"
                " AND NOT EXISTS (SELECT 1 FROM cache_holds h"
                " WHERE h.key = e.key AND h.lease_until > %s)",
                (now, unused, now),
            ).rowcount
            conn.execute("DELETE FROM cache_holds WHERE lease_until <= %s", (now,))
            if max_bytes is not None:
                removed += self._evict(conn, now, max_bytes, [])
            return int(removed)

        return await self._run(prune)

    async def entries(self, pipeline: str | None = None) -> list[CacheEntry]:
        """Every entry (of ``pipeline``), expired ones included, oldest first."""

        def read(conn: Any, _now: float) -> list[CacheEntry]:
            rows = conn.execute(
                "SELECT key, pipeline, stage, item, created_at, expires_at, size, used_at"
                " FROM cache_entries WHERE %s::text IS NULL OR pipeline = %s"
                " ORDER BY created_at, key",
                (pipeline, pipeline),
            ).fetchall()
            return [
                CacheEntry(
                    key=key,
                    pipeline=of,
                    stage=stage,
                    item=item,
                    created_at=created_at,
                    expires_at=expires_at,
                    size=int(size),
                    used_at=used_at,
                )
                for key, of, stage, item, created_at, expires_at, size, used_at in rows
            ]

        return await self._run(read)

    async def clear(
        self, pipeline: str | None = None, *, stage: str | None = None, expired_only: bool = False
    ) -> int:
        """Delete matching entries; return how many were deleted."""

        def delete(conn: Any, now: float) -> int:
            deleted = conn.execute(
                "DELETE FROM cache_entries WHERE (%s::text IS NULL OR pipeline = %s)"
                " AND (%s::text IS NULL OR stage = %s)"
                " AND (NOT %s OR (expires_at IS NOT NULL AND expires_at <= %s))",
                (pipeline, pipeline, stage, stage, expired_only, now),
            )
            return int(deleted.rowcount)

        return await self._run(delete)

    def close(self) -> None:
        """Close the connections (the next call opens them again). Blocking."""
        self._db.close()

    async def aclose(self) -> None:
        """`close`, in a worker thread, after dropping this store's holds."""
        if self._held or self._written:
            self._held = []
            holder = self._holder
            await self._run(
                lambda conn, _now: conn.execute(
                    "DELETE FROM cache_holds WHERE holder = %s", (holder,)
                )
            )
        await trio.to_thread.run_sync(self.close)
