"""A run's per-stage timeline, built lazily from the supervisor's records."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ._results import StageResult, StageTiming, _ReadOnly


def to_ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded to the nanosecond (float noise below that would
    make equal virtual times compare unequal)."""
    return round(seconds * 1000, 6)


class Timeline(_ReadOnly):
    """Stage id -> :class:`StageTiming`, for every stage that ended.

    Entries are made on first access: a 10,000-stage run should not pay for 10,000
    objects that nobody reads. It owns the records it is given; nothing changes them.
    """

    __slots__ = (
        "_cache",
        "_finished",
        "_ids",
        "_index",
        "_queued",
        "_results",
        "_start",
        "_started",
    )

    def __init__(
        self,
        *,
        ids: Sequence[str],
        results: Sequence[StageResult[Any] | None],
        queued: Sequence[float],
        started: Sequence[float | None],
        finished: Sequence[float],
        start: float,
    ) -> None:
        self._ids = ids
        self._results = results
        self._queued = queued
        self._started = started
        self._finished = finished
        self._start = start
        self._index: dict[str, int] | None = None
        self._cache: dict[str, StageTiming] = {}

    def __getitem__(self, stage_id: str) -> StageTiming:
        timing = self._cache.get(stage_id)
        if timing is not None:
            return timing
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self._ids) if self._results[i] is not None}
        index = self._index[stage_id]
        result = self._results[index]
        assert result is not None  # noqa: S101 (only ended stages are indexed)
        start = self._start
        started = self._started[index]
        timing = StageTiming(
            stage=stage_id,
            status=result.status,
            queued_ms=to_ms(self._queued[index] - start),
            started_ms=to_ms((started if started is not None else start) - start),
            finished_ms=to_ms(self._finished[index] - start),
            attempts=result.metadata.get("attempts", 0),
        )
        self._cache[stage_id] = timing
        return timing

    def __iter__(self) -> Iterator[str]:
        return (s for s, r in zip(self._ids, self._results, strict=True) if r is not None)

    def __len__(self) -> int:
        return sum(r is not None for r in self._results)

    def __repr__(self) -> str:
        return f"Timeline({dict(self.items())!r})"
