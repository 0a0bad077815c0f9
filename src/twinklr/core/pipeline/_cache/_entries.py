"""The SQLite cache's ``entries`` table: its schema and the statements over it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from .._base._database import create
from ._store import Kept, evictable

#: Keys per query when fetching by key (below SQLite's limit on bound parameters).
CHUNK = 500
#: The columns a read takes.
READ = "key, payload, file, size, used_at"
#: The schema's version (``PRAGMA user_version``); a file of an older one is emptied
#: (its entries were written under an older key format and can never hit).
SCHEMA_VERSION = 3

SCHEMA = """
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
UPSERT = """
INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (key) DO UPDATE SET
    stage = excluded.stage, item = excluded.item, created_at = excluded.created_at,
    expires_at = excluded.expires_at, used_at = excluded.used_at, size = excluded.size,
    payload = excluded.payload, file = excluded.file
"""


def migrate(db: sqlite3.Connection, _found: int) -> None:
    """A new file, or one of an older format, whose entries can never hit: afresh."""
    db.execute("DROP TABLE IF EXISTS entries")
    db.execute("DROP TABLE IF EXISTS totals")
    create(db, SCHEMA)


def touch(db: sqlite3.Connection, keys: list[str], now: float, busy_timeout_ms: int) -> None:
    """Mark ``keys`` used at ``now``, for LRU eviction: best effort, never waiting for
    another process's write."""
    if not keys:
        return
    db.execute("PRAGMA busy_timeout = 0")
    try:
        for chunk in chunks(keys):
            marks = ",".join("?" * len(chunk))
            db.execute(
                f"UPDATE entries SET used_at = ? WHERE key IN ({marks})",  # noqa: S608
                (now, *chunk),
            )
    except sqlite3.OperationalError:
        pass  # busy or read-only after all: the entries keep their old recency
    finally:
        db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")


def files_of(db: sqlite3.Connection, keys: list[str]) -> list[str]:
    """The blob files the entries of ``keys`` name."""
    files = []
    for chunk in chunks(keys):
        marks = ",".join("?" * len(chunk))
        rows = db.execute(
            f"SELECT file FROM entries WHERE key IN ({marks}) AND file IS NOT NULL",  # noqa: S608
            chunk,
        )
        files += [name for (name,) in rows]
    return files


def evict(db: sqlite3.Connection, max_bytes: int, kept: Kept) -> tuple[int, list[str]]:
    """Delete the least recently used entries beyond ``max_bytes`` (none ``kept``);
    return how many, and the files they named."""
    (total,) = db.execute("SELECT bytes FROM totals").fetchone()
    if total <= max_bytes:
        return 0, []
    rows = db.execute("SELECT key, size, file FROM entries ORDER BY used_at, created_at")
    files: dict[str, str | None] = {}
    candidates = ((key, size) for key, size, files[key] in rows)
    doomed = list(evictable(candidates, total, max_bytes, kept))
    return len(doomed), delete(db, doomed, files)


def delete(db: sqlite3.Connection, keys: list[str], files: dict[str, str | None]) -> list[str]:
    """Delete the entries of ``keys``; return the files they named (``files``)."""
    for chunk in chunks(keys):
        marks = ",".join("?" * len(chunk))
        db.execute(f"DELETE FROM entries WHERE key IN ({marks})", chunk)  # noqa: S608
    return [name for key in keys if (name := files.get(key)) is not None]


def chunks(keys: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(keys), CHUNK):
        yield keys[start : start + CHUNK]


def where(pipeline: str | None, stage: str | None) -> tuple[str, list[Any]]:
    clauses, args = [], []
    if pipeline is not None:
        clauses.append("pipeline = ?")
        args.append(pipeline)
    if stage is not None:
        clauses.append("stage = ?")
        args.append(stage)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), args
