"""The cache-store contract as cases: `cache_store_conformance`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import trio

from .._cache._store import CacheRecord, CacheStore, IndexedCacheStore
from ._common import Check, check_each, expect


def _record(
    key: str,
    payload: bytes | bytearray | memoryview = b"{}",
    *,
    pipeline: str = "p",
    group: str = "g",
    stage: str = "s",
    created_at: float | None = None,
    expires_at: float | None = None,
) -> CacheRecord:
    return CacheRecord(
        key=key,
        pipeline=pipeline,
        stage=stage,
        group=group,
        payload=payload,
        created_at=time.time() if created_at is None else created_at,
        expires_at=expires_at,
    )


def _equal(found: object, expected: bytes, what: str) -> None:
    got = bytes(found)  # type: ignore[call-overload]
    expect(
        got == expected, f"{what} came back as {len(got)} bytes unlike the {len(expected)} saved"
    )


# -- the cache-store cases ------------------------------------------------------------


async def _loaded_by_pipeline_and_group(store: CacheStore) -> None:
    await store.save([_record("k1", b"one"), _record("k2", b"two")])
    found = await store.load("p", "g")
    expect(set(found) == {"k1", "k2"}, f"load('p', 'g') gave keys {sorted(found)}")
    _equal(found["k1"], b"one", "k1")
    expect(not await store.load("p", "other"), "another run group's load saw them")
    expect(not await store.load("other", "g"), "another pipeline's load saw them")


async def _saving_again_replaces(store: CacheStore) -> None:
    await store.save([_record("k", b"first")])
    await store.save([_record("k", b"second")])
    _equal((await store.load("p", "g"))["k"], b"second", "the entry saved twice")
    expect(len(await store.entries("p")) == 1, "saving a key again made a second entry")


async def _byte_for_byte(store: CacheStore) -> None:
    payloads: dict[str, bytes | bytearray | memoryview] = {
        "empty": b"",
        "every-byte": bytes(range(256)) * 4,
        "bytearray": bytearray(b"\x00\xff" * 100),
        "memoryview": memoryview(b"view" * 1000),
        "large": os.urandom(8 << 20),
    }
    await store.save([_record(key, payload) for key, payload in payloads.items()])
    found = await store.load("p", "g")
    for key, payload in payloads.items():
        expect(key in found, f"the {key} payload was not loaded")
        _equal(found[key], bytes(payload), f"the {key} payload")


async def _many_in_one_save(store: CacheStore) -> None:
    count = 500
    await store.save([_record(f"k{n}", b"%d" % n) for n in range(count)])
    found = await store.load("p", "g")
    expect(len(found) == count, f"a save of {count} records kept {len(found)}")


async def _expired_not_served(store: CacheStore) -> None:
    now = time.time()
    await store.save([_record("old", expires_at=now - 60), _record("new", expires_at=now + 3600)])
    expect(set(await store.load("p", "g")) == {"new"}, "an expired entry was served")
    listed = {entry.key for entry in await store.entries()}
    expect(listed == {"old", "new"}, f"entries() listed {sorted(listed)}")
    removed = await store.clear(expired_only=True)
    expect(removed == 1, f"clear(expired_only=True) said {removed}")
    left = {entry.key for entry in await store.entries()}
    expect(left == {"new"}, f"clear(expired_only=True) left {sorted(left)}")


async def _entries_listed(store: CacheStore) -> None:
    now = time.time()
    await store.save([_record("b", b"22", created_at=now - 10)])
    await store.save([_record("a", b"1", created_at=now - 20)])
    await store.save([_record("c", b"333", pipeline="q", created_at=now)])
    listed = await store.entries()
    expect([entry.key for entry in listed] == ["a", "b", "c"], "entries() is not oldest first")
    sizes = {entry.key: entry.size for entry in listed}
    expect(sizes == {"a": 1, "b": 2, "c": 3}, f"entries() gave sizes {sizes}")
    of_q = [entry.key for entry in await store.entries("q")]
    expect(of_q == ["c"], f"entries('q') listed {of_q}")


async def _clear_counts(store: CacheStore) -> None:
    await store.save(
        [
            _record("a", stage="s1"),
            _record("b", stage="s2"),
            _record("c", stage="s2"),
            _record("d", pipeline="q"),
        ]
    )
    removed = await store.clear("p", stage="s2")
    expect(removed == len("bc"), f"clear(stage=...) of two said {removed}")
    expect(await store.clear("p") == 1, "clear(pipeline) miscounted")
    expect(await store.clear() == 1, "clear() miscounted")
    expect(await store.entries() == [], "clear() left entries")


async def _concurrent_saves(store: CacheStore) -> None:
    async def writer(n: int) -> None:
        await store.save([_record(f"w{n}-{m}", b"x" * n) for m in range(10)])

    writers = 20
    async with trio.open_nursery() as nursery:
        for n in range(writers):
            nursery.start_soon(writer, n)
    found = await store.load("p", "g")
    expect(len(found) == writers * 10, f"{writers} concurrent saves of 10 kept {len(found)}")


async def _indexed(store: CacheStore) -> None:
    if not isinstance(store, IndexedCacheStore):
        return  # (a plain store serves each run what runs of its own input wrote)
    now = time.time()
    await store.save(
        [
            _record("k1", b"one", group="g1"),
            _record("k2", b"two", group="g2"),
            _record("gone", group="g1", expires_at=now - 1),
        ]
    )
    expect({"k1", "k2"} <= set(await store.keys("p")), "keys() missed saved entries")
    found = await store.fetch("p", ["k1", "k2", "gone", "missing"])
    expect(set(found) == {"k1", "k2"}, f"fetch() gave {sorted(found)}")
    _equal(found["k2"], b"two", "a fetched entry")
    expect(not await store.fetch("q", ["k1"]), "fetch() served another pipeline's entry")


async def _bounded(store: CacheStore) -> None:
    bound = getattr(store, "max_bytes", None)
    hold = getattr(store, "hold", None)
    if bound is None or hold is None:
        return  # (an unbounded store)
    held = {"held"}
    hold(held)
    try:
        await store.save([_record("held", b"h" * 10)])
        chunk = max(1, bound // 4)
        for n in range(8):
            await store.save([_record(f"fill{n}", b"f" * chunk)])
        listed = await store.entries()
        kept = {entry.key for entry in listed}
        expect("held" in kept, "an entry a run holds was evicted")
        total = sum(entry.size for entry in listed)
        expect(total <= bound + 10 + chunk, f"{total} bytes kept against max_bytes={bound}")
    finally:
        store.release(held)  # type: ignore[attr-defined]


_CACHE_CASES: list[tuple[str, Check]] = [
    ("a saved entry is loaded by its pipeline and run group only", _loaded_by_pipeline_and_group),
    ("saving a key again replaces its payload", _saving_again_replaces),
    ("payloads come back byte for byte, empty to 8 MB", _byte_for_byte),
    ("one save keeps every record", _many_in_one_save),
    ("an expired entry is not served, but listed and cleared", _expired_not_served),
    ("entries() lists every entry with its size, oldest first", _entries_listed),
    ("clear() deletes what it matches and says how many", _clear_counts),
    ("concurrent saves are all kept", _concurrent_saves),
    ("keys() and fetch() find entries whatever run group wrote them", _indexed),
    ("a bounded store keeps within max_bytes and never evicts a held entry", _bounded),
]


async def cache_store_conformance(factory: Callable[[], CacheStore]) -> None:
    """Check a cache store against the [CacheStore][twinklr.core.pipeline.CacheStore]
    contract (and [IndexedCacheStore][twinklr.core.pipeline.IndexedCacheStore]'s, and
    the size bound's, when it has them), each case on a fresh store from ``factory``.

    Raises:
        AssertionError: The first promise the store broke, named, with what it did.
    """
    await check_each("cache-store", factory, _CACHE_CASES)
