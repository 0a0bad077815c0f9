"""The store protocol and the in-memory store."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from twinklr.core.pipeline import CacheRecord, CacheStore, MemoryCacheStore, SQLiteCacheStore


def rec(
    key: str, *, pipeline: str = "p", stage: str = "s", expires: float | None = None
) -> CacheRecord:
    return CacheRecord(
        key=key,
        pipeline=pipeline,
        stage=stage,
        group="g",
        payload="{}",
        created_at=float(ord(key[0])),
        expires_at=expires,
    )


def test_both_stores_follow_the_protocol(tmp_path: Path) -> None:
    assert isinstance(MemoryCacheStore(), CacheStore)
    assert isinstance(SQLiteCacheStore(tmp_path), CacheStore)


async def test_memory_store_loads_by_group_and_skips_expired() -> None:
    now = [10.0]
    store = MemoryCacheStore(clock=lambda: now[0])
    await store.save([rec("a"), rec("b", expires=5), rec("c", pipeline="q"), rec("d", expires=50)])
    assert set(await store.load("p", "g")) == {"a", "d"}
    assert await store.load("p", "nope") == {}
    assert len(store) == 4


async def test_memory_store_lists_and_clears() -> None:
    store = MemoryCacheStore(clock=lambda: 10.0)
    await store.save([rec("b", stage="t"), rec("a"), rec("c", pipeline="q", expires=1)])
    assert [e.key for e in await store.entries()] == ["a", "b", "c"]
    assert [e.key for e in await store.entries("q")] == ["c"]
    assert (await store.entries("q"))[0].size == 2
    assert await store.clear(expired_only=True) == 1
    assert await store.clear(stage="t") == 1
    assert await store.clear() == 1
    assert len(store) == 0


async def test_an_emptied_memory_store_gives_its_memory_back() -> None:
    store = MemoryCacheStore(clock=lambda: 10.0)
    records = [rec(f"k{i}") for i in range(20_000)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await store.save(records)
        assert tracemalloc.get_traced_memory()[0] - before > 500_000  # the tables
        assert await store.clear() == 20_000
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 4_096, f"{held} bytes still held by an empty store"
    await store.save([rec("again")])
    assert set(await store.load("p", "g")) == {"again"}
