"""Cache stores: where successful stage outputs are kept between runs.

A store holds `CacheRecord` rows: a key (see ``_run_cache`` for what goes into
it), the pipeline and stage it belongs to, the *run group* (a fingerprint of the pipeline
and the run's initial input, so that a run reads everything an earlier run of the same
input left in one go), when it expires, and the payload (bytes: JSON, or JSON framed
with binary values, see ``_payload``). Stores never interpret payloads.

Both stores here can be bounded (``max_bytes``): beyond it they evict the entries used
least recently, except those a run in progress holds (`MemoryCacheStore.hold`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol, runtime_checkable

import attrs

#: What a store holds and gives back: bytes, or a view of a buffer (a numpy array's, a
#: mapped file's). ``bytes(payload)`` always gives its bytes.
Payload = bytes | bytearray | memoryview

#: How text becomes bytes and back: UTF-8, lone surrogates kept as they are (what
#: ``os.fsdecode`` gives for a file name that is not UTF-8), so every str round-trips.
UTF8 = ("utf-8", "surrogatepass")


def _as_payload(value: str | Payload) -> Payload:
    return value.encode(*UTF8) if isinstance(value, str) else value


def payload_size(payload: Payload) -> int:
    """A payload's size in bytes."""
    return payload.nbytes if isinstance(payload, memoryview) else len(payload)


@attrs.frozen(kw_only=True)
class CacheRecord:
    """One stored stage output (or fan-out item output)."""

    key: str
    """The cache key (a SHA-256 hex digest)."""
    pipeline: str
    """The pipeline's name."""
    stage: str
    """The stage id."""
    item: int | None = None
    """For a fan-out stage, the item's index when it was written; None otherwise."""
    group: str
    """The run group: which run input produced it (read together by later runs)."""
    payload: Payload = attrs.field(converter=_as_payload)
    """The output, and the state and metric writes to replay (text is taken as UTF-8)."""
    created_at: float
    """When it was written (seconds since the epoch)."""
    expires_at: float | None = None
    """When it stops being served (seconds since the epoch); None: never."""


@attrs.frozen(kw_only=True)
class CacheEntry:
    """What listing a store tells about one entry (everything but the payload)."""

    key: str
    """The cache key."""
    pipeline: str
    """The pipeline's name."""
    stage: str
    """The stage id."""
    item: int | None
    """For a fan-out stage, the item's index when it was written; None otherwise."""
    created_at: float
    """When it was written (seconds since the epoch)."""
    expires_at: float | None
    """When it stops being served; None: never."""
    size: int
    """Payload size in bytes."""
    used_at: float | None = None
    """When it was last written or read (seconds since the epoch), for LRU eviction."""


@runtime_checkable
class CacheStore(Protocol):
    """What the executor needs from a store. All methods are async and never block the
    Trio loop; ``save`` is atomic (all records or none).

    A store that also has ``keys`` and ``fetch``
    ([IndexedCacheStore][twinklr.core.pipeline.IndexedCacheStore], as both stores here
    do) serves an entry to any run whose stage needs it, whichever run wrote it; with
    only these four methods a run is served what runs of its own input wrote.

    A run gives each read ``LOAD_TIMEOUT_S`` (30 s, on Trio's clock) and each save
    ``SAVE_TIMEOUT_S``, then goes on without it; a store whose reads are bounded on
    their own, in real time, says so with a true ``bounds_reads`` attribute and is
    not timed by the run (a worker thread's read would count as idle time for a test's
    virtual clock). A store with ``hold(keys)`` and ``release(keys)`` is told which
    entries a run in progress needs (see ``Holds``).
    """

    async def load(self, pipeline: str, group: str) -> dict[str, Payload]:
        """Key -> payload for every unexpired entry of ``pipeline`` in ``group``."""
        ...

    async def save(self, records: Sequence[CacheRecord]) -> None:
        """Write ``records`` in one transaction (an entry with the same key is replaced;
        it may keep the run group it was first written in)."""
        ...

    async def entries(self, pipeline: str | None = None) -> list[CacheEntry]:
        """Every entry (of ``pipeline``), expired ones included, oldest first."""
        ...

    async def clear(
        self, pipeline: str | None = None, *, stage: str | None = None, expired_only: bool = False
    ) -> int:
        """Delete entries (of ``pipeline``, of ``stage``, or only expired ones); return
        how many were deleted."""
        ...


