"""The SQLite store: a file under the user's directory, WAL, atomic, multi-process safe."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import structlog.testing
import trio

from conftest import cache_warnings, stub
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    SQLiteCacheStore,
    StageDefinition,
)
from twinklr.core.pipeline._cache._sqlite import DEFAULT_FILENAME, INLINE_MAX
from twinklr.core.pipeline._cache._store import CacheRecord


def record(key: str, *, stage: str = "s", payload: str = '{"output":1,"writes":[]}') -> CacheRecord:
    return CacheRecord(
        key=key, pipeline="p", stage=stage, group="g", payload=payload, created_at=float(len(key))
    )


async def test_a_directory_gets_the_default_file(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path)
    await store.save([record("k")])
    assert store.path == tmp_path / DEFAULT_FILENAME
    assert (tmp_path / DEFAULT_FILENAME).exists()
    nested = SQLiteCacheStore(tmp_path / "new" / "dir" / "cache.db")
    await nested.save([record("k")])
    assert nested.path.exists()
    assert "cache.db" in repr(nested)


async def test_wal_mode_and_round_trip(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path)
    await store.save([record("a"), record("bb", stage="t")])
    assert await store.load("p", "g") == {
        "a": b'{"output":1,"writes":[]}',
        "bb": b'{"output":1,"writes":[]}',
    }
    assert await store.load("p", "other") == {}
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert [(e.key, e.stage, e.size) for e in await store.entries()] == [
        ("a", "s", 24),
        ("bb", "t", 24),
    ]
    assert await store.clear(stage="t") == 1
    assert await store.clear("p") == 1
    assert await store.entries() == []
    await store.aclose()
    await store.aclose()  # closing twice is fine, and a later call reopens
    assert await store.load("p", "g") == {}


async def test_clear_expired_only(tmp_path: Path) -> None:
    now = [100.0]
    store = SQLiteCacheStore(tmp_path, clock=lambda: now[0])
    old = CacheRecord(
        key="old", pipeline="p", stage="s", group="g", payload="{}", created_at=0, expires_at=50
    )
    fresh = CacheRecord(
        key="new", pipeline="p", stage="s", group="g", payload="{}", created_at=0, expires_at=500
    )
    await store.save([old, fresh, record("forever")])
    assert set(await store.load("p", "g")) == {"new", "forever"}
    assert await store.clear(expired_only=True) == 1
    assert {e.key for e in await store.entries()} == {"new", "forever"}


async def test_a_save_is_all_or_nothing(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path)
    large = CacheRecord(
        key="big", pipeline="p", stage="s", group="g", payload=b"x" * (INLINE_MAX + 1), created_at=0
    )
    bad = CacheRecord(key="x", pipeline="p", stage=None, group="g", payload=b"{}", created_at=0)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        await store.save([record("fine"), large, bad])
    assert await store.entries() == []
    assert list(store.blobs.iterdir()) == []  # the large payload's file went with it


CHILD = textwrap.dedent(
    """
    import sys, trio
    from twinklr.core.pipeline import SQLiteCacheStore
    from twinklr.core.pipeline._cache._store import CacheRecord

    async def main(path, name, count, width):
        store = SQLiteCacheStore(path)
        for i in range(count):
            payload = '{"output":"%s","writes":[]}' % (str(i) * width)
            batch = [
                CacheRecord(key=f"{name}-{i}-{j}", pipeline="p", stage=name, group="g",
                            payload=payload, created_at=i)
                for j in range(5)
            ]
            # Every writer also writes the same shared keys: the last one wins, whole.
            batch.append(CacheRecord(key=f"shared-{i}", pipeline="p", stage=name, group="g",
                                     payload=payload, created_at=i))
            await store.save(batch)
            print(i, flush=True)

    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    """
)


def spawn_writer(path: Path, name: str, count: int, *, width: int = 2000) -> subprocess.Popen[str]:
    """A second process saving ``count`` batches of five entries (and one shared key),
    each payload about ``width`` times a digit long (above ``INLINE_MAX``: a file)."""
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), name, str(count), str(width)],
        stdout=subprocess.PIPE,
        text=True,
    )


async def test_several_processes_share_one_file(tmp_path: Path) -> None:
    writers = [spawn_writer(tmp_path, f"w{n}", 30) for n in range(3)]
    for writer in writers:
        out, _ = writer.communicate(timeout=60)
        assert writer.returncode == 0
        assert out.split() == [str(i) for i in range(30)]
    entries = await SQLiteCacheStore(tmp_path).entries()
    assert len(entries) == 3 * 30 * 5 + 30


async def test_two_processes_writing_large_entries_at_once_lose_nothing(tmp_path: Path) -> None:
    width = INLINE_MAX  # every payload is a file beside the database
    writers = [spawn_writer(tmp_path, f"w{n}", 8, width=width) for n in range(2)]
    for writer in writers:
        writer.communicate(timeout=120)
        assert writer.returncode == 0
    store = SQLiteCacheStore(tmp_path)
    entries = await store.entries()
    assert len(entries) == 2 * 8 * 5 + 8
    loaded = await store.load("p", "g")
    assert set(loaded) == {entry.key for entry in entries}
    for key, payload in loaded.items():
        batch = int(key.rsplit("-", 2)[1] if key.startswith("w") else key.split("-")[1])
        assert json.loads(bytes(payload))["output"] == str(batch) * width
    files = {path.name for path in store.blobs.iterdir()}
    assert len(files) == len(entries)  # a replaced shared entry's file went with it


def test_a_killed_writer_leaves_every_committed_entry_and_no_half_one(tmp_path: Path) -> None:
    writer = spawn_writer(tmp_path, "victim", 100_000)
    assert writer.stdout is not None
    committed = -1
    deadline = time.monotonic() + 30
    while committed < 40 and time.monotonic() < deadline:
        committed = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)  # in the middle of its next transactions
    writer.communicate(timeout=30)
    assert committed >= 40

    async def check() -> None:
        loaded = await SQLiteCacheStore(tmp_path).load("p", "g")
        batches: dict[int, int] = {}
        for key, payload in loaded.items():
            if key.startswith("shared"):
                continue
            _, batch, _ = key.split("-")
            batches[int(batch)] = batches.get(int(batch), 0) + 1
            assert json.loads(bytes(payload))["output"] == batch * 2000
        assert all(count == 5 for count in batches.values())  # whole batches only
        assert set(range(committed + 1)) <= set(batches)  # nothing committed is lost

    trio.run(check)


async def test_a_file_that_is_not_a_database_means_no_cache_with_a_warning(
    tmp_path: Path,
) -> None:
    (tmp_path / DEFAULT_FILENAME).write_bytes(b"this is not sqlite" * 100)
    stage = stub(1)
    pipeline = PipelineDefinition("p", [StageDefinition("a", stage)])
    executor = PipelineExecutor(cache=SQLiteCacheStore(tmp_path))
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        first = await executor.execute(pipeline, 1)
        second = await executor.execute(pipeline, 1)
    assert first.success
    assert second.success
    assert second.uncached_stages == ("a",)
    assert len(stage.calls) == 2
    events = {log["event"] for log in logs}
    assert {"cache_unreadable", "cache_write_failed"} <= events
    assert "the cache could not be read (DatabaseError: file is not a database)" in said[0]
    assert "the cache could not be written" in said[1]


async def test_a_cache_that_cannot_be_written_means_no_cache_with_a_warning(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    # A place no cache could ever be made in is said when the store is made ...
    with pytest.raises(ValueError, match=r"cannot cache: .*a-file is a file, not a directory"):
        SQLiteCacheStore(blocker / "cache.db")
    # ... one that breaks later makes the run go on uncached, said once.
    store = SQLiteCacheStore(tmp_path / "cache" / "cache.db")
    (tmp_path / "cache").write_text("made a file meanwhile")
    executor = PipelineExecutor(cache=store)
    pipeline = PipelineDefinition("p", [StageDefinition("a", stub(1))])
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        result = await executor.execute(pipeline, 1)
    assert result.success
    assert len(said) == 2
    warned = {log["event"]: log for log in logs if log["log_level"] == "warning"}
    assert "FileExistsError" in warned["cache_write_failed"]["error"]
    assert "cache_unreadable" in warned


# -- large payloads, bounds, read-only files, old files ------------------------------


def big(key: str, fill: bytes = b"x", *, size: int = INLINE_MAX + 1) -> CacheRecord:
    return CacheRecord(
        key=key, pipeline="p", stage="s", group="g", payload=fill * size, created_at=1.0
    )


async def test_a_large_payload_is_a_file_beside_the_database_read_back_mapped(
    tmp_path: Path,
) -> None:
    store = SQLiteCacheStore(tmp_path)
    await store.save([big("a"), record("small")])
    (file,) = store.blobs.iterdir()
    assert file.name.startswith("a-")
    assert file.stat().st_size == INLINE_MAX + 1
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT payload FROM entries WHERE key = 'a'").fetchone() == (None,)
    loaded = await store.load("p", "g")
    assert isinstance(loaded["a"], memoryview)  # the file mapped, not copied
    assert bytes(loaded["a"]) == b"x" * (INLINE_MAX + 1)
    assert loaded["small"] == b'{"output":1,"writes":[]}'
    assert [e.size for e in await store.entries()] == [INLINE_MAX + 1, 24]
    await store.save([big("a", b"y")])  # replaced: the old file goes
    (replaced,) = store.blobs.iterdir()
    assert replaced != file
    assert bytes((await store.fetch("p", ["a"]))["a"]) == b"y" * (INLINE_MAX + 1)
    assert await store.clear() == 2
    assert list(store.blobs.iterdir()) == []


async def test_a_blob_file_gone_or_cut_short_reads_as_an_empty_payload(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path)
    await store.save([big("a"), big("b")])
    files = sorted(store.blobs.iterdir())
    files[0].unlink()
    files[1].write_bytes(b"x" * 10)
    assert await store.load("p", "g") == {"a": b"", "b": b""}  # a miss the run warns about


async def test_prune_removes_files_no_entry_names_once_old(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path)
    await store.save([big("kept")])
    store.blobs.joinpath("orphan-1234abcd.bin").write_bytes(b"left by a killed writer")
    store.blobs.joinpath("killed-1234abcd.bin.tmp").write_bytes(b"left half-written")
    store.blobs.joinpath("young-5678abcd.bin.tmp").write_bytes(b"being written right now")
    store.blobs.joinpath("notes.txt").write_bytes(b"not the store's: never removed")
    hours_ago = time.time() - 2 * 3600
    for old in ("orphan-1234abcd.bin", "killed-1234abcd.bin.tmp", "notes.txt"):
        os.utime(store.blobs / old, (hours_ago, hours_ago))
    assert await store.prune() == 0
    names = sorted(path.name[:5] for path in store.blobs.iterdir())
    assert names == ["kept-", "notes", "young"]


async def test_a_read_only_store_is_read_from_and_never_written(tmp_path: Path) -> None:
    writer = SQLiteCacheStore(tmp_path)
    await writer.save([record("a"), big("b")])
    await writer.aclose()
    before = (tmp_path / DEFAULT_FILENAME).read_bytes()
    store = SQLiteCacheStore(tmp_path, read_only=True)
    assert set(await store.load("p", "g")) == {"a", "b"}  # no LRU touch on a read-only file
    assert [e.key for e in await store.entries()] == ["a", "b"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await store.save([record("c")])
    assert (tmp_path / DEFAULT_FILENAME).read_bytes() == before
    if os.geteuid() != 0:  # root writes any file: permissions cannot make it read-only
        (tmp_path / DEFAULT_FILENAME).chmod(0o444)
        assert SQLiteCacheStore(tmp_path).read_only


async def test_a_file_of_an_older_format_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / DEFAULT_FILENAME
    with sqlite3.connect(path) as db:  # the format before blobs and sizes
        db.execute(
            "CREATE TABLE entries (key TEXT PRIMARY KEY, pipeline TEXT NOT NULL, stage TEXT"
            " NOT NULL, item INTEGER, run_group TEXT NOT NULL, created_at REAL NOT NULL,"
            " expires_at REAL, payload TEXT NOT NULL)"
        )
        db.execute("INSERT INTO entries VALUES ('old','p','s',NULL,'g',0,NULL,'{}')")
    assert await SQLiteCacheStore(path, read_only=True).load("p", "g") == {}
    store = SQLiteCacheStore(path)
    assert await store.entries() == []  # its entries could never hit: dropped
    await store.save([record("new")])
    assert set(await store.load("p", "g")) == {"new"}


async def test_a_read_that_takes_too_long_is_interrupted(tmp_path: Path) -> None:
    writer = SQLiteCacheStore(tmp_path)
    await writer.save([record(f"k{i}") for i in range(2000)])
    store = SQLiteCacheStore(tmp_path, read_timeout_s=0.0)
    with pytest.raises(sqlite3.OperationalError, match="interrupted"):
        await store.load("p", "g")
    assert len(await store.entries()) == 2000  # writes and listings are not reads


async def test_what_a_run_holds_is_kept_by_every_store_of_its_file(tmp_path: Path) -> None:
    # Holds belong to the file: a second store object of it in this process (another
    # executor's, the command's) does not evict what a running run holds.
    running = SQLiteCacheStore(tmp_path, max_bytes=5 * (INLINE_MAX + 1))
    other = SQLiteCacheStore(tmp_path, max_bytes=5 * (INLINE_MAX + 1))
    held = {"a"}
    running.hold(held)
    await running.save([big("a")])
    await other.save([big(key) for key in "bcdefg"])
    assert "a" in {entry.key for entry in await other.entries()}
    running.release(held)
    await other.save([big("h")])
    assert "a" not in {entry.key for entry in await other.entries()}
