"""Cache stores: where successful stage outputs are kept between runs.

A store holds :class:`CacheRecord` rows: a key (see ``_run_cache`` for what goes into
it), the pipeline and stage it belongs to, the *run group* (a fingerprint of the pipeline
and the run's initial input, so that a run reads everything an earlier run of the same
input left in one go), when it expires, and the payload (JSON text). Stores never
interpret payloads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol, runtime_checkable

import attrs


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
    payload: str
    """The JSON text: output, and the state and metric writes to replay."""
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


@runtime_checkable
class CacheStore(Protocol):
    """What the executor needs from a store. All methods are async and never block the
    Trio loop; ``save`` is atomic (all records or none).

    A store that also has ``keys`` and ``fetch`` (:class:`IndexedCacheStore`, as both
    stores here do) serves an entry to any run whose stage needs it, whichever run
    wrote it; with only these four methods a run is served what runs of its own input
    wrote.
    """

    async def load(self, pipeline: str, group: str) -> dict[str, str]:
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

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, str]:
        """Key -> payload for those of ``keys`` that are unexpired entries of ``pipeline``."""
        ...


class MemoryCacheStore:
    """A store in a dict: for tests and for caching within one process's lifetime."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._records: dict[str, CacheRecord] = {}
        # (pipeline, group) -> key -> record: a run loads its group without a scan
        self._groups: dict[tuple[str, str], dict[str, CacheRecord]] = {}
        # pipeline -> its keys (a dict as an ordered set), for content-addressed lookups
        self._keys: dict[str, dict[str, None]] = {}
        self._clock = clock

    async def keys(self, pipeline: str) -> AbstractSet[str]:
        """The keys of every entry of ``pipeline`` (a live view: no copy)."""
        return self._keys.get(pipeline, {}).keys()

    async def fetch(self, pipeline: str, keys: Sequence[str]) -> dict[str, str]:
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
        return found

    async def load(self, pipeline: str, group: str) -> dict[str, str]:
        """Key -> payload for every unexpired entry of ``pipeline`` in ``group``."""
        now = self._clock()
        return {
            key: record.payload
            for key, record in self._groups.get((pipeline, group), {}).items()
            if record.expires_at is None or record.expires_at > now
        }

    async def save(self, records: Sequence[CacheRecord]) -> None:
        """Write ``records`` (an entry with the same key is replaced, but keeps its run
        group: a run of another input must not take it from the runs that read it)."""
        for record in records:
            old = self._records.get(record.key)
            if old is not None and old.group != record.group:
                record = attrs.evolve(record, group=old.group)  # noqa: PLW2901
            self._forget(record.key)
            self._records[record.key] = record
            self._groups.setdefault((record.pipeline, record.group), {})[record.key] = record
            self._keys.setdefault(record.pipeline, {})[record.key] = None

    def _forget(self, key: str) -> None:
        old = self._records.pop(key, None)
        if old is not None:
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
                    size=len(r.payload.encode()),
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
            self._records, self._groups, self._keys = {}, {}, {}
        return len(doomed)

    def __len__(self) -> int:
        return len(self._records)
