"""Fan-out: one child task per item in a child nursery, outputs kept in input order."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from .._base._loops import execute_of
from .._values._context import record_writes, stop_recording
from .._values._current import expect_late
from .._values._results import StageResult
from .._values._status import StageStatus
from .._values._usage import current_item
from ..errors import FanOutInputError, FanOutItemError
from ._attempts import (
    ONE_ATTEMPT,
    RetryHook,
    run_unit,
    settle_item,
    settle_raised,
)
from ._plan import is_plain

#: Told of each fan-out item that ends: ``(index, items in all, started at, result)``
#: (result None: the item was cancelled).
ItemHook = Callable[[int, int, float, "StageResult[Any] | None"], None]

if TYPE_CHECKING:
    from .._cache._run_cache import RunCache
    from ..definition import StageDefinition


def fan_out_items(sdef: StageDefinition[Any], value: Any) -> tuple[list[Any], str | None]:
    """The items to fan out over and, for a multi-input stage, the input they came from.

    Raises `FanOutInputError` naming the stage and the type it got.
    """
    source = None
    items = value
    if len(sdef.inputs) > 1:
        source = sdef.fan_out_over
        items = value[source]
    if not isinstance(items, list | tuple):
        raise FanOutInputError(sdef.id, items, source=source)
    return list(items), source


async def run_fan_out(
    sdef: StageDefinition[Any],
    value: Any,
    context: Any,
    *,
    streaming: bool,
    on_retry: RetryHook | None,
    cache: RunCache | None = None,
    on_item: ItemHook | None = None,
    stream: trio.MemoryReceiveChannel[Any] | None = None,
    now: Callable[[], float] = trio.current_time,
) -> StageResult[Any]:
    """Run ``sdef`` once per item; the first failed item cancels its siblings.

    With a ``cache``, each item is looked up and written on its own, so a rerun redoes
    only the items that did not succeed. ``on_item`` is told of every item that ends.
    With a ``stream`` (the stage is pipelined on a streaming stage), items are taken
    from it as they are yielded, and each starts at once; ``value`` is not used.
    ``now`` reads the run's clock (the run's own reader is cheaper than Trio's).
    """
    if stream is None:
        try:
            items, source = fan_out_items(sdef, value)
        except FanOutInputError as exc:
            return StageResult.failure(exc, stage_name=sdef.id, metadata={"attempts": 0})
    else:
        items, source = [], None
    results: list[StageResult[Any] | None] = [None] * len(items)
    first_failure: list[int] = []
    slots = (
        None if sdef.max_concurrent_fan_out is None else trio.Semaphore(sdef.max_concurrent_fan_out)
    )

    # Item keys made up front when other runs' entries may serve some: those are read
    # in one query, not one round trip an item.
    keys = await _prefetch(sdef, cache, items, source, value) if stream is None else None
    attempt_item = functools.partial(
        _attempt_item,
        sdef,
        context,
        streaming=streaming,
        on_retry=on_retry,
        cache=cache,
        keys=keys,
    )
    # Items of a plain stage (one call each, nothing to look up or write) await the
    # stage itself: two coroutines fewer per item.
    execute = (
        execute_of(sdef.stage) if cache is None and is_plain(sdef, streaming=streaming) else None
    )

    async def run_item(index: int, item_value: Any, nursery: trio.Nursery) -> None:
        if first_failure:
            # A sibling failed between this item's spawn and its first step: it never
            # starts, so no item's code runs after the failure.
            if slots is not None:
                slots.release()
            return
        started = _item_started(index, now)
        result = None
        try:
            if execute is None:
                result = await attempt_item(index, item_value)
            else:
                try:
                    returned = await execute(item_value, context)
                except BaseException as exc:  # noqa: BLE001 - all but cancellation raised again
                    result = settle_raised(sdef, exc)
                else:
                    result = settle_item(sdef, returned)
            results[index] = result
            if result.status is StageStatus.FAILED and not first_failure:
                first_failure.append(index)
                nursery.cancel_scope.cancel()
        finally:
            if on_item is not None:
                on_item(index, len(results), started, result)
            # Released after a failure is recorded, so no waiting item starts after it.
            if slots is not None:
                slots.release()

    # One name for every item's task: Trio would otherwise format one per task from
    # run_item's qualified name (the longer the module path, the more bytes an item).
    task_name = f"{sdef.id} (fan-out item)"
    async with trio.open_nursery() as nursery:
        for index, item in enumerate(items):
            if slots is not None:
                # After a failure this raises Cancelled (the item cancels the nursery
                # before it frees its slot), so no item starts after the failure.
                await slots.acquire()
            item_value = item if source is None else {**value, source: item}
            nursery.start_soon(run_item, index, item_value, nursery, name=task_name)
        if stream is not None:
            async for item in stream:
                if slots is not None:
                    await slots.acquire()
                results.append(None)
                nursery.start_soon(run_item, len(results) - 1, item, nursery, name=task_name)

    return _stage_result(sdef, results, first_failure[0] if first_failure else None)


async def _prefetch(
    sdef: StageDefinition[Any],
    cache: RunCache | None,
    items: list[Any],
    source: str | None,
    value: Any,
) -> list[str | None] | None:
    """Every item's key, once the entries of them that other runs wrote are read (in one
    query); None when there is nothing to read (no cache, or no entries elsewhere)."""
    if cache is None or not cache.known:
        return None
    keys = [
        cache.key(sdef, item if source is None else {**value, source: item}, item=True)
        for item in items
    ]
    await cache.fetch([key for key in keys if key is not None and cache.elsewhere(key)])
    return keys


async def _attempt_item(
    sdef: StageDefinition[Any],
    context: Any,
    index: int,
    item_value: Any,
    *,
    streaming: bool,
    on_retry: RetryHook | None,
    cache: RunCache | None,
    keys: list[str | None] | None = None,
) -> StageResult[Any]:
    """One item: served from the cache, or run (and offered to the cache on success).
    ``keys`` are the items' cache keys when they were made up front."""
    key = None
    if cache is not None:
        key = keys[index] if keys is not None else cache.key(sdef, item_value, item=True)
    if cache is None or key is None:
        return await run_unit(
            sdef, item_value, context, item=index, streaming=streaming, on_retry=on_retry
        )
    if cache.elsewhere(key):  # (made here, or an entry the prefetch did not find)
        await cache.fetch([key])
    cached = cache.serve(sdef, key, context)
    if cached is not None:
        return cached
    writes = record_writes()
    late = expect_late()
    try:
        result = await run_unit(
            sdef, item_value, context, item=index, streaming=streaming, on_retry=on_retry
        )
    except BaseException:
        if late.arrived:  # cancelled with its output on the way: a success all the same
            cache.offer(sdef, key, late.value, writes, item=index)
        raise
    finally:
        stop_recording()
    if result.status is StageStatus.SUCCEEDED:
        cache.offer(sdef, key, result.output, writes, item=index)
        await cache.committed(key)  # (durability="sync": before the stage finishes)
    return result


