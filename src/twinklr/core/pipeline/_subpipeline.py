"""A whole pipeline used as one stage of another (also under fan-out)."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs

from ._results import StageResult

if TYPE_CHECKING:
    from ._context import PipelineContext
    from ._executor import PipelineExecutor
    from .definition import PipelineDefinition

#: The executor running the current task's pipeline: a sub-pipeline runs with it too
#: (same cache store), so its stages are cached and resumed like the outer ones.
current_executor: ContextVar[PipelineExecutor | None] = ContextVar(
    "twinklr_current_executor", default=None
)


@attrs.frozen
class SubPipelineStage:
    """Runs ``pipeline`` with the stage's input as its initial input.

    Its output is the sub-pipeline's ``outputs`` (stage id -> output). It shares the
    parent's context, so state and metrics flow both ways; a failure inside fails this
    stage with the inner error, and cancellation crosses the boundary unchanged.
    """

    pipeline: PipelineDefinition
    """The pipeline to run."""

    @property
    def name(self) -> str:
        """The sub-pipeline's name."""
        return self.pipeline.name

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[dict[str, Any]]:
        """Run the sub-pipeline to completion."""
        executor = current_executor.get()
        if executor is None:
            from ._executor import PipelineExecutor  # noqa: PLC0415 (import cycle)

            executor = PipelineExecutor()
        result = await executor.execute(self.pipeline, input, context)
        metadata = {"run_id": result.run_id, "failed_stages": result.failed_stages}
        if not result.success:
            error = f"sub-pipeline '{self.pipeline.name}': {result.error}"
            return StageResult.failure(error, stage_name=self.name, metadata=metadata)
        return StageResult.success(dict(result.outputs), stage_name=self.name, metadata=metadata)
