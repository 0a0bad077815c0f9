"""One run's use of a cache store: keys, lookups, replay, success-only write-behind.

What goes into a key (SHA-256 of the canonical JSON of):
  the key format version, the pipeline name, the stage id, the stage's ``version``, the
  qualified names of the stage's code and a SHA-256 of its source (see ``_code``: its
  class and what it inherits, a function stage's function, what ``cache_code()``
  declares), whether it is a whole stage or one fan-out item, the type-tagged
  fingerprint of the stage's input (of the item's input, for fan-out), and a function
  stage's ``@stage`` version.
So edited code, a bumped ``version`` or a different input never hits an old entry.
To invalidate by hand: bump ``version``, or clear the store (all, a pipeline, a stage).

A run reads its *group* (the pipeline and its initial input) once, when it starts, with
the keys the store holds for the pipeline: an entry another run wrote (a run of another
input that gave a stage the same input) is fetched when a stage needs it, so entries are
found by what determines them and no run hides another's, while the common lookups need
no I/O. Writes are queued and saved in batches by a writer task that outlives fail-fast
cancellation and finishes its saves when the run is cancelled from outside, so every
stage that succeeded is kept for the rerun.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

from .._kinds._function import FunctionStage
from .._values._results import StageResult, make_result
from .._values._status import StageStatus
from . import _codec, _payload, _serialize
from ._code import code_identity, owner
from ._store import CacheRecord, CacheStore, IndexedCacheStore, Payload

if TYPE_CHECKING:
    from .._values._context import PipelineContext, Write
    from ..definition import StageDefinition

# 2: type-tagged input fingerprints, code hashes over the MRO and wrapped code;
# 3: binary values in blobs beside the JSON (no base64), numpy and pydantic inputs;
# 4: time zones and pydantic's set fields in fingerprints
KEY_FORMAT = 4
#: How long one save may take; it is shielded from the run's cancellation meanwhile.
SAVE_TIMEOUT_S = 30.0
#: How long one read of the store may take (then the run goes on without what it reads).
LOAD_TIMEOUT_S = 30.0

# Keyed by a stage's class, or a function stage's function (held weakly).
_output_types: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def output_type(sdef: StageDefinition[Any]) -> Any:
    """The type a cached output is read back as."""
    if sdef.output_type is not None and not isinstance(sdef.output_type, str):
        return sdef.output_type  # a string is documentation (as in the original Twinklr)
    code = owner(sdef.stage)
    known = _output_types.get(code, _UNKNOWN)
    if known is _UNKNOWN:
        known = _output_types[code] = _serialize.declared_output_type(sdef.stage)
    return known


_UNKNOWN = object()


def ttl_seconds(ttl: float | timedelta | None) -> float | None:
    """A stage's ``cache_ttl`` in seconds."""
    if isinstance(ttl, timedelta):
        return ttl.total_seconds()
    return ttl


