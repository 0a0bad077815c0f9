"""The store protocol and the in-memory store."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from conftest import batch
from twinklr.core.pipeline import (
    CacheRecord,
    CacheStore,
    MemoryCacheStore,
    PipelineContext,
    PipelineExecutor,
    SQLiteCacheStore,
    StageStatus,
)
from twinklr.core.pipeline._cache._store import Payload


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


# -- the size bound (both stores) ----------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite"])
def bounded(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A factory of bounded stores of either kind, on a clock the test moves."""

    def make(max_bytes: int | None, clock: Clock) -> Any:
        if request.param == "memory":
            return MemoryCacheStore(max_bytes=max_bytes, clock=clock)
        return SQLiteCacheStore(tmp_path, max_bytes=max_bytes, clock=clock)

    return make


def sized(key: str, size: int = 100, *, expires: float | None = None) -> CacheRecord:
    return CacheRecord(
        key=key,
        pipeline="p",
        stage="s",
        group="g",
        payload=b"x" * size,
        created_at=0.0,
        expires_at=expires,
    )


async def keys_of(store: Any) -> set[str]:
    return {entry.key for entry in await store.entries()}


async def test_a_bounded_store_evicts_the_least_recently_used(bounded: Any) -> None:
    clock = Clock()
    store = bounded(300, clock)
    for key in "abc":
        clock.now += 1
        await store.save([sized(key)])
    clock.now += 1
    assert set(await store.fetch("p", ["a"])) == {"a"}  # a read makes "a" recent
    clock.now += 1
    await store.save([sized("d")])
    assert await keys_of(store) == {"a", "c", "d"}  # "b" was used least recently
    entries = {entry.key: entry for entry in await store.entries()}
    assert (entries["a"].used_at, entries["c"].used_at) == (1004.0, 1003.0)
    clock.now += 1
    await store.load("p", "g")  # a run's load uses all it reads
    await store.save([sized("e", 250)])
    assert await keys_of(store) == {"e"}  # as many as it takes, oldest first
    assert sum(entry.size for entry in await store.entries()) <= 300


async def test_what_was_just_written_and_what_runs_hold_are_never_evicted(bounded: Any) -> None:
    clock = Clock()
    store = bounded(250, clock)
    held = {"a"}
    store.hold(held)
    await store.save([sized("a"), sized("b")])
    clock.now += 1
    held.add("c")  # a live set: the run's later keys count too
    await store.save([sized("c"), sized("d")])
    # 400 bytes, but "a" and "c" are held and "d" was just written: only "b" may go.
    assert await keys_of(store) == {"a", "c", "d"}
    await store.save([sized("e", 300)])  # larger than the bound alone: kept, for its run
    assert await keys_of(store) == {"a", "c", "e"}
    store.release(held)
    clock.now += 1
    await store.save([sized("f")])
    assert await keys_of(store) == {"f"}


async def test_prune_by_age_size_and_expiry(bounded: Any) -> None:
    clock = Clock()
    store = bounded(None, clock)
    await store.save([sized("old"), sized("gone", expires=1500.0)])
    clock.now = 1000.0 + 8 * 86400
    await store.save([sized("new"), sized("newer")])
    clock.now += 10
    await store.fetch("p", ["newer"])
    assert await store.prune(older_than=7 * 86400) == 2  # "old", and the expired "gone"
    assert await keys_of(store) == {"new", "newer"}
    held = {"new"}
    store.hold(held)
    assert await store.prune(max_bytes=100) == 1  # "new" is the LRU, but held
    assert await keys_of(store) == {"new"}
    store.release(held)
    assert await store.prune(max_bytes=100) == 0  # it fits
    assert await store.prune(max_bytes=0) == 1
    assert await store.prune() == 0


async def test_entries_are_found_whichever_run_wrote_them(store: CacheStore) -> None:
    # A batch of songs alternating inputs: 4 items, then 2 (the same first two), then 4.
    made: list[str] = []

    async def items(count: int) -> list[int]:
        made.append(f"items {count}")
        return list(range(count))

    async def square(item: int, context: PipelineContext) -> int:
        made.append(f"square {item}")
        context.increment_metric("squared")
        return item * item

    pipeline = batch(square, items)
    executor = PipelineExecutor(cache=store)
    runs = []
    for count in (4, 2, 4):
        made.clear()
        result = await executor.execute(pipeline, count)
        assert result.outputs["sq"] == [i * i for i in range(count)]
        runs.append((list(made), result))
    assert sorted(runs[0][0]) == ["items 4", "square 0", "square 1", "square 2", "square 3"]
    # The second run needs items 0 and 1, written by the first (another input): served.
    assert runs[1][0] == ["items 2"]
    assert runs[1][1].stage_results["sq"].status is StageStatus.CACHED
    assert runs[1][1].metrics["squared"] == 2  # their writes replayed
    # And the first run's entries were neither hidden nor evicted by the second.
    assert runs[2][0] == []
    assert runs[2][1].cached_stages == ("items", "sq")


async def test_a_store_without_an_index_serves_what_runs_of_the_same_input_wrote() -> None:
    class GroupsOnly:
        """The four methods of the CacheStore protocol, nothing more."""

        def __init__(self) -> None:
            self.inner = MemoryCacheStore()

        async def load(self, pipeline: str, group: str) -> dict[str, Payload]:
            return await self.inner.load(pipeline, group)

        async def save(self, records: Any) -> None:
            await self.inner.save(records)

        async def entries(self, pipeline: str | None = None) -> Any:
            return await self.inner.entries(pipeline)

        async def clear(self, *args: Any, **kwargs: Any) -> int:
            return await self.inner.clear(*args, **kwargs)

    calls: list[int] = []

    async def square(item: int) -> int:
        calls.append(item)
        return item * item

    pipeline = batch(square)
    executor = PipelineExecutor(cache=GroupsOnly())
    await executor.execute(pipeline, 3)
    calls.clear()
    await executor.execute(pipeline, 2)
    assert sorted(calls) == [0, 1]  # another input's entries: not seen without an index
    calls.clear()
    assert (await executor.execute(pipeline, 3)).cached_stages == ("items", "sq")
    assert calls == []


def test_both_stores_are_indexed() -> None:
    from twinklr.core.pipeline._cache._store import IndexedCacheStore  # noqa: PLC0415

    assert isinstance(MemoryCacheStore(), IndexedCacheStore)
    assert isinstance(SQLiteCacheStore(Path("unused.sqlite3")), IndexedCacheStore)


async def test_a_fan_out_reads_the_entries_other_runs_wrote_in_one_query() -> None:
    class Counting(MemoryCacheStore):
        def __init__(self) -> None:
            super().__init__()
            self.fetched: list[list[str]] = []

        async def fetch(self, pipeline: str, keys: Any) -> dict[str, Payload]:
            self.fetched.append(list(keys))
            return await super().fetch(pipeline, keys)

    async def square(item: int) -> int:
        return item * item

    pipeline = batch(square)
    store = Counting()
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 50)
    assert store.fetched == []  # a first run has nothing elsewhere to read
    second = await executor.execute(pipeline, 30)
    assert second.stage_results["sq"].status is StageStatus.CACHED
    assert [len(keys) for keys in store.fetched] == [30]  # one read for the 30 items
