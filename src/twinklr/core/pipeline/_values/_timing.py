"""When things happened in a run: the frozen timings a result's ``timeline`` holds.

Times are in milliseconds since the run started, on Trio's clock.
"""

from __future__ import annotations

import attrs

from ._status import StageStatus


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
    """When the previous step finished (for the first, when it was queued: the run's
    set-up before is no stage's): the stage's share begins."""
    finished_ms: float
    """When the stage finished."""

    @property
    def share_ms(self) -> float:
        """The makespan this step accounts for."""
        return self.finished_ms - self.start_ms
