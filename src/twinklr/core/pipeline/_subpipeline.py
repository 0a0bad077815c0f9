"""A whole pipeline used as one stage of another (also under fan-out)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from ._current import executor_in_use
from ._results import StageResult

if TYPE_CHECKING:
    from ._context import PipelineContext
    from .definition import PipelineDefinition


@attrs.frozen
class SubPipelineStage:
    """Runs ``pipeline`` with the stage's input as its initial input.

    Its output is the sub-pipeline's ``outputs`` (stage id -> output). It shares the
    parent's context, so state and metrics flow both ways; a failure inside fails this
    stage with the inner error, and cancellation crosses the boundary unchanged.
    """

    __twinklr_loop__ = "trio"  # Trio code, on any host loop

    pipeline: PipelineDefinition
    """The pipeline to run."""

    @property
    def name(self) -> str:
        """The sub-pipeline's name."""
        return self.pipeline.name

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[dict[str, Any]]:
        """Run the sub-pipeline to completion, with the executor of the run this stage is
        in (its cache, its runner); called outside any run, with a default executor."""
        result = await executor_in_use().execute(self.pipeline, input, context)
        metadata = {"run_id": result.run_id, "failed_stages": result.failed_stages}
        if not result.success:
            error = f"sub-pipeline '{self.pipeline.name}': {result.error}"
            return StageResult.failure(error, stage_name=self.name, metadata=metadata)
        return StageResult.success(dict(result.outputs), stage_name=self.name, metadata=metadata)
