"""The SQLite cache's large payloads: files beside the database, read mapped."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest
import structlog.testing

from conftest import cache_warnings
from twinklr.core.pipeline import (
    CacheRecord,
    PipelineDefinition,
    PipelineExecutor,
    SQLiteCacheStore,
    StageDefinition,
)
from twinklr.core.pipeline._cache._blobs import ORPHAN_AGE_S, BlobFolder


def test_a_file_is_written_whole_and_read_back_mapped(tmp_path: Path) -> None:
    folder = BlobFolder(tmp_path / "blobs")
    name = folder.write("key", b"payload")
    assert name.startswith("key-")
    assert name.endswith(".bin")
    assert [path.name for path in folder.path.iterdir()] == [name]  # no temporary left
    assert bytes(folder.read(name, 7)) == b"payload"


def test_a_missing_or_resized_file_reads_as_empty(tmp_path: Path) -> None:
    folder = BlobFolder(tmp_path / "blobs")
    name = folder.write("key", b"payload")
    assert folder.read(name, 8) == b""  # not the size its row says
    assert folder.read("gone.bin", 7) == b""
    folder.unlink([name, "gone.bin"])
    assert list(folder.path.iterdir()) == []


def test_a_sweep_removes_old_files_no_row_names(tmp_path: Path) -> None:
    folder = BlobFolder(tmp_path / "blobs")
    named, orphan, young = (folder.write(key, b"x") for key in ("named", "orphan", "young"))
    old = time.time() - ORPHAN_AGE_S - 60
    for name in (named, orphan):
        os.utime(folder.path / name, (old, old))
    folder.sweep({named})
    assert sorted(path.name for path in folder.path.iterdir()) == sorted([named, young])
    BlobFolder(tmp_path / "never-written").sweep(set())  # no folder: nothing to do


async def test_a_tampered_blob_file_is_a_miss_with_a_warning(tmp_path: Path) -> None:
    import numpy as np  # noqa: PLC0415 (this test's own library)

    calls: list[int] = []

    async def analyse(song: str) -> np.ndarray:
        calls.append(1)
        return np.arange(100_000, dtype=np.float64)  # 800 KB: a file

    store = SQLiteCacheStore(tmp_path)
    pipeline = PipelineDefinition("audio", [StageDefinition("analyse", analyse)])
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, "carol")
    (blob,) = store.blobs.iterdir()
    data = bytearray(blob.read_bytes())
    data[data.index(b"NUMPY")] = ord("X")  # the same size, no longer an .npy array
    blob.write_bytes(bytes(data))
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        again = await executor.execute(pipeline, "carol")
    assert again.cached_stages == ()
    assert "a cached output of stage 'analyse' could not be read" in said[0]
    assert len(calls) == 2
    warned = [log for log in logs if log["event"] == "cache_entry_unreadable"]
    assert "not in the .npy format" in warned[0]["error"]
    assert np.array_equal(again.outputs["analyse"], np.arange(100_000, dtype=np.float64))


def big_record(key: str) -> CacheRecord:
    return CacheRecord(
        key=key, pipeline="p", stage="s", group="g", payload=b"x" * 300_000, created_at=0
    )


def name_a_file(store: SQLiteCacheStore, key: str, file: str) -> None:
    """What a tampered database does: a row naming a file the store did not make."""
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE entries SET file = ? WHERE key = ?", (file, key))


@pytest.mark.parametrize("where", ["outside", "absolute", "not ours"])
async def test_a_row_naming_a_file_the_store_did_not_make_is_never_read_or_deleted(
    tmp_path: Path, where: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"x" * 300_000)  # the size the row says: a read would succeed
    store = SQLiteCacheStore(tmp_path / "cache")
    await store.save([big_record("a")])
    named = {
        "outside": "../../victim.txt",
        "absolute": str(victim),
        "not ours": "victim.txt",
    }[where]
    if where == "not ours":
        (store.blobs / "victim.txt").write_bytes(b"x" * 300_000)
        victim = store.blobs / "victim.txt"
    name_a_file(store, "a", named)
    assert await store.load("p", "g") == {"a": b""}  # a miss, never the file's bytes
    await store.save([big_record("a")])  # replacing the entry
    await store.clear()
    assert victim.read_bytes() == b"x" * 300_000


def test_only_names_the_folder_makes_are_its_own(tmp_path: Path) -> None:
    folder = BlobFolder(tmp_path / "blobs")
    made = folder.write("0123abcd" * 8, b"x")
    assert folder.owns(made)
    for stranger in ("../x.bin", "/etc/passwd", "x.bin", "a-1234567.bin", "a-zzzzzzzz.bin", ""):
        assert not folder.owns(stranger)
    assert folder.owns(folder.write("../../escape", b"x"))  # a key that is no name is hashed
    assert all(path.parent == folder.path for path in folder.path.iterdir())
