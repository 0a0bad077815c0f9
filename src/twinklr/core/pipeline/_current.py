"""The run a task belongs to: what the engine makes available to the code its stages call.

The engine sets these context variables for a run's stage tasks (Trio tasks inherit
them): the rate limiter records its waits in the run's context, a sub-pipeline runs with
the run's executor, an offloaded stage finds the executor's default runner. They name no
engine class; the engine installs its executor as the one used outside any run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._context import PipelineContext
    from ._gate import Gates
    from ._results import PipelineResult
    from .definition import PipelineDefinition


class Executor(Protocol):
    """What code running inside a pipeline run may ask of the executor running it."""

    runner: Any
    """Where offloaded (``SyncStage``) work runs when the stage names no runner."""

    async def execute(
        self,
        pipeline: PipelineDefinition,
        initial_input: Any = None,
        context: PipelineContext | None = None,
    ) -> PipelineResult:
        """Run ``pipeline`` to completion and return its result."""
        ...


#: The context of the pipeline run in this task: a limiter records its waits there.
current_context: ContextVar[PipelineContext | None] = ContextVar(
    "twinklr_current_context", default=None
)

#: Whether the run this task (or worker thread: Trio copies context variables into it)
#: belongs to is being cancelled; it answers for that run even after the run ended.
run_cancelling: ContextVar[Callable[[], bool] | None] = ContextVar(
    "twinklr_run_cancelling", default=None
)

#: The executor running the current task's pipeline: a sub-pipeline runs with it too
#: (same cache store), so its stages are cached and resumed like the outer ones.
current_executor: ContextVar[Executor | None] = ContextVar("twinklr_current_executor", default=None)

#: The open requests for input of the run this task belongs to (a `WaitForInput` stage
#: opens its request there; the run's handle answers it).
current_gates: ContextVar[Gates | None] = ContextVar("twinklr_current_gates", default=None)

#: What the outermost run in this task awaits when it ends (set by the engine; a
#: sub-pipeline's run adds to its outer run's list).
run_cleanups: ContextVar[list[Callable[[], Awaitable[None]]] | None] = ContextVar(
    "twinklr_run_cleanups", default=None
)


def at_run_end(cleanup: Callable[[], Awaitable[None]]) -> bool:
    """Have the outermost run this task is in await ``cleanup()`` when it ends (once,
    however often it is asked); False outside any run."""
    cleanups = run_cleanups.get()
    if cleanups is None:
        return False
    if cleanup not in cleanups:
        cleanups.append(cleanup)
    return True


_default_executor: list[Callable[[], Executor]] = []


def install_default_executor(make: Callable[[], Executor]) -> None:
    """Make ``make()`` the executor that code outside any run falls back on (the engine
    installs ``PipelineExecutor`` when it is imported)."""
    _default_executor[:] = [make]


def executor_in_use() -> Executor:
    """The executor of the run this task is in; outside any run, a new default one."""
    executor = current_executor.get()
    if executor is not None:
        return executor
    if not _default_executor:
        msg = "no pipeline executor is installed (import twinklr.core.pipeline)"
        raise RuntimeError(msg)
    return _default_executor[0]()
