"""What a task inside a run can reach: its run's context and executor."""

from __future__ import annotations

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
)
from twinklr.core.pipeline._values import _context, _current


class Reports:
    """A stage that reports which executor and context its run makes current."""

    name = "reports"

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def execute(self, input: object, context: PipelineContext) -> StageResult[None]:
        self.seen += [_current.current_executor.get(), _context.current_context.get()]
        return StageResult.success(None)


async def test_a_stage_reaches_the_executor_and_context_of_its_run() -> None:
    reports = Reports()
    executor, context = PipelineExecutor(), PipelineContext()
    pipeline = PipelineDefinition("p", [StageDefinition("a", reports)])
    result = await executor.execute(pipeline, None, context)
    assert result.success
    assert reports.seen == [executor, context]
    assert _current.current_executor.get() is None  # reset when the run ended


async def test_outside_a_run_a_cleanup_is_refused_and_nothing_is_current() -> None:
    async def cleanup() -> None:
        pass

    assert _current.current_executor.get() is None
    assert _context.current_context.get() is None
    assert _current.on_run_end(cleanup) is False
    assert _current.current_run() is None
