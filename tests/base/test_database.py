"""SQLite files as the stores keep them: the file a path names, transactions, WAL while
another process holds the file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from twinklr.core.pipeline._base import _database as _wal
from twinklr.core.pipeline._base._database import database_file, transaction, use_wal


def locked(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # as another process creating the file would
    return holder


def test_the_switch_waits_for_a_lock_sqlite_does_not_wait_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db.sqlite3"
    holder = locked(path)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:  # the other process finishes while we back off
        sleeps.append(seconds)
        if len(sleeps) == 2:
            holder.execute("COMMIT")

    monkeypatch.setattr(_wal.time, "sleep", sleep)  # type: ignore[attr-defined]
    use_wal(waiter, timeout_s=5)
    assert waiter.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert sleeps == [0.002, 0.004]  # backing off
    waiter.close()
    holder.close()


def test_the_switch_gives_up_when_its_time_is_up(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    holder = locked(path)
    waiter = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        use_wal(waiter, timeout_s=0)
    waiter.close()
    holder.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    closed = sqlite3.connect(tmp_path / "db.sqlite3")
    closed.close()
    with pytest.raises(sqlite3.ProgrammingError):
        use_wal(closed, timeout_s=5)


@pytest.mark.parametrize(
    ("given", "directory"),
    [
        ("runs", True),
        (".twinklr", True),
        ("cache.v2", True),  # a suffix that is not a database's: a directory to create
        ("cache.sqlite", False),
        ("cache.sqlite3", False),
        ("cache.DB", False),
    ],
)
def test_a_path_is_a_directory_unless_it_names_a_database_file(
    tmp_path: Path, given: str, *, directory: bool
) -> None:
    path = tmp_path / given
    expected = path / "store.sqlite3" if directory else path
    assert database_file(path, "store.sqlite3") == expected
    assert database_file(f"{path}/", "store.sqlite3") == path / "store.sqlite3"


def test_an_existing_file_or_directory_is_taken_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    (tmp_path / "folder.db").mkdir()
    assert database_file(tmp_path / "plain", "x.sqlite3") == tmp_path / "plain"
    assert database_file(tmp_path / "folder.db", "x.sqlite3") == tmp_path / "folder.db/x.sqlite3"


def test_a_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "t.sqlite3", isolation_level=None)
    db.execute("CREATE TABLE t (x)")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1)")

    def failing() -> None:
        with transaction(db):
            db.execute("INSERT INTO t VALUES (2)")
            raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        failing()
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
