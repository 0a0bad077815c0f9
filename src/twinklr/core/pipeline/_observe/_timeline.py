"""A run's per-stage timeline, built lazily from the supervisor's records, and its
critical path."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from .._base import _graph
from .._values._results import StageResult, _ReadOnly
from .._values._status import StageStatus
from .._values._timing import CriticalStep, ItemTiming, StageTiming, to_ms


class Timeline(_ReadOnly):
    """Stage id -> `StageTiming`, for every stage that ended.

    Entries are made on first access: a 10,000-stage run should not pay for 10,000
    objects that nobody reads. It owns the records it is given; nothing changes them.
    """

    __slots__ = ("_cache", "_deps", "_ids", "_index", "_records", "_results", "_start")

    def __init__(
        self,
        *,
        ids: Sequence[str],
        deps: Sequence[Sequence[int]],
        results: Sequence[StageResult[Any] | None],
        records: RunRecords,
        start: float,
    ) -> None:
        self._ids = ids
        self._deps = deps
        self._results = results
        self._records = records
        self._start = start
        self._index: dict[str, int] | None = None
        self._cache: dict[str, StageTiming] = {}

    def _position(self, stage_id: str) -> int:
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self._ids) if self._results[i] is not None}
        return self._index[stage_id]

    def __getitem__(self, stage_id: str) -> StageTiming:
        timing = self._cache.get(stage_id)
        if timing is not None:
            return timing
        index = self._position(stage_id)
        result = self._results[index]
        assert result is not None  # noqa: S101 (only ended stages are indexed)
        records, start = self._records, self._start
        started = records.started[index]
        inputs = [records.finished[d] for d in self._deps[index]]
        queued = records.queued[index]
        timing = StageTiming(
            stage=stage_id,
            status=result.status,
            queued_ms=to_ms(queued - start),
            started_ms=to_ms((started if started is not None else start) - start),
            finished_ms=to_ms(records.finished[index] - start),
            attempts=result.metadata.get("attempts", 0),
            wait_ms=to_ms(max(inputs) - min(inputs)) if inputs else 0.0,
            retry_ms=to_ms(records.retry_s.get(index, 0.0)),
            items=tuple(
                ItemTiming(
                    index=item,
                    status=status,
                    started_ms=to_ms(began - start),
                    finished_ms=to_ms(ended - start),
                    attempts=attempts,
                )
                for item, began, ended, status, attempts in sorted(records.items.get(index, ()))
            ),
        )
        self._cache[stage_id] = timing
        return timing

    def __iter__(self) -> Iterator[str]:
        return (s for s, r in zip(self._ids, self._results, strict=True) if r is not None)

    def __len__(self) -> int:
        return sum(r is not None for r in self._results)

    def __repr__(self) -> str:
        return f"Timeline({dict(self.items())!r})"

    def critical_path(self) -> tuple[CriticalStep, ...]:
        """The chain of stages that set the run's length: it ends at the stage that
        finished last and walks back through the input each stage waited for longest."""
        ended = [i for i, r in enumerate(self._results) if r is not None]
        finished = self._records.finished
        deps = [[d for d in inputs if self._results[d] is not None] for inputs in self._deps]
        path = _graph.critical_path(deps, ended, finished.__getitem__)
        # The path begins when its first stage was queued: the run's set-up before (a
        # cache or run store opened) is no stage's time.
        steps, previous = [], self._records.queued[path[0]] if path else self._start
        for index in path:
            steps.append(
                CriticalStep(
                    stage=self._ids[index],
                    start_ms=to_ms(previous - self._start),
                    finished_ms=to_ms(finished[index] - self._start),
                )
            )
            previous = finished[index]
        return tuple(steps)


@attrs.define
class RunRecords:
    """What the supervisor writes down while a run goes (times on Trio's clock)."""

    queued: list[float]
    started: list[float | None]
    finished: list[float]
    retry_s: dict[int, float] = attrs.field(factory=dict)
    items: dict[int, list[tuple[int, float, float, StageStatus, int]]] = attrs.field(factory=dict)

    @classmethod
    def for_stages(cls, count: int) -> RunRecords:
        """Empty records for ``count`` stages."""
        # NaN: not queued yet (the run history tells a queued stage by its time).
        return cls(queued=[math.nan] * count, started=[None] * count, finished=[0.0] * count)
