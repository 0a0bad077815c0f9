"""A whole pipeline used as one stage of another (also under fan-out)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .._values._current import current_executor
from .._values._results import StageResult

if TYPE_CHECKING:
    from .._values._context import PipelineContext
    from .._values._current import Executor


class Pipeline:
    """The base of `PipelineDefinition`, which is defined above the stage kinds: what
    lets a stage definition recognise a whole pipeline given as its stage."""

    __slots__ = ()

    name: str
    stages: tuple[Any, ...]
    fail_fast: bool


@attrs.frozen
class SubPipelineStage:
    """Runs ``pipeline`` with the stage's input as its initial input.

    Its output is the sub-pipeline's ``outputs`` (stage id -> output). It shares the
    parent's context, so state and metrics flow both ways; a failure inside fails this
    stage with the inner error, and cancellation crosses the boundary unchanged.
    """

    __twinklr_loop__ = "trio"  # Trio code, on any host loop

    pipeline: Pipeline
    """The pipeline to run (a `PipelineDefinition`)."""

    @property
    def name(self) -> str:
        """The sub-pipeline's name."""
        return self.pipeline.name

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[dict[str, Any]]:
        """Run the sub-pipeline to completion, with the executor of the run this stage is
        in (its cache, its runner); called outside any run, with a default executor."""
        executor = current_executor.get() or _default_executor()
        result = await executor.execute(self.pipeline, input, context)
        metadata = {"run_id": result.run_id, "failed_stages": result.failed_stages}
        if not result.success:
            error = f"sub-pipeline '{self.pipeline.name}': {result.error}"
            return StageResult.failure(error, stage_name=self.name, metadata=metadata)
        return StageResult.success(dict(result.outputs), stage_name=self.name, metadata=metadata)


def _default_executor() -> Executor:
    """A new default executor, for a sub-pipeline called on its own outside any run.

    The one import from the vocabulary up into the engine, declared in the contracts: a
    pipeline needs an executor to run, and only the engine has one. It is imported when
    needed, never when this module is.
    """
    from .._engine._executor import PipelineExecutor  # noqa: PLC0415

    return PipelineExecutor()
