"""What a task inside a run can reach: its run's context and executor."""

from __future__ import annotations

import pytest

from conftest import stub
from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    _current,
)


class Reports:
    """A stage that reports which executor and context its run makes current."""

    name = "reports"

    def __init__(self) -> None:
        self.seen: list[object] = []

    async def execute(self, input: object, context: PipelineContext) -> StageResult[None]:
        self.seen += [_current.executor_in_use(), _current.current_context.get()]
        return StageResult.success(None)


async def test_a_stage_reaches_the_executor_and_context_of_its_run() -> None:
    reports = Reports()
    executor, context = PipelineExecutor(), PipelineContext()
    pipeline = PipelineDefinition("p", [StageDefinition("a", reports)])
    result = await executor.execute(pipeline, None, context)
    assert result.success
    assert reports.seen == [executor, context]
    assert _current.current_executor.get() is None  # reset when the run ended


async def test_outside_a_run_the_installed_default_executor_is_used() -> None:
    assert _current.current_context.get() is None
    fallback = _current.executor_in_use()
    assert type(fallback) is PipelineExecutor
    assert fallback is not _current.executor_in_use()  # a new one each time
    result = await fallback.execute(PipelineDefinition("p", [StageDefinition("a", stub())]))
    assert result.success


def test_without_an_installed_executor_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_current, "_default_executor", [])
    with pytest.raises(RuntimeError, match="no pipeline executor is installed"):
        _current.executor_in_use()
