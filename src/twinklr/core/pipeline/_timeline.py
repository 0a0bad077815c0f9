"""A run's per-stage timeline, built lazily from the supervisor's records, and its
critical path."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from . import _graph
from ._results import StageResult, StageStatus, _ReadOnly


def to_ms(seconds: float) -> float:
    """Seconds to milliseconds, rounded to the nanosecond (float noise below that would
    make equal virtual times compare unequal). Half a nanosecond rounds up; this is
    ``round(seconds * 1000, 6)`` at a third of its cost, which matters three times a
    stage when events are watched."""
    return (seconds * 1e9 + 0.5) // 1 / 1e6


@attrs.frozen(kw_only=True)
class ItemTiming:
    """One fan-out item's run, in ms since the run started."""

    index: int
    """The item's position in the stage's input list."""
    status: StageStatus
    """How it ended (CANCELLED when a sibling's failure or the run stopped it)."""
    started_ms: float
    """When it started (after waiting for a ``max_concurrent_fan_out`` slot)."""
    finished_ms: float
    """When it ended."""
    attempts: int
    """Attempts it took (0 for a cache hit or a cancelled item)."""

    @property
    def duration_ms(self) -> float:
        """Time from start to finish."""
        return self.finished_ms - self.started_ms


@attrs.frozen(kw_only=True)
class StageTiming:
    """When a stage was queued, started and finished, in ms since the run started."""

    stage: str
    """The stage id."""
    status: StageStatus
    """How the stage ended."""
    queued_ms: float
    """When its last input arrived (it became ready)."""
    started_ms: float
    """When its task began work (after the condition, before the first attempt)."""
    finished_ms: float
    """When it ended, whatever the outcome."""
    attempts: int
    """Attempts made (for fan-out: the most any single item needed)."""
    wait_ms: float = 0.0
    """How long it waited on inputs: from its first input arriving to its last."""
    retry_ms: float = 0.0
    """Time spent in retry backoff (summed over fan-out items)."""
    items: tuple[ItemTiming, ...] = ()
    """Each fan-out item's timing, in input order (empty for other stages)."""

    @property
    def duration_ms(self) -> float:
        """Time from start to finish."""
        return self.finished_ms - self.started_ms

    @property
    def cached(self) -> bool:
        """Whether the cache served this stage instead of running it."""
        return self.status is StageStatus.CACHED


@attrs.frozen(kw_only=True)
class CriticalStep:
    """One stage of a run's critical path and the part of the makespan it accounts for."""

    stage: str
    """The stage id."""
    start_ms: float
    """When the previous step finished (0 for the first): the stage's share begins."""
    finished_ms: float
    """When the stage finished."""

    @property
    def share_ms(self) -> float:
        """The makespan this step accounts for."""
        return self.finished_ms - self.start_ms


class Timeline(_ReadOnly):
    """Stage id -> :class:`StageTiming`, for every stage that ended.

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
        steps, previous = [], self._start
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
        return cls(queued=[0.0] * count, started=[None] * count, finished=[0.0] * count)
