"""The stage protocol: structural, so stages need no base class."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from ._context import PipelineContext
    from ._results import StageResult

T = TypeVar("T")


@runtime_checkable
class PipelineStage(Protocol[T]):
    """Anything with a ``name`` and ``async def execute(input, context) -> StageResult``."""

    @property
    def name(self) -> str:
        """A human-readable name for logs and results."""
        ...

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[T]:
        """Do the stage's work on ``input``; report failure as a result, or raise."""
        ...


def stage_problem(stage: object) -> str | None:
    """Why ``stage`` cannot serve as a stage, or None when it can."""
    kind = type(stage).__name__
    if isinstance(stage, type):
        return f"got the class {stage.__name__}, not an instance (write {stage.__name__}())"
    if stage is None:
        return "got None, not a stage (a PipelineStage needs a name and an async execute)"
    if not hasattr(stage, "name"):
        return f"{kind} instance has no 'name' (a PipelineStage needs a name and an async execute)"
    execute = getattr(stage, "execute", None)
    if execute is None or not callable(execute):
        return f"{kind} instance has no execute() method (a PipelineStage needs one)"
    if not (inspect.iscoroutinefunction(execute) or inspect.isasyncgenfunction(execute)):
        return f"{kind}.execute is not an async function (write 'async def execute')"
    return None
