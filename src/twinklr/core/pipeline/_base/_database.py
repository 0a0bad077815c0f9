"""What both SQLite files (the cache, the run history) need when several processes open
them at once."""

from __future__ import annotations

import sqlite3
import time


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
