"""A run's frozen result, built from its state in one pass over the stages."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from .._observe._timeline import Timeline
from .._values._results import PipelineResult, StageResult
from .._values._status import StageStatus
from .._values._timing import to_ms
from ._run import Run


def build_result(run: Run, *, cancelled: bool = False) -> PipelineResult:
    """The frozen result of the run as it stands (``cancelled``: from outside)."""
    plan = run.plan
    ids = plan.ids
    t0 = run.start_time
    # Built here and wrapped read-only as they are (no copy): one pass over the
    # stages, the common status first.
    outputs: dict[str, Any] = {}
    stage_results: dict[str, StageResult[Any]] = {}
    by_status: dict[StageStatus, list[str]] = {
        StageStatus.SKIPPED: [],
        StageStatus.SOFT_FAILED: [],
        StageStatus.CACHED: [],
    }
    not_started: list[str] = []
    succeeded = StageStatus.SUCCEEDED
    waiting = () if run.suspended is None else tuple(r.stage_id for r in run.suspended)
    for stage_id, result in zip(ids, run.results, strict=True):
        if result is None:
            if stage_id not in waiting:
                not_started.append(stage_id)
            continue
        stage_results[stage_id] = result
        status = result.status
        if status is succeeded:
            outputs[stage_id] = result.output
        elif status in by_status:
            outputs[stage_id] = result.output
            by_status[status].append(stage_id)
    error = run.error
    if cancelled and error is None:
        error = "the run was cancelled"
    return PipelineResult(
        pipeline_name=plan.name,
        run_id=run.run_id,
        success=error is None and not waiting,
        outputs=MappingProxyType(outputs),
        stage_results=MappingProxyType(stage_results),
        failed_stages=tuple(ids[i] for i in run.failed),
        skipped_stages=tuple(by_status[StageStatus.SKIPPED]),
        soft_failed_stages=tuple(by_status[StageStatus.SOFT_FAILED]),
        cached_stages=tuple(by_status[StageStatus.CACHED]),
        uncached_stages=_uncached(run),
        usage=run.spent,
        usage_saved=run.saved,
        usage_by_stage={ids[i]: used for i, used in sorted(run.usage.items()) if i >= 0},
        cancelled_stages=tuple(ids[i] for i in run.cancelled),
        not_started_stages=tuple(not_started),
        total_duration_ms=to_ms(run.end_time - t0),
        metrics=run.context.metrics,
        context=run.context.snapshot(),
        timeline=Timeline(
            ids=ids, deps=plan.deps, results=run.results, records=run.records, start=t0
        ),
        error=error,
        cancelled=cancelled,
        waiting_stages=waiting,
    )


def _uncached(run: Run) -> tuple[str, ...]:
    """The stages the run's cache did not keep, in the pipeline's order."""
    if run.cache is None or not run.cache.notices.uncached:
        return ()
    uncached = run.cache.notices.uncached
    return tuple(stage_id for stage_id in run.plan.ids if stage_id in uncached)
