"""The SQLite cache's large payloads: files beside the database, read mapped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog.testing

from twinklr.core.pipeline import (
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
    with structlog.testing.capture_logs() as logs:
        again = await executor.execute(pipeline, "carol")
    assert again.cached_stages == ()
    assert len(calls) == 2
    warned = [log for log in logs if log["event"] == "cache_entry_unreadable"]
    assert "not in the .npy format" in warned[0]["error"]
    assert np.array_equal(again.outputs["analyse"], np.arange(100_000, dtype=np.float64))
