"""The timings a result's timeline holds, and the millisecond rounding they use."""

from __future__ import annotations

from twinklr.core.pipeline import ItemTiming, StageStatus, StageTiming
from twinklr.core.pipeline._values._timing import to_ms


def test_timing_duration() -> None:
    timing = StageTiming(
        stage="a",
        status=StageStatus.SUCCEEDED,
        queued_ms=1,
        started_ms=2,
        finished_ms=7,
        attempts=1,
    )
    assert timing.duration_ms == 5
    assert not timing.cached
    item = ItemTiming(index=0, status=StageStatus.CACHED, started_ms=2.5, finished_ms=4, attempts=0)
    assert item.duration_ms == 1.5


def test_a_cache_hit_reads_as_cached() -> None:
    timing = StageTiming(
        stage="a", status=StageStatus.CACHED, queued_ms=0, started_ms=0, finished_ms=0, attempts=0
    )
    assert timing.cached


def test_milliseconds_are_rounded_to_the_nanosecond() -> None:
    # Float noise below a nanosecond would make equal virtual times compare unequal.
    assert to_ms(0.1 + 0.2) == 300.0
    assert to_ms(1.0000000004) == 1000.0
    assert to_ms(1.0000000006) == 1000.000001
    assert to_ms(0) == 0.0
    assert to_ms(2.5) == 2500.0