@runtime_checkable
class IndexedCacheStore(CacheStore, Protocol):
    """A store that can say which keys it holds and read entries by key: entries are
    then content-addressed, found by what determines them whatever run wrote them."""

    async def keys(self, pipeline: str) -> AbstractSet[str]:
        """The keys of every entry of ``pipeline`` (expired ones may be among them)."""
        ...

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, Payload]:
        """Key -> payload for those of ``keys`` that are unexpired entries of ``pipeline``."""
        ...


class Holds:
    """The keys runs in progress hold: a bounded store never evicts them.

    A run holds the entries it read and the ones it wrote (what a rerun of it needs to
    resume) from its start to its end; the sets are the runs' own, read by the store
    from whichever thread evicts (a membership test on a set the run adds to is safe).
    """

    def __init__(self) -> None:
        self._sets: list[AbstractSet[str]] = []
        self._lock = threading.Lock()

    def hold(self, keys: AbstractSet[str]) -> None:
        """Never evict the keys in ``keys`` (a live set: keys added later count too)
        until `release`."""
        with self._lock:
            self._sets.append(keys)

    def release(self, keys: AbstractSet[str]) -> None:
        """Stop holding ``keys`` (the set given to `hold`)."""
        with self._lock:
            self._sets = [held for held in self._sets if held is not keys]

    def __contains__(self, key: object) -> bool:
        with self._lock:
            sets = list(self._sets)
        return any(key in held for held in sets)


@attrs.frozen
class Kept:
    """What eviction spares: the keys just written, and those runs in progress hold."""

    written: AbstractSet[str]
    holds: Holds

    def __contains__(self, key: object) -> bool:
        return key in self.written or key in self.holds


def evictable(
    candidates: Iterable[tuple[str, int]], total: int, max_bytes: int, keep: Container[str]
) -> Iterator[str]:
    """Which of ``candidates`` (key and size, least recently used first) to evict to
    bring ``total`` bytes down to ``max_bytes``, never one in ``keep``."""
    for key, size in candidates:
        if total <= max_bytes:
            return
        if key not in keep:
            total -= size
            yield key


