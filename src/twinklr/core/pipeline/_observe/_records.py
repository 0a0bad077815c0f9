"""What the run store gives back: recorded runs and their stages, as frozen values."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, get_args

import attrs

from .._values._status import StageStatus
from .._values._timing import ItemTiming
from .._values._usage import Usage
from ._columns import CODES, Progress, StageState

RunState = Literal["running", "succeeded", "failed", "cancelled", "interrupted", "waiting"]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)


@attrs.frozen(kw_only=True)
class RunBegin:
    """What a run's recorder writes first."""

    run_id: str
    pipeline: str
    definition: str
    graph: str
    input_fingerprint: str | None
    stage_count: int
    started_at: float
    resumed: bool = False
    """A suspended run resumed: its suspension is forgotten once it ends for good."""


@attrs.frozen(kw_only=True)
class RecordedRun:
    """One recorded run (`RunStore.runs`, `RunStore.get`)."""

    run_id: str
    pipeline: str
    """The pipeline's name."""
    definition: str
    """A fingerprint of the definition: its stages, their inputs, patterns and code."""
    input_fingerprint: str | None
    """A fingerprint of the initial input (None: it had none that could be computed)."""
    status: RunState
    """``running``, ``succeeded``, ``failed``, ``cancelled``, ``interrupted`` (still
    marked running, and its process is gone or has not written for a minute) or
    ``waiting`` (suspended until its gates are answered: ``PipelineExecutor.resume``)."""
    started_at: dt.datetime
    finished_at: dt.datetime | None
    duration_ms: float | None
    """The run's own duration (Trio's clock), once it has finished."""
    error: str | None
    stage_count: int
    host: str
    pid: int

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (times in ISO 8601, UTC)."""
        fields = attrs.asdict(self)
        fields["started_at"] = self.started_at.isoformat()
        fields["finished_at"] = None if self.finished_at is None else self.finished_at.isoformat()
        return fields


@attrs.frozen(kw_only=True)
class RecordedStage:
    """One stage of a recorded run (`RunStore.stages`)."""

    id: str
    status: StageState
    """Where it is (``pending``, ``queued``, ``running``) or how it ended
    (a [StageStatus][twinklr.core.pipeline.StageStatus] value, or ``not_started``)."""
    queued_ms: float | None
    started_ms: float | None
    finished_ms: float | None
    attempts: int
    error: str | None = None
    traceback: str | None = None
    """The traceback of the exception behind a failure, as text."""
    attempt_errors: tuple[str, ...] = ()
    """The errors of attempts that were retried, in order."""
    items: tuple[ItemTiming, ...] = ()
    """A fan-out stage's items that have ended (once the run has, all of them)."""
    items_total: int | None = None
    """A fan-out stage's item count, once known."""
    branches: tuple[str, ...] | None = None
    """A routing stage's branches taken, once it has ended (None for other stages)."""
    answered_at: str | None = None
    """When a gate (`WaitForInput`) was answered (ISO 8601, UTC)."""
    usage: Usage | None = None
    """What its LLM calls used and cost (None: it made none)."""

    @property
    def cached(self) -> bool:
        """Whether the stage was served from the cache."""
        return self.status == "cached"

    @property
    def duration_ms(self) -> float | None:
        """From start to finish, once it has finished."""
        if self.started_ms is None or self.finished_ms is None:
            return None
        return self.finished_ms - self.started_ms

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values."""
        fields = attrs.asdict(self, recurse=False)
        fields["attempt_errors"] = list(self.attempt_errors)
        fields["usage"] = None if self.usage is None else attrs.asdict(self.usage)
        fields["items"] = [
            {
                "index": item.index,
                "status": item.status.value,
                "started_ms": item.started_ms,
                "finished_ms": item.finished_ms,
                "attempts": item.attempts,
            }
            for item in self.items
        ]
        fields["cached"] = self.cached
        fields["duration_ms"] = self.duration_ms
        return fields


def run_json(record: RecordedRun, stages: Sequence[RecordedStage]) -> dict[str, Any]:
    """A run and its stages as JSON values (``runs show --json``, the web view's API)."""
    return {**record.as_json(), "stages": [stage.as_json() for stage in stages]}


def when(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def stage_records(
    ids: Sequence[str], blob: bytes | None, details: Mapping[str, Any]
) -> Iterator[RecordedStage]:
    per_stage: Mapping[str, Any] = details.get("stages", {})
    totals: Mapping[str, int] = details.get("items_total", {})
    usage: Mapping[str, Any] = details.get("usage", {})
    progress = Progress.decode(blob) if blob else None
    for index, stage_id in enumerate(ids):
        if progress is None or index >= len(progress.codes):
            yield RecordedStage(
                id=stage_id,
                status="pending",
                queued_ms=None,
                started_ms=None,
                finished_ms=None,
                attempts=0,
            )
            continue
        extra = per_stage.get(stage_id, {})
        columns = progress.items.get(index)
        items: tuple[ItemTiming, ...] = ()
        if columns is not None:
            items = tuple(
                ItemTiming(
                    index=columns.index[i],
                    status=StageStatus(CODES[columns.codes[i : i + 1]]),
                    started_ms=progress.ms(columns.started[i]) or 0.0,
                    finished_ms=progress.ms(columns.finished[i]) or 0.0,
                    attempts=columns.attempts[i],
                )
                for i in range(len(columns.codes))
            )
        yield RecordedStage(
            id=stage_id,
            status=CODES.get(progress.codes[index : index + 1], "pending"),
            queued_ms=progress.ms(progress.queued[index]),
            started_ms=progress.ms(progress.started[index]),
            finished_ms=progress.ms(progress.finished[index]),
            attempts=progress.attempts[index],
            error=extra.get("error"),
            traceback=extra.get("traceback"),
            attempt_errors=tuple(extra.get("attempt_errors", ())),
            branches=tuple(extra["branches"]) if "branches" in extra else None,
            answered_at=extra.get("answered_at"),
            items=items,
            items_total=totals.get(stage_id),
            usage=_usage(usage.get(stage_id)),
        )


def _usage(kept: Any) -> Usage | None:
    """A stage's recorded usage (None when there is none, or it is not one)."""
    if kept is None:
        return None
    try:
        return Usage.from_list(kept)
    except (TypeError, ValueError):  # another program wrote over it: not shown
        return None
