"""The cache-store contract as checks, run against the memory and SQLite stores (and a
store that breaks a promise, to see it named)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import pytest

from twinklr.core.pipeline import CacheRecord, MemoryCacheStore, SQLiteCacheStore
from twinklr.core.pipeline.testing import cache_store_conformance


async def test_the_memory_store_keeps_every_promise() -> None:
    await cache_store_conformance(MemoryCacheStore)
    await cache_store_conformance(lambda: MemoryCacheStore(max_bytes=10_000))


async def test_the_sqlite_store_keeps_every_promise(tmp_path: Path) -> None:
    fresh = itertools.count()
    await cache_store_conformance(lambda: SQLiteCacheStore(tmp_path / f"c{next(fresh)}"))
    await cache_store_conformance(
        lambda: SQLiteCacheStore(tmp_path / f"b{next(fresh)}", max_bytes=10_000)
    )


class ForgetsReplacing(MemoryCacheStore):
    """Keeps the first payload saved under a key."""

    async def save(self, records: Sequence[CacheRecord]) -> None:
        await super().save([r for r in records if r.key not in self._records])


class Raises(MemoryCacheStore):
    async def entries(self, pipeline: str | None = None) -> list:  # type: ignore[type-arg]
        raise OSError("disk gone")


async def test_the_first_broken_promise_is_named_with_what_the_store_did() -> None:
    with pytest.raises(AssertionError) as broken:
        await cache_store_conformance(ForgetsReplacing)
    assert "breaks a cache-store promise: saving a key again replaces its payload: " in str(
        broken.value
    )
    assert "the entry saved twice came back as 5 bytes unlike the 6 saved" in str(broken.value)
    with pytest.raises(
        AssertionError, match=r"saving a key again replaces its payload: OSError: disk gone"
    ):
        await cache_store_conformance(Raises)
