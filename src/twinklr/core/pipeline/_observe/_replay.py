"""A recorded run's events, rebuilt from what the run store kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._values._status import StageStatus
from ._events import EventKind, PipelineEvent
from ._records import RecordedRun, RecordedStage

TERMINAL_EVENT = {
    "succeeded": EventKind.STAGE_SUCCEEDED,
    "failed": EventKind.STAGE_FAILED,
    "skipped": EventKind.STAGE_SKIPPED,
    "soft_failed": EventKind.STAGE_SOFT_FAILED,
    "cached": EventKind.STAGE_CACHE_HIT,
    "cancelled": EventKind.STAGE_CANCELLED,
}


def depths(graph: Mapping[str, Any]) -> dict[str, int]:
    """Each stage's depth in the graph (entry stages 0)."""
    inputs = {stage["id"]: stage["inputs"] for stage in graph["stages"]}
    depths: dict[str, int] = {}

    def depth(stage_id: str) -> int:
        known = depths.get(stage_id)
        if known is None:
            depths[stage_id] = 0  # a cycle (never recorded: refused by validation)
            known = depths[stage_id] = 1 + max(
                (depth(i) for i in inputs.get(stage_id, ()) if i in inputs), default=-1
            )
        return known

    for stage_id in inputs:
        depth(stage_id)
    return depths


def events(
    record: RecordedRun,
    stages: Sequence[RecordedStage],
    retries: Sequence[Sequence[Any]],
    depths: Mapping[str, int],
) -> list[PipelineEvent]:
    """A run's events rebuilt from its record, sorted by time; at equal times, a stage
    before those that depend on it, and a stage's own in the order a run makes them
    (queued, started, retries, items, its end)."""
    timed: list[tuple[float, int, int, int, PipelineEvent]] = []
    last = len(depths) + 1

    def add(time_ms: float, rank: int, **fields: Any) -> None:
        stage = fields.get("stage")
        depth = (-1 if rank == 0 else last) if stage is None else depths.get(stage, 0)
        event = PipelineEvent(
            time_ms=time_ms, pipeline=record.pipeline, run_id=record.run_id, **fields
        )
        timed.append((time_ms, depth, rank, len(timed), event))

    add(0.0, 0, kind=EventKind.RUN_STARTED)
    for stage in stages:
        if stage.queued_ms is not None:
            add(stage.queued_ms, 1, kind=EventKind.STAGE_QUEUED, stage=stage.id)
        if stage.started_ms is not None:
            add(stage.started_ms, 2, kind=EventKind.STAGE_STARTED, stage=stage.id)
        done = 0
        for item in sorted(stage.items, key=lambda item: item.finished_ms):
            ok = item.status not in (StageStatus.FAILED, StageStatus.CANCELLED)
            done += ok
            add(
                item.finished_ms,
                4,
                kind=EventKind.ITEM_FINISHED,
                stage=stage.id,
                item=item.index,
                attempt=item.attempts,
                done=done,
                total=stage.items_total,
            )
        terminal = TERMINAL_EVENT.get(stage.status)
        if terminal is not None and stage.finished_ms is not None:
            add(
                stage.finished_ms,
                5,
                kind=terminal,
                stage=stage.id,
                attempt=stage.attempts or None,
                error=stage.error,
            )
    for stage_id, item, attempt, error, delay_ms, time_ms in retries:
        failed = {"stage": stage_id, "item": item, "attempt": attempt, "error": error}
        add(time_ms, 3, kind=EventKind.ATTEMPT_FAILED, **failed)
        add(time_ms, 3, kind=EventKind.STAGE_RETRYING, delay_ms=delay_ms, **failed)
    if record.status not in ("running", "interrupted") and record.duration_ms is not None:
        add(
            record.duration_ms,
            6,
            kind=EventKind.RUN_FINISHED,
            success=record.status == "succeeded",
            error=record.error,
        )
    timed.sort(key=lambda entry: entry[:4])
    return [entry[4] for entry in timed]
