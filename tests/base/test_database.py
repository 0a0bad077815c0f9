"""Opening a SQLite file in WAL mode while another process holds it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from twinklr.core.pipeline._base import _database as _wal
from twinklr.core.pipeline._base._database import use_wal


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