def _item_started(index: int, now: Callable[[], float]) -> float:
    """When item ``index``'s task began (in that task: what its LLM calls use and
    stream is said to be that item's)."""
    current_item.set(index)
    return now()


def _stage_result(
    sdef: StageDefinition[Any], results: list[StageResult[Any] | None], failed_item: int | None
) -> StageResult[Any]:
    """The fan-out stage's result from its items' results."""
    count = len(results)
    # Comprehensions over the items (a fan-out can have tens of thousands), and the
    # attempts of a one-attempt item read without a lookup.
    attempts = tuple(
        [
            0 if r is None else 1 if r.metadata is ONE_ATTEMPT else r.metadata.get("attempts", 1)
            for r in results
        ]
    )
    if failed_item is not None:
        index = failed_item
        failed = results[index]
        assert failed is not None  # noqa: S101 (recorded before the cancel)
        error = FanOutItemError(sdef.id, index, failed.error or "failed")
        error.__cause__ = failed.exception
        return StageResult(
            status=StageStatus.FAILED,
            error=str(error),
            stage_name=sdef.id,
            metadata={
                "items": count,
                "failed_item": index,
                "attempts": max(attempts, default=0),
                "item_attempts": attempts,
                "attempt_errors": failed.metadata.get("attempt_errors", ()),
            },
            exception=error,
        )
    done = [r for r in results if r is not None]
    statuses = [r.status for r in done]
    soft, cached = [], 0
    if statuses.count(StageStatus.SUCCEEDED) != len(statuses):
        soft = [i for i, status in enumerate(statuses) if status is StageStatus.SOFT_FAILED]
        cached = statuses.count(StageStatus.CACHED)
    status = StageStatus.SUCCEEDED
    if soft:
        status = StageStatus.SOFT_FAILED
    elif count and cached == count:
        status = StageStatus.CACHED
    return StageResult(
        status=status,
        output=[r.output for r in done],
        error=f"items {soft} soft-failed" if soft else None,
        stage_name=sdef.id,
        metadata={
            "items": count,
            "cached_items": cached,
            "attempts": max(attempts, default=1),
            "item_attempts": attempts,
        },
    )
