"""SQLite files as the stores keep them (the cache, the run history): where the file of
a path is, one connection per store used by one thread at a time, WAL mode while other
processes open the same file, the schema made or migrated by version, transactions."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: The directory the command line keeps its stores in (the cache and the run history).
DEFAULT_DIRECTORY = ".twinklr"


#: The suffixes that make a path that does not exist yet a database file to create
#: (any other path that does not exist is a directory to create).
DATABASE_SUFFIXES = frozenset({".sqlite", ".sqlite3", ".db"})


def database_file(path: str | Path, filename: str) -> Path:
    """The database file ``path`` names: ``path`` itself when it is a file, or when it
    does not exist and has a database suffix (``.sqlite``, ``.sqlite3``, ``.db``);
    otherwise ``filename`` in it, a directory (created with the file)."""
    given = str(path)
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir() or given.endswith(("/", "\\")):
        return path / filename
    return path if path.suffix.lower() in DATABASE_SUFFIXES else path / filename


class UnusableStoreError(ValueError):
    """A store made where it could never work (said when it is made, not by every run)."""


#: What every SQLite database file begins with.
SQLITE_HEADER = b"SQLite format 3\x00"


def unwritable(path: Path, *, database: bool = False) -> str | None:
    """Why a database file cannot be made or written at ``path`` (None when it can),
    found without making anything: ``path`` is a directory, a file that cannot be
    written (``database``: or one that is not SQLite), or in a place that is a file or
    cannot be written."""
    if path.exists():
        if path.is_dir():
            return f"{path} is a directory"
        if not os.access(path, os.W_OK):
            return f"{path} cannot be written"
        return f"{path} is not a SQLite database" if database and _not_sqlite(path) else None
    place = path.parent
    while not place.exists() and place != place.parent:
        place = place.parent
    if not place.is_dir():
        return f"{place} is a file, not a directory"
    return None if os.access(place, os.W_OK | os.X_OK) else f"{place} cannot be written"


def check_usable(path: Path, store: str, *, database: bool = False) -> None:
    """Raise `UnusableStoreError` (``store``, then why) when `unwritable` says why."""
    why = unwritable(path, database=database)
    if why is not None:
        msg = f"{store}: {why}"
        raise UnusableStoreError(msg)


def _not_sqlite(path: Path) -> bool:
    with path.open("rb") as file:
        start = file.read(len(SQLITE_HEADER))
    return bool(start) and start != SQLITE_HEADER


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (``BEGIN IMMEDIATE``): committed when the
    block ends, rolled back when it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # SQLite has already rolled back after some errors (SQLITE_FULL): a second
        # ROLLBACK would fail and hide the real error.
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def create(db: sqlite3.Connection, schema: str) -> None:
    """Run each statement of ``schema`` (statements end with ``;`` and a new line)."""
    for statement in schema.split(";\n"):
        if statement.strip():
            db.execute(statement)


class Database:
    """One SQLite file behind one connection, opened on first use and used by one thread
    at a time (the stores call it from worker threads, never on an event loop).

    Args:
        path: The file.
        version: The schema's version (``PRAGMA user_version``).
        migrate: Makes the schema of a file whose version is another (``migrate(db,
            found)``, in a transaction; a new file's version is 0).
        busy_timeout_s: How long a write waits for another process's write.
        read_only: Open the file without ever writing (it must exist).
    """

    def __init__(
        self,
        path: Path,
        *,
        version: int,
        migrate: Callable[[sqlite3.Connection, int], None],
        busy_timeout_s: float,
        read_only: bool = False,
    ) -> None:
        self.path = path
        self.version = version
        self.read_only = read_only
        self.busy_timeout_ms = int(busy_timeout_s * 1000)
        self.current = True
        """Whether the file's schema is this version's (a read-only file's may not be)."""
        self._migrate = migrate
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None

    def locked(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)``, holding the connection (opened if need be)."""
        with self._lock:
            return work(self._connect())

    def close(self) -> None:
        """Close the connection (the next call opens it again)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    @property
    def is_open(self) -> bool:
        """Whether the connection is open."""
        return self._connection is not None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            timeout = self.busy_timeout_ms / 1000
            if self.read_only:
                connection = sqlite3.connect(
                    f"{self.path.absolute().as_uri()}?mode=ro",
                    uri=True,
                    timeout=timeout,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(
                    self.path,
                    timeout=timeout,
                    isolation_level=None,  # transactions are explicit
                    check_same_thread=False,  # one thread at a time (the lock)
                )
            try:
                self._prepare(connection)
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._connection

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
        if self.read_only:
            (found,) = db.execute("PRAGMA user_version").fetchone()
            self.current = found == self.version
            return
        use_wal(db, self.busy_timeout_ms / 1000)
        db.execute("PRAGMA synchronous = NORMAL")
        with transaction(db):
            (found,) = db.execute("PRAGMA user_version").fetchone()
            if found != self.version:
                self._migrate(db, found)
                db.execute(f"PRAGMA user_version = {self.version}")


def use_wal(connection: sqlite3.Connection, timeout_s: float) -> None:
    """Put ``connection``'s database in WAL mode, waiting up to ``timeout_s`` for other
    processes opening the same file at the same moment.

    The switch takes a lock that SQLite does not wait for: where waiting could deadlock
    it answers "database is locked" at once, whatever the busy timeout. So this retries,
    backing off, until the switch is made or the time is up (then the error is raised).
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        try:
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        else:
            return
