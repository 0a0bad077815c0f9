"""The run history in PostgreSQL (the ``postgres`` extra): one store for every host.

The same tables and statements as the SQLite store's (written once, in SQL both speak:
upserts, ``RETURNING``, claims that only update the row as read), run on pooled
connections, each call one transaction. A run is recorded by the host whose run it is
and read, answered, claimed and resumed from any other: of two hosts claiming a
suspended run, one gets the `LookupError`; a claimed run whose host died stops writing
and reads as ``interrupted`` after `STALE_AFTER_S` (its lease), when another host may
claim it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._base._postgresql import PostgresDatabase
from ._runs import RunStore

T = TypeVar("T")

_SCHEMA_V1 = """
CREATE TABLE definitions (
    fingerprint text PRIMARY KEY,
    pipeline text NOT NULL,
    graph text NOT NULL,
    written_at double precision NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    run_id text PRIMARY KEY,
    pipeline text NOT NULL,
    definition text NOT NULL,
    input_fingerprint text,
    status text NOT NULL,
    started_at double precision NOT NULL,
    finished_at double precision,
    updated_at double precision NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    error text,
    stage_count integer NOT NULL,
    duration_ms double precision,
    progress bytea,
    details text
);
CREATE TABLE responses (
    run_id text NOT NULL,
    stage_id text NOT NULL,
    value text NOT NULL,
    answered_at double precision NOT NULL,
    taken integer NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, stage_id)
);
CREATE TABLE suspensions (
    run_id text PRIMARY KEY,
    state bytea NOT NULL
);
CREATE INDEX runs_by_start ON runs (started_at);
CREATE INDEX runs_by_pipeline ON runs (pipeline, started_at);
"""

#: What the SQLite store's transactions say, which a call's own transaction covers here.
_OWN_TRANSACTION = frozenset({"BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"})


class PostgresRunStore(RunStore):
    """The runs executors made, in PostgreSQL, shared by every host that names it (the
    ``postgres`` extra): ``runs=PostgresRunStore(dsn)``.

    Everything [RunStore][twinklr.core.pipeline.RunStore] does, across hosts: runs
    recorded as they go, gates answered from any host, a run suspended on one host and
    resumed on another, claims that cannot be taken twice, and a claim whose host died
    released once its run has not written for a minute (it reads ``interrupted``).

    Args:
        dsn: A libpq connection string or ``postgresql://`` URL (its password is never
            shown or recorded).
        schema: The schema the tables are made in (created if missing, migrated by
            version).
        statement_timeout_s: The most one statement may take on the server.
        connect_timeout_s: The most connecting may take.
        max_connections: The connection pool's size.

    Raises:
        ModuleNotFoundError: The ``postgres`` extra is not installed.
        ValueError: ``schema`` is not a plain lower-case identifier.
    """

    def __init__(  # (not RunStore's: no file, every call goes to the server)
        self,
        dsn: str,
        *,
        schema: str = "twinklr",
        statement_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 4,
    ) -> None:
        self.host = socket.gethostname()
        self._pg = PostgresDatabase(
            "PostgresRunStore",
            dsn,
            schema=schema,
            component="runs",
            migrations=[_SCHEMA_V1],
            statement_timeout_s=statement_timeout_s,
            connect_timeout_s=connect_timeout_s,
            max_connections=max_connections,
        )
        self._db = _Calls(self._pg)  # type: ignore[assignment]  # (the same two calls)
        self._defined: set[str] = set()
        self._known: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"PostgresRunStore({self._pg.where!r}, schema={self._pg.schema!r})"

    @property
    def location(self) -> str:
        """The database, without its password."""
        return self._pg.where

    def _present(self) -> bool:
        return True

    def close(self) -> None:
        """Close the connections (the next call opens them again)."""
        self._pg.close()


class _Calls:
    """The run store's calls (``locked``, ``close``) on PostgreSQL: each one transaction
    on a pooled connection."""

    current = True

    def __init__(self, pg: PostgresDatabase) -> None:
        self._pg = pg

    def locked(self, work: Callable[[Any], T]) -> T:
        return self._pg.run(lambda conn: work(_Statements(conn)))

    def close(self) -> None:
        self._pg.close()


class _Statements:
    """A connection that takes the store's statements as SQLite does (``?`` marks)."""

    in_transaction = True  # (the call's own)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, statement: str, arguments: Sequence[Any] = ()) -> Any:
        if statement in _OWN_TRANSACTION:
            return None
        return self._conn.execute(statement.replace("%", "%%").replace("?", "%s"), arguments)
