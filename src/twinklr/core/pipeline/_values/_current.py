"""The run a task belongs to: what the engine makes available to the code its stages call.

The engine sets these context variables for a run's stage tasks (Trio tasks inherit
them): a sub-pipeline runs with the run's executor, an offloaded stage finds the
executor's default runner, a Dask connection is closed when the outermost run ends.
They name no engine class: the executor is described by a protocol. (The run's context
and whether it is being cancelled are beside the context, in ``_context``.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Protocol

import trio

if TYPE_CHECKING:
    from ._context import PipelineContext
    from ._results import PipelineResult


class Executor(Protocol):
    """What code running inside a pipeline run may ask of the executor running it."""

    runner: Any
    """Where offloaded (``SyncStage``) work runs when the stage names no runner."""

    async def execute(
        self,
        pipeline: Any,  # a PipelineDefinition: defined above the values
        initial_input: Any = None,
        context: PipelineContext | None = None,
    ) -> PipelineResult:
        """Run ``pipeline`` to completion and return its result."""
        ...


#: The executor running the current task's pipeline: a sub-pipeline runs with it too
#: (same cache store), so its stages are cached and resumed like the outer ones.
current_executor: ContextVar[Executor | None] = ContextVar("twinklr_current_executor", default=None)

#: What the outermost run in this task awaits when it ends (set by the engine; a
#: sub-pipeline's run adds to its outer run's list).
run_cleanups: ContextVar[list[Callable[[], Awaitable[None]]] | None] = ContextVar(
    "twinklr_run_cleanups", default=None
)


def on_run_end(cleanup: Callable[[], Awaitable[None]]) -> bool:
    """Have the outermost run this task is in await ``cleanup()`` when it ends, failed,
    cancelled or not (shielded, after its stages; once, however often it is asked: a
    bound method asked for again is the same cleanup). False outside any run.

    The run-end hook of runners that hold something per run (a cluster connection,
    objects sent to it): see [ClusterRunner][twinklr.core.pipeline.ClusterRunner]."""
    cleanups = run_cleanups.get()
    if cleanups is None:
        return False
    if cleanup not in cleanups:
        cleanups.append(cleanup)
    return True


def current_run() -> object | None:
    """What identifies the outermost run this task is in (the same object for all its
    stages and sub-pipelines, until it ends), None outside any run."""
    return run_cleanups.get()


class LateOutput:
    """A unit's output that arrived while its task was being cancelled: a result that
    was on its way when the run failed fast, which the engine still caches (a success
    like any other). Held by the task running the unit (a stage, or a fan-out item)."""

    __slots__ = ("armed", "arrived", "task", "value")

    def __init__(self, task: object) -> None:
        self.task = task
        self.armed = False  # the runner's value is the unit's output (see direct_output)
        self.arrived = False
        self.value: Any = None


_late: ContextVar[LateOutput | None] = ContextVar("twinklr_late_output", default=None)


def expect_late() -> LateOutput:
    """A slot for the output of the unit this task is about to run, should it arrive
    as the task is cancelled (see `offer_late`)."""
    slot = LateOutput(trio.lowlevel.current_task())
    _late.set(slot)
    return slot


def _own_slot() -> LateOutput | None:
    """This task's slot (not one a child task inherited from the task that set it)."""
    slot = _late.get()
    if slot is None or slot.task is not trio.lowlevel.current_task():
        return None
    return slot


@contextmanager
def direct_output() -> Iterator[None]:
    """Inside the block, what a runner returns is the unit's output (``SyncStage``):
    a value it offers late (`offer_late`) is cached as that output."""
    slot = _own_slot()
    if slot is None:
        yield
        return
    slot.armed = True
    try:
        yield
    finally:
        slot.armed = False


def offer_late(value: Any) -> None:
    """A runner's call was cancelled after its work had returned ``value`` (the result
    was on its way back): keep it as the unit's output, if the unit is one the engine
    caches and ``value`` is its output (`direct_output`)."""
    slot = _own_slot()
    if slot is not None and slot.armed:
        slot.value = value
        slot.arrived = True