class MemoryCacheStore:
    """A store in a dict: for tests and for caching within one process's lifetime.

    Args:
        max_bytes: A bound on the payloads it keeps: beyond it the entries used least
            recently are evicted, except those runs in progress hold. None: unbounded.
        clock: The wall clock entries are dated by (for tests).
    """

    #: Reads never wait: nothing to bound.
    bounds_reads = True

    def __init__(
        self, *, max_bytes: int | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        # key -> record, least recently used first (a use moves a key to the end)
        self._records: dict[str, CacheRecord] = {}
        self._used: dict[str, float] = {}
        # (pipeline, group) -> key -> record: a run loads its group without a scan
        self._groups: dict[tuple[str, str], dict[str, CacheRecord]] = {}
        # pipeline -> its keys (a dict as an ordered set), for content-addressed lookups
        self._keys: dict[str, dict[str, None]] = {}
        self._bytes = 0
        self.max_bytes = max_bytes
        self.holds = Holds()
        self._clock = clock

    def hold(self, keys: AbstractSet[str]) -> None:
        """Never evict ``keys`` (a live set) until `release` (see `Holds`)."""
        self.holds.hold(keys)

    def release(self, keys: AbstractSet[str]) -> None:
        """Stop holding ``keys``."""
        self.holds.release(keys)

    @property
    def size(self) -> int:
        """The bytes of every payload it keeps."""
        return self._bytes

    def _touch(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for key in keys:
            record = self._records.pop(key)
            self._records[key] = record
            self._used[key] = now

    async def keys(self, pipeline: str) -> AbstractSet[str]:
        """The keys of every entry of ``pipeline`` (a live view: no copy)."""
        return self._keys.get(pipeline, {}).keys()

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, Payload]:
        """Key -> payload for those of ``keys`` that are unexpired entries of ``pipeline``."""
        now = self._clock()
        found = {}
        for key in keys:
            record = self._records.get(key)
            if (
                record is not None
                and record.pipeline == pipeline
                and (record.expires_at is None or record.expires_at > now)
            ):
                found[key] = record.payload
        self._touch(found)
        return found

    async def load(self, pipeline: str, group: str) -> dict[str, Payload]:
        """Key -> payload for every unexpired entry of ``pipeline`` in ``group``."""
        now = self._clock()
        found = {
            key: record.payload
            for key, record in self._groups.get((pipeline, group), {}).items()
            if record.expires_at is None or record.expires_at > now
        }
        self._touch(found)
        return found

    async def save(self, records: Sequence[CacheRecord]) -> None:
        """Write ``records`` (an entry with the same key is replaced, but keeps its run
        group: a run of another input must not take it from the runs that read it),
        then evict beyond ``max_bytes`` (never what was just written)."""
        now = self._clock()
        for record in records:
            old = self._records.get(record.key)
            if old is not None and old.group != record.group:
                record = attrs.evolve(record, group=old.group)  # noqa: PLW2901
            self._forget(record.key)
            self._records[record.key] = record
            self._used[record.key] = now
            self._bytes += payload_size(record.payload)
            self._groups.setdefault((record.pipeline, record.group), {})[record.key] = record
            self._keys.setdefault(record.pipeline, {})[record.key] = None
        if self.max_bytes is not None:
            self._evict(self.max_bytes, {record.key for record in records})

    def _evict(self, max_bytes: int, written: AbstractSet[str]) -> int:
        keep = Kept(written, self.holds)
        sizes = ((key, payload_size(r.payload)) for key, r in self._records.items())
        doomed = list(evictable(sizes, self._bytes, max_bytes, keep))
        for key in doomed:
            self._forget(key)
        return len(doomed)

    async def prune(self, *, max_bytes: int | None = None, older_than: float | None = None) -> int:
        """Delete expired entries, entries not used for ``older_than`` seconds, then the
        least recently used beyond ``max_bytes``, none that a run in progress holds;
        return how many were deleted."""
        now = self._clock()
        doomed = [
            key
            for key, record in self._records.items()
            if key not in self.holds
            and (
                (record.expires_at is not None and record.expires_at <= now)
                or (older_than is not None and self._used[key] <= now - older_than)
            )
        ]
        for key in doomed:
            self._forget(key)
        evicted = 0 if max_bytes is None else self._evict(max_bytes, frozenset())
        return len(doomed) + evicted

    def _forget(self, key: str) -> None:
        old = self._records.pop(key, None)
        if old is not None:
            del self._used[key]
            self._bytes -= payload_size(old.payload)
            group = self._groups[old.pipeline, old.group]
            del group[key]
            if not group:
                del self._groups[old.pipeline, old.group]
            keys = self._keys[old.pipeline]
            del keys[key]
            if not keys:
                del self._keys[old.pipeline]

    async def entries(self, pipeline: str | None = None) -> list[CacheEntry]:
        """Every entry (of ``pipeline``), expired ones included, oldest first."""
        return sorted(
            (
                CacheEntry(
                    key=r.key,
                    pipeline=r.pipeline,
                    stage=r.stage,
                    item=r.item,
                    created_at=r.created_at,
                    expires_at=r.expires_at,
                    size=payload_size(r.payload),
                    used_at=self._used[r.key],
                )
                for r in self._records.values()
                if pipeline is None or r.pipeline == pipeline
            ),
            key=lambda entry: (entry.created_at, entry.key),
        )

    async def clear(
        self, pipeline: str | None = None, *, stage: str | None = None, expired_only: bool = False
    ) -> int:
        """Delete matching entries; return how many were deleted."""
        now = self._clock()
        doomed = [
            key
            for key, r in self._records.items()
            if (pipeline is None or r.pipeline == pipeline)
            and (stage is None or r.stage == stage)
            and (not expired_only or (r.expires_at is not None and r.expires_at <= now))
        ]
        for key in doomed:
            self._forget(key)
        if not self._records:  # emptied: give back the tables (a dict never shrinks)
            self._records, self._used, self._groups, self._keys = {}, {}, {}, {}
        return len(doomed)

    def __len__(self) -> int:
        return len(self._records)
