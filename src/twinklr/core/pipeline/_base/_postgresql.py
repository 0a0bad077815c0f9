"""PostgreSQL as the shared stores keep it (the ``postgres`` extra: psycopg 3 and its
pool): blocking calls made from worker threads on pooled connections, every statement
bounded by a timeout (a wedged server cannot hang a run), each call one transaction,
the tables made and migrated by version inside a schema of the user's choosing, and the
DSN shown everywhere without its password."""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

T = TypeVar("T")

#: A schema name the stores accept: a plain lower-case identifier (never quoted).
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def redacted(dsn: str) -> str:
    """``dsn`` without its password (a URL's, or a ``password=`` setting's), as errors,
    ``repr`` and the run history show it."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        user, at, host = parts.netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}@{host}" if at else parts.netloc
        query, settings = parts.query, parse_qsl(parts.query)
        if any(name == "password" for name, _ in settings):
            query = urlencode([(name, value) for name, value in settings if name != "password"])
        if (netloc, query) == (parts.netloc, parts.query):
            return dsn
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        return (
            shown
            + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else "")
        )
    return re.sub(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "password=***", dsn)


def require_postgres() -> None:
    """Raise ``ModuleNotFoundError`` with the install line when the ``postgres`` extra
    (psycopg and its pool) is not installed (looked up, not imported)."""
    missing = [
        name for name in ("psycopg", "psycopg_pool") if importlib.util.find_spec(name) is None
    ]
    if missing:
        msg = (
            f"{', '.join(missing)} not installed: the PostgreSQL stores need the postgres"
            ' extra, pip install "twinklr-pipeline[postgres]"'
        )
        raise ModuleNotFoundError(msg, name=missing[0])


def checked_schema(owner: str, schema: object) -> str:
    """``schema`` if it is a plain lower-case identifier; else a ValueError naming
    ``owner`` and the value."""
    if not isinstance(schema, str) or not _SCHEMA.fullmatch(schema):
        msg = (
            f"{owner} schema must be a lower-case identifier (letters, digits and _), "
            f"got {schema!r}"
        )
        raise ValueError(msg)
    return schema


class PostgresDatabase:
    """A store's connections to one PostgreSQL database, its tables in ``schema``.

    Opened on first use: the schema and its version table are made if missing, and the
    store's ``migrations`` (SQL scripts, the n-th bringing the tables from version n-1
    to n) applied under an advisory lock, so processes starting together migrate once.

    Args:
        owner: The store's class name, for errors.
        dsn: A libpq connection string or ``postgresql://`` URL.
        schema: Where the tables are (made if missing).
        component: Which store's tables these are (their version is kept by name).
        migrations: The store's schema, version by version.
        statement_timeout_s: The most one statement may take on the server.
        connect_timeout_s: The most connecting (or waiting for a free connection) may
            take.
        max_connections: The pool's size.

    Raises:
        ModuleNotFoundError: The ``postgres`` extra is not installed.
        ValueError: ``schema`` is not a plain lower-case identifier.
    """

    def __init__(
        self,
        owner: str,
        dsn: str,
        *,
        schema: str,
        component: str,
        migrations: Sequence[str],
        statement_timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
    ) -> None:
        require_postgres()
        self.dsn = dsn
        self.schema = checked_schema(owner, schema)
        self.where = redacted(dsn)
        self._component = component
        self._migrations = migrations
        self._statement_timeout_s = statement_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_connections = max_connections
        self._lock = threading.Lock()
        self._pool: Any = None

    def run(self, work: Callable[[Any], T]) -> T:
        """``work(connection)`` in one transaction (committed when it returns, rolled
        back when it raises). A connection the server dropped (a restart) is replaced
        and ``work`` tried once more; a server that cannot be reached is a
        ``ConnectionError`` naming the DSN (without its password)."""
        import psycopg  # noqa: PLC0415 (the postgres extra)
        from psycopg_pool import PoolTimeout  # noqa: PLC0415

        for last in (False, True):
            pool = self._opened()
            try:
                with pool.connection(timeout=self._connect_timeout_s) as conn:
                    return work(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if _timed_out(exc):
                    raise self._unreachable(exc) from exc
                if last or isinstance(exc, PoolTimeout):
                    self._reset()  # (the next call connects afresh, not after a backoff)
                    raise self._unreachable(exc) from exc
                # A connection the server dropped (a restart drops them all): let the
                # pool find the others before the second try. (Not checked each time a
                # connection is taken: a round trip on every call.)
                pool.check()
        raise AssertionError  # pragma: no cover (the loop returns or raises)

    def _unreachable(self, exc: Exception) -> Exception:
        if _timed_out(exc):
            msg = f"PostgreSQL at {self.where} took over {self._statement_timeout_s:g} s: {exc}"
            return TimeoutError(msg)
        return ConnectionError(f"cannot reach PostgreSQL at {self.where}: {exc}")

    def _opened(self) -> Any:
        with self._lock:
            if self._pool is None:
                self._migrate()
                from psycopg_pool import ConnectionPool  # noqa: PLC0415

                self._pool = ConnectionPool(
                    self.dsn,
                    open=True,
                    min_size=1,
                    max_size=self._max_connections,
                    kwargs=self._settings(),
                    timeout=self._connect_timeout_s,
                    name=f"twinklr-{self._component}",
                )
            return self._pool

    def _settings(self) -> dict[str, Any]:
        timeout_ms = max(1, round(self._statement_timeout_s * 1000))
        return {
            "options": f"-c search_path={self.schema} -c statement_timeout={timeout_ms}",
            "connect_timeout": max(1, round(self._connect_timeout_s)),
        }

    def _migrate(self) -> None:
        """Make the schema and bring the tables to the latest version (once, whichever
        process gets the lock first)."""
        import psycopg  # noqa: PLC0415

        try:
            conn = psycopg.connect(self.dsn, **self._settings())
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc
        with conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"twinklr:{self.schema}",))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
            conn.execute(f"SET LOCAL search_path TO {self.schema}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS versions"
                " (component text PRIMARY KEY, version integer NOT NULL)"
            )
            row = conn.execute(
                "SELECT version FROM versions WHERE component = %s", (self._component,)
            ).fetchone()
            found = 0 if row is None else int(row[0])
            if found > len(self._migrations):
                msg = (
                    f"the {self._component} tables in schema {self.schema} at {self.where} "
                    f"are at version {found}, newer than this twinklr-pipeline knows "
                    f"({len(self._migrations)}): upgrade it, or use another schema"
                )
                raise RuntimeError(msg)
            for script in self._migrations[found:]:
                conn.execute(script)
            conn.execute(
                "INSERT INTO versions VALUES (%s, %s)"
                " ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (self._component, len(self._migrations)),
            )

    def _reset(self) -> None:
        """Drop a pool that cannot reach the server (closed in the background): the pool
        would retry with a growing backoff, where the next call should find a server
        that is back at once."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            threading.Thread(target=pool.close, name="twinklr-pg-close", daemon=True).start()

    def close(self) -> None:
        """Close the pool (the next call opens it again)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` is the server cancelling a statement over its timeout."""
    return getattr(exc, "sqlstate", None) == "57014"  # query_canceled
