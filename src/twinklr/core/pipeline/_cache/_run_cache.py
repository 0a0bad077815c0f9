"""One run's use of a cache store: keys, lookups, replay, success-only write-behind.

What goes into a key (SHA-256 of the canonical JSON of):
  the key format version, the pipeline name, the stage id, the stage's ``version``, the
  qualified names of the stage's code and a SHA-256 of its source (see ``_code``: its
  class and what it inherits, a function stage's function, what ``cache_code()``
  declares), whether it is a whole stage or one fan-out item, the type-tagged
  fingerprint of the stage's input (of the item's input, for fan-out), of what its
  functions capture (closed-over values, defaults), and a function stage's ``@stage``
  version.
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

import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from datetime import timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import trio

from .._kinds._function import FunctionStage
from .._values._results import StageResult, make_result
from .._values._status import StageStatus
from .._values._usage import Usage, usage_so_far
from . import _codec, _payload, _serialize
from ._code import code_identity
from ._forms import Snapshots, captures_print, output_type, read_output, stored_output
from ._notices import Notices
from ._store import CacheRecord, CacheStore, IndexedCacheStore, Payload
from ._writing import WriteBehind

if TYPE_CHECKING:
    from .._values._context import PipelineContext, Write
    from ..definition import StageDefinition

# 2: type-tagged input fingerprints, code hashes over the MRO and wrapped code;
# 3: binary values in blobs beside the JSON (no base64), numpy and pydantic inputs;
# 4: time zones and pydantic's set fields in fingerprints, what a function captures
KEY_FORMAT = 4
#: How long one read of the store may take (then the run goes on without what it reads).
LOAD_TIMEOUT_S = 30.0


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
        sync: bool = False,
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
        self.notices = Notices(pipeline, log)
        try:
            self.group = _serialize.fingerprint([pipeline, initial_input])
        except _serialize.NotSerializableError as exc:
            self.group = ""
            self.enabled = False
            self.notices.problem(
                "cache_disabled",
                f"no stage was cached: the initial input has no fingerprint ({exc})",
                reason=f"initial input: {exc}",
            )
        self.writer = WriteBehind(store, self.notices, sync=sync)

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
                self._unreadable(_describe(exc))
                return None
            if not isinstance(found, kind):
                name = getattr(method, "__name__", "a read")
                error = f"{name}() gave {type(found).__name__} {found!r:.60}, not a {kind.__name__}"
                self._unreadable(f"the store is broken: {error}")
                return None
            return found
        if scope.cancelled_caught:
            self.notices.problem(
                "cache_read_timed_out",
                f"reading the cache took over {LOAD_TIMEOUT_S:g} s: the run went on without "
                "what earlier runs cached",
                timeout_s=LOAD_TIMEOUT_S,
            )
        return None

    def _unreadable(self, error: str) -> None:
        self.notices.problem(
            "cache_unreadable",
            f"the cache could not be read ({error}): the run went on without what earlier "
            "runs cached",
            error=error,
        )

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
            self.notices.mark_uncached([sdef.id])
            return None
        try:
            input_print = _serialize.fingerprint(value)
        except _serialize.NotSerializableError as exc:
            why = f"its input has no fingerprint ({exc})"
            self.notices.stage_uncached(sdef.id, "cache_input_not_serializable", why)
            return None
        captures = self._captures(sdef)
        if captures is None:
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
            captures,
        ]
        if isinstance(stage, FunctionStage):
            parts.append(stage.version)  # @stage(version=...)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def _captures(self, sdef: StageDefinition[Any]) -> str | None:
        """The fingerprint of what the stage's functions capture; None, said once, when
        one of those values has none."""
        try:
            return captures_print(sdef.stage)
        except _serialize.NotSerializableError as exc:
            advice = "pass that value as input or through the context, or "
            self.notices.stage_uncached(
                sdef.id, "cache_captured_not_fingerprintable", str(exc), advice=advice
            )
            return None

    def lookup(self, sdef: StageDefinition[Any], key: str) -> tuple[Any, list[Write]] | None:
        """The cached output and writes for ``key``; None on a miss (a corrupt entry is a
        miss, warned once)."""
        payload = self.entries.get(key)
        if payload is None:
            return None
        try:
            data, blobs = _payload.unpack(payload)
            output = read_output(data, blobs, sdef)
            writes = [
                (str(op), str(name), _codec.decode(value, blobs))
                for op, name, value in data["writes"]
            ]
            kept = data.get("usage")  # what its LLM calls cost when it was made
            if kept is not None:
                writes.append(("usage", "", Usage.from_list(kept)))
        except Exception as exc:  # noqa: BLE001 - whatever is wrong, it is a miss
            error = _describe(exc)
            self.notices.problem(
                "cache_entry_unreadable",
                f"a cached output of stage {sdef.id!r} could not be read ({error}): it ran again",
                stage=sdef.id,
                key=key,
                error=error,
            )
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
        kind = output_type(sdef)
        try:
            stored = stored_output(output, kind, blobs)
        except _serialize.NotSerializableError as exc:
            advice = "return a supported type, or " if kind is not Any else _DECLARE
            where = "output" if item is None else f"output[{item}]"
            self._not_stored(sdef, f"{where}{_codec.locate(output)}: {exc}", advice)
            return
        stored["writes"] = []
        for op, name, value in writes:
            try:
                stored["writes"].append([op, name, _serialize.tagged_round_trip(value, blobs)])
            except _serialize.NotSerializableError as exc:
                where = f"the value its {op}({name!r}) wrote{_codec.locate(value)}"
                self._not_stored(sdef, f"{where}: {exc}", "write supported types, or ")
                return
        used = usage_so_far(item)
        if used is not None:
            stored["usage"] = used.as_list()
        payload = _payload.pack(stored, blobs)  # the copy: the value as it is now
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
        self.writer.queue(record)

    @property
    def sync(self) -> bool:
        """Whether a stage waits for its entry to commit (`committed`) before its output
        goes downstream (``durability="sync"``)."""
        return self.writer.sync

    async def committed(self, key: str) -> None:
        """Wait until the entry `offer` queued under ``key`` is saved (or its save has
        failed, warned): at once when nothing was queued or the run is not sync."""
        await self.writer.committed(key)

    def keep(
        self,
        sdef: StageDefinition[Any],
        key: str,
        output: Any,
        writes: list[Write],
        snapshots: Snapshots | None,
    ) -> None:
        """`offer` a stage's output, or `offer_items` a streaming one's ``snapshots``."""
        if snapshots is None:
            self.offer(sdef, key, output, writes)
        else:
            self.offer_items(sdef, key, snapshots, output, writes)

    def _not_stored(self, sdef: StageDefinition[Any], why: str, advice: str) -> None:
        self.notices.stage_uncached(sdef.id, "cache_output_not_serializable", why, advice=advice)

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
            self._not_stored(sdef, str(error), "")
            return
        self.offer(sdef, key, items, writes)

    async def write_behind(self) -> None:
        """Save what is offered, in batches, until `close` (see `WriteBehind.run`); then
        stop sparing what this run read and wrote from eviction."""
        try:
            await self.writer.run()
        finally:
            if self._release is not None:
                self._release(self.held)
                self._release = None

    def close(self) -> None:
        """No more writes: the writer saves what is queued and ends."""
        self.writer.close()


_DECLARE = (
    "declare its output type (a return annotation, or StageDefinition(output_type=...)), "
    "return a supported type, or "
)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