class RunCache:
    """The cache as one run sees it."""

    def __init__(
        self,
        store: CacheStore,
        pipeline: str,
        initial_input: Any,
        log: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.pipeline = pipeline
        self.log = log
        self.clock = clock
        self.entries: dict[str, Payload] = {}
        # Every key the store holds for the pipeline, whichever run wrote it.
        self.known: AbstractSet[str] = frozenset()
        self.enabled = True
        # What a rerun of this run needs to resume: the entries it read and wrote. A
        # bounded store never evicts them while this run goes on.
        self.held: set[str] = set()
        self._release: Callable[[set[str]], None] | None = None
        self._warned: set[tuple[str, str]] = set()
        try:
            self.group = _serialize.fingerprint([pipeline, initial_input])
        except _serialize.NotSerializableError as exc:
            self.group = ""
            self.enabled = False
            self._warn_once("", "cache_disabled", reason=f"initial input: {exc}")
        send, receive = trio.open_memory_channel[CacheRecord](math.inf)
        self._send, self._receive = send, receive

    def _warn_once(self, stage: str, event: str, **fields: Any) -> None:
        if (stage, event) not in self._warned:
            self._warned.add((stage, event))
            self.log.warning(event, stage=stage or None, **fields)

    # -- reading ------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the entries earlier runs of this input left, and which keys the store
        holds (a failure: none, warned)."""
        if not self.enabled:
            return
        store = self.store
        hold, release = getattr(store, "hold", None), getattr(store, "release", None)
        if callable(hold) and callable(release):  # a bounded store: spare what we need
            hold(self.held)
            self._release = release
        entries = await self._read(Mapping, store.load, self.pipeline, self.group)
        if entries is not None:
            # a copy: this run adds to it, and a store may have handed over its own dict
            self.entries = dict(entries)
            self.held.update(entries)
            if isinstance(store, IndexedCacheStore):
                self.known = await self._read(AbstractSet, store.keys, self.pipeline) or frozenset()

    async def _read(self, kind: type, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """What the store's ``method`` reads, within ``LOAD_TIMEOUT_S`` unless the store
        bounds its reads itself; None (warned once) when it fails, takes longer, or gives
        something that is not a ``kind``: the run goes on with fewer hits."""
        timeout = math.inf if getattr(self.store, "bounds_reads", False) else LOAD_TIMEOUT_S
        with trio.move_on_after(timeout) as scope:
            try:
                found = await method(*args)
            except Exception as exc:  # noqa: BLE001 - an unreadable store means no hits
                self._warn_once("", "cache_unreadable", error=_describe(exc))
                return None
            if not isinstance(found, kind):
                name = getattr(method, "__name__", "a read")
                error = f"{name}() gave {type(found).__name__} {found!r:.60}, not a {kind.__name__}"
                self._warn_once("", "cache_unreadable", error=f"the store is broken: {error}")
                return None
            return found
        if scope.cancelled_caught:
            self._warn_once("", "cache_read_timed_out", timeout_s=LOAD_TIMEOUT_S)
        return None

    def elsewhere(self, key: str) -> bool:
        """Whether ``key`` is an entry another run wrote (held by the store, not loaded
        with this run's own): `fetch` it before serving."""
        return key not in self.entries and key in self.known

    async def fetch(self, keys: list[str]) -> None:
        """Read the entries ``keys`` from the store (in one call), for `serve` (a
        failure: misses, warned)."""
        if not keys:
            return
        store = self.store
        assert isinstance(store, IndexedCacheStore)  # noqa: S101 (known keys come from one)
        found = await self._read(Mapping, store.fetch, self.pipeline, keys)
        if found:
            self.entries.update(found)
            self.held.update(found)

    def key(self, sdef: StageDefinition[Any], value: Any, *, item: bool = False) -> str | None:
        """The key for running ``sdef`` on ``value``; None when the input has no
        fingerprint (then the stage runs uncached, warned once)."""
        if not self.enabled:
            return None
        try:
            input_print = _serialize.fingerprint(value)
        except _serialize.NotSerializableError as exc:
            self._warn_once(sdef.id, "cache_input_not_serializable", error=str(exc))
            return None
        stage = sdef.stage
        name, digest = code_identity(stage)
        parts = [
            KEY_FORMAT,
            self.pipeline,
            sdef.id,
            sdef.version,
            name,
            digest,
            "item" if item else "stage",
            input_print,
        ]
        if isinstance(stage, FunctionStage):
            parts.append(stage.version)  # @stage(version=...)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def lookup(self, sdef: StageDefinition[Any], key: str) -> tuple[Any, list[Write]] | None:
        """The cached output and writes for ``key``; None on a miss (a corrupt entry is a
        miss, warned once)."""
        payload = self.entries.get(key)
        if payload is None:
            return None
        try:
            data, blobs = _payload.unpack(payload)
            form = data.get("form")
            if form == "tagged":  # stored without a declared type
                output = _codec.decode(data["output"], blobs)
            elif form == "model":  # a pydantic model of the declared class
                output = _serialize.model_from_json(data["output"], output_type(sdef))
            else:
                output = _serialize.structure(data["output"], output_type(sdef))
            writes = [
                (str(op), str(name), _codec.decode(value, blobs))
                for op, name, value in data["writes"]
            ]
        except Exception as exc:  # noqa: BLE001 - whatever is wrong, it is a miss
            self._warn_once(sdef.id, "cache_entry_unreadable", key=key, error=_describe(exc))
            return None
        return output, writes

    def serve(
        self, sdef: StageDefinition[Any], key: str, context: PipelineContext
    ) -> StageResult[Any] | None:
        """The cached result for ``key``, its writes replayed into ``context``; None on a
        miss. Counts ``cache_hits`` and ``cache_misses`` in the context's metrics."""
        hit = self.lookup(sdef, key)
        if hit is None:
            context.increment_metric("cache_misses")
            return None
        output, writes = hit
        context.replay(writes)
        context.increment_metric("cache_hits")
        return make_result(
            StageStatus.CACHED,
            output,
            None,
            sdef.id,
            MappingProxyType({"attempts": 0, "cache_key": key}),
        )

    # -- writing ------------------------------------------------------------------------

    def offer(
        self,
        sdef: StageDefinition[Any],
        key: str,
        output: Any,
        writes: list[Write],
        *,
        item: int | None = None,
    ) -> None:
        """Queue a successful output (with its writes) for saving; an output or a write
        that cannot come back from JSON equal is not cached (warned once)."""
        blobs: list[_codec.Blob] = []
        try:
            stored = _stored_output(output, output_type(sdef), blobs)
            stored["writes"] = [
                [op, name, _serialize.tagged_round_trip(value, blobs)] for op, name, value in writes
            ]
            payload = _payload.pack(stored, blobs)  # the copy: the value as it is now
        except _serialize.NotSerializableError as exc:
            self._warn_once(sdef.id, "cache_output_not_serializable", error=str(exc))
            return
        now = self.clock()
        ttl = ttl_seconds(sdef.cache_ttl)
        record = CacheRecord(
            key=key,
            pipeline=self.pipeline,
            stage=sdef.id,
            item=item,
            group=self.group,
            payload=payload,
            created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        self.entries[key] = payload
        self.held.add(key)
        self._send.send_nowait(record)

    def offer_items(
        self,
        sdef: StageDefinition[Any],
        key: str,
        snapshots: Snapshots,
        output: Any,
        writes: list[Write],
    ) -> None:
        """`offer` a streaming stage's items as they were when it yielded them
        (its consumers may have changed them since); not cached when they could not
        be copied (warned once)."""
        count = len(output or ())
        items = snapshots.items[len(snapshots.items) - count :]  # the last attempt's
        if snapshots.error is not None or len(items) != count:
            error = snapshots.error or "its items were not all seen as they were yielded"
            self._warn_once(sdef.id, "cache_output_not_serializable", error=str(error))
            return
        self.offer(sdef, key, items, writes)

    async def write_behind(self) -> None:
        """Save queued records in batches until `close`.

        Each save is shielded (for at most ``SAVE_TIMEOUT_S``): cancelling the run from
        outside lets the batch in hand, and then what is still queued, reach the store
        before the cancellation goes on.
        """
        try:
            async for record in self._receive:
                await self._save_shielded([record, *self._drain()])
        finally:
            leftover = self._drain()
            if leftover:
                await self._save_shielded(leftover)
            if self._release is not None:
                self._release(self.held)
                self._release = None

    def close(self) -> None:
        """No more writes: the writer saves what is queued and ends."""
        self._send.close()

    def _drain(self) -> list[CacheRecord]:
        batch = []
        while True:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                return batch

    async def _save_shielded(self, batch: list[CacheRecord]) -> None:
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + SAVE_TIMEOUT_S
            try:
                await self.store.save(batch)
            except Exception as exc:  # noqa: BLE001 - a full or read-only disk: run uncached
                self._warn_once("", "cache_write_failed", error=_describe(exc), lost=len(batch))
        if scope.cancelled_caught:
            self._warn_once("", "cache_write_timed_out", lost=len(batch))


class Snapshots:
    """The items a cached streaming stage yields, each copied as it is yielded: the
    stages reading them as they come may change them before the stage finishes, and the
    cache keeps what the stage produced."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.error: Exception | None = None

    def take(self, item: Any) -> None:
        """Keep a copy of ``item`` (one that cannot be copied: the output is not cached)."""
        if self.error is None:
            try:
                self.items.append(copy.deepcopy(item))
            except Exception as exc:  # noqa: BLE001 - whatever deepcopy raises: not cached
                self.error = _serialize.NotSerializableError(
                    f"a yielded {type(item).__name__} cannot be copied: {_describe(exc)}"
                )


def _stored_output(output: Any, kind: Any, blobs: list[_codec.Blob]) -> dict[str, Any]:
    """How ``output`` is stored: self-describing (the same type and an equal value come
    back, binary values in blobs), or, when that cannot describe it (a class defined in
    a function), as its declared type: a pydantic model class through pydantic's JSON
    mode, anything else as cattrs JSON of that type."""
    try:
        return {"output": _serialize.tagged_round_trip(output, blobs), "form": "tagged"}
    except _serialize.NotSerializableError as undescribed:
        if kind is Any:
            raise
        model = _serialize.model_round_trip(output, kind)
        if model is not None:
            return {"output": model, "form": "model"}
        try:
            return {"output": _serialize.check_round_trip(output, kind)}
        except _serialize.NotSerializableError as exc:
            msg = f"{undescribed}; as the declared {kind!r}: {exc}"
            raise _serialize.NotSerializableError(msg) from exc


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
