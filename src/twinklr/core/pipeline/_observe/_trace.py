"""Exports of a finished run: Chrome trace events, a Mermaid gantt chart, a text report."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._values._timing import CriticalStep, ItemTiming, StageTiming

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._values._results import PipelineResult

_PID = 1


def critical_path(result: PipelineResult) -> tuple[CriticalStep, ...]:
    """The stages that set ``result``'s length, first to last (empty when the result
    was not made by the executor)."""
    find = getattr(result.timeline, "critical_path", None)
    return find() if find is not None else ()


def _by_start(result: PipelineResult) -> list[StageTiming]:
    return sorted(result.timeline.values(), key=lambda t: (t.started_ms, t.stage))


def _origin(timings: Sequence[StageTiming]) -> float:
    """When the first stage was queued (ms since the run started): what came before is
    the run's set-up (a cache, a run store opened), no stage's time."""
    queued = [t.queued_ms for t in timings if math.isfinite(t.queued_ms)]
    return min(queued, default=0.0)


def _lanes(items: Sequence[ItemTiming]) -> list[list[ItemTiming]]:
    """Items spread over as few lanes as possible, none overlapping within a lane."""
    lanes: list[list[ItemTiming]] = []
    for item in sorted(items, key=lambda i: (i.started_ms, i.index)):
        for lane in lanes:
            if lane[-1].finished_ms <= item.started_ms:
                lane.append(item)
                break
        else:
            lanes.append([item])
    return lanes


def to_chrome_trace(result: PipelineResult) -> dict[str, Any]:
    """The run as Chrome trace-event JSON (open it in Perfetto or chrome://tracing).

    One track per stage with a complete event for its run; a fan-out stage's items on
    tracks of their own right below it (as few as keep them from overlapping).
    """
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": _PID,
            "args": {"name": f"pipeline {result.pipeline_name} (run {result.run_id})"},
        }
    ]
    track = 0
    for timing in _by_start(result):
        track += 1
        events.extend(_track(track, timing.stage))
        events.append(
            {
                "name": timing.stage,
                "cat": timing.status.value,
                "ph": "X",
                "pid": _PID,
                "tid": track,
                "ts": timing.started_ms * 1000,
                "dur": timing.duration_ms * 1000,
                "args": {
                    "status": timing.status.value,
                    "attempts": timing.attempts,
                    "queued_ms": timing.queued_ms,
                    "wait_ms": timing.wait_ms,
                    "retry_ms": timing.retry_ms,
                },
            }
        )
        for lane_number, lane in enumerate(_lanes(timing.items), start=1):
            track += 1
            events.extend(_track(track, f"{timing.stage} items ({lane_number})"))
            events.extend(
                {
                    "name": f"{timing.stage}[{item.index}]",
                    "cat": item.status.value,
                    "ph": "X",
                    "pid": _PID,
                    "tid": track,
                    "ts": item.started_ms * 1000,
                    "dur": item.duration_ms * 1000,
                    "args": {
                        "item": item.index,
                        "status": item.status.value,
                        "attempts": item.attempts,
                    },
                }
                for item in lane
            )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {
            "pipeline": result.pipeline_name,
            "run_id": result.run_id,
            "success": result.success,
            "total_duration_ms": result.total_duration_ms,
        },
    }


def _track(tid: int, name: str) -> list[dict[str, Any]]:
    return [
        {"name": "thread_name", "ph": "M", "pid": _PID, "tid": tid, "args": {"name": name}},
        {
            "name": "thread_sort_index",
            "ph": "M",
            "pid": _PID,
            "tid": tid,
            "args": {"sort_index": tid},
        },
    ]


def _gantt_name(text: str) -> str:
    return text.replace(":", "").replace("#", "").replace(";", "")


def to_mermaid_gantt(result: PipelineResult) -> str:
    """The run as a Mermaid gantt chart (milliseconds since the run started); stages on
    the critical path are marked ``crit``."""
    on_path = {step.stage for step in critical_path(result)}
    lines = [
        "gantt",
        (
            f"    title {_gantt_name(result.pipeline_name)} run {result.run_id} "
            f"({result.total_duration_ms:g} ms)"
        ),
        "    dateFormat x",
        "    axisFormat %S.%L",
        "    section stages",
    ]
    for number, timing in enumerate(_by_start(result)):
        tags = ["crit"] if timing.stage in on_path else []
        if timing.status.value in {"succeeded", "cached"}:
            tags.append("done")
        label = f"{_gantt_name(timing.stage)} ({timing.status.value})"
        start, end = (
            round(timing.started_ms),
            max(round(timing.finished_ms), round(timing.started_ms) + 1),
        )
        lines.append(f"    {label} :{', '.join([*tags, f's{number}'])}, {start}, {end}")
    return "\n".join(lines) + "\n"
