"""The text report of a finished run: a table of its stages' times, waits, attempts and
LLM spend, then its critical path; fitted to a terminal's width when one is given."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from ._trace import _by_start, _origin, critical_path

if TYPE_CHECKING:
    from .._values._results import PipelineResult
    from .._values._timing import StageTiming
    from .._values._usage import Usage

#: The narrowest a stage id is cut to, and the widest it is shown.
ID_MIN, ID_MAX = 8, 20
#: The columns after the stage and its status: (name, width), and the order they are
#: left out in when the table would be wider than the terminal.
COLUMNS = (
    ("queued", 9),
    ("start", 9),
    ("end", 9),
    ("took", 9),
    ("wait", 8),
    ("retry", 8),
    ("tries", 6),
    ("cached", 8),
    ("tokens", 9),
    ("cost $", 11),
)
DROPPED_FIRST = ("cost $", "tokens", "cached", "retry", "wait", "queued", "tries", "start")
STATUS = 12


def timeline_report(result: PipelineResult, *, width: int | None = None) -> str:
    """A table a person can read: each stage's times, waits and attempts (and its LLM
    calls' tokens and cost when there were any), then the critical path and each step's
    share of the run. With ``width`` (a terminal's columns, 60 and up) every line fits
    it: columns are left out (cost first, the end and the time taken last) and stage
    ids cut, and the sentences wrapped."""
    outcome = (
        "succeeded"
        if result.success
        else f"WAITING for input at {', '.join(result.waiting_stages)}"
        if result.waiting_stages
        else "FAILED"
    )
    spent = result.usage.requests > 0
    timings = _by_start(result)
    origin = _origin(timings)  # the table's times count from the first stage
    setup = f" ({origin:.1f} ms of it set-up before the first stage)" if origin >= 0.05 else ""  # noqa: PLR2004 (shown as 0.1)
    names = [name for name, _ in COLUMNS if spent or name not in ("tokens", "cost $")]
    id_width = ID_MAX
    if width is not None:
        every = [t.stage for t in timings] + list(result.not_started_stages)
        longest = max([len(stage) for stage in every] + [len("stage")])
        names, id_width = _fitted(names, min(ID_MAX, longest) + 1, width)
    widths = dict(COLUMNS)
    lines = [
        f"{'stage':<{id_width}}{'status':<{STATUS}}"
        + "".join(f"{name:>{widths[name]}}" for name in names)
    ]
    for t in timings:
        cells = _cells(result, t, origin)
        row = f"{_cut(t.stage, id_width, width):<{id_width}}{t.status.value:<{STATUS}}" + "".join(
            f"{cells[name]:>{widths[name]}}" for name in names
        )
        note = f"  ({len(t.items)} items)" if t.items else ""
        lines.append(row + (note if width is None or len(row + note) <= width else ""))
    # Stages the run never started (fail-fast came first): listed, so none goes missing.
    lines.extend(
        f"{_cut(stage, id_width, width):<{id_width}}{'not started':<{STATUS}}"
        + "".join(f"{'-':>{widths[name]}}" for name in names if name not in ("tokens", "cost $"))
        for stage in result.not_started_stages
    )
    took = f"{result.total_duration_ms:.1f} ms{setup}"
    said = [f"pipeline {result.pipeline_name}, run {result.run_id}: {outcome} in {took}"]
    path = critical_path(result)
    if path:
        length = path[-1].finished_ms - path[0].start_ms
        steps = " -> ".join(
            f"{step.stage} {step.share_ms:.1f} ms ({step.share_ms / (length or 1.0):.0%})"
            for step in path
        )
        said.append(f"critical path ({length:.1f} ms): {steps}")
    if spent:
        used = result.usage
        said.append(
            f"LLM calls: {used.requests}, {used.input_tokens} tokens in ({used.cached_input_tokens}"
            f" cached), {used.output_tokens} out, cost {_dollars(used.cost_usd)}"
        )
    if width is not None:
        said = [textwrap.fill(line, width, subsequent_indent="  ") for line in said]
    return "\n".join([said[0], *lines, *said[1:]])


def _fitted(names: list[str], id_width: int, width: int) -> tuple[list[str], int]:
    """The columns kept, and the stage id's width, for a table ``width`` wide."""
    widths = dict(COLUMNS)

    def total(kept: list[str], ids: int) -> int:
        return ids + STATUS + sum(widths[name] for name in kept)

    kept = list(names)
    for name in DROPPED_FIRST:
        if total(kept, id_width) <= width:
            break
        if name in kept:
            kept.remove(name)
    spare = width - total(kept, ID_MIN + 1)
    return kept, min(id_width, ID_MIN + 1 + max(0, spare))


def _cells(result: PipelineResult, t: StageTiming, origin: float) -> dict[str, str]:
    used = result.usage_by_stage.get(t.stage)
    return {
        "queued": f"{t.queued_ms - origin:.1f}",
        "start": f"{t.started_ms - origin:.1f}",
        "end": f"{t.finished_ms - origin:.1f}",
        "took": f"{t.duration_ms:.1f}",
        "wait": f"{t.wait_ms:.1f}",
        "retry": f"{t.retry_ms:.1f}",
        "tries": str(t.attempts),
        "cached": _cached(result, t),
        "tokens": "-" if used is None else str(used.tokens),
        "cost $": _spent(used),
    }


def _cut(stage: str, column: int, width: int | None) -> str:
    """A stage id in its column: cut to it as it always was, or, fitted to a terminal,
    one space short of it, an ellipsis saying it was cut."""
    if width is None:
        return stage[:column]
    return stage if len(stage) < column else stage[: column - 2] + "…"


def _cached(result: PipelineResult, timing: StageTiming) -> str:
    """``yes`` for a cache hit, ``k/n`` for a fan-out stage with cached items."""
    if timing.cached:
        return "yes"
    stage_result = result.get_result(timing.stage)
    items = stage_result.metadata.get("cached_items") if stage_result is not None else None
    return f"{items}/{stage_result.metadata['items']}" if items and stage_result else ""


def _spent(used: Usage | None) -> str:
    return "-" if used is None else _dollars(used.cost_usd)


def _dollars(cost: float | None) -> str:
    return "unknown" if cost is None else f"${cost:.6f}"
