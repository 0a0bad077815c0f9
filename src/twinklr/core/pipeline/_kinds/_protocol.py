"""The stage protocol: structural, so stages need no base class."""

from __future__ import annotations

import functools
import inspect
import types
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ._function import FunctionStage

if TYPE_CHECKING:
    from .._values._context import PipelineContext
    from .._values._results import StageResult

T = TypeVar("T")


@runtime_checkable
class PipelineStage(Protocol[T]):
    """Anything with a ``name`` and ``async def execute(input, context) -> StageResult``.

    A stage that runs code it holds (a model, a wrapped function) may also define
    ``cache_code()`` returning those functions and objects: cache keys then cover their
    source, so editing them never serves a stale output.
    """

    @property
    def name(self) -> str:
        """A human-readable name for logs and results."""
        ...

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[T]:
        """Do the stage's work on ``input``; report failure as a result, or raise."""
        ...


def stage_problem(stage: object) -> str | None:
    """Why ``stage`` cannot serve as a stage, or None when it can."""
    if isinstance(stage, FunctionStage):
        return stage.problem()
    if _is_plain_function(stage):
        label = getattr(stage, "__name__", type(stage).__name__)
        return (
            f"{label} is a plain (synchronous) function: write 'async def {label}', "
            f"or run it off the Trio thread with SyncStage({label})"
        )
    return _object_problem(stage)


def _object_problem(stage: object) -> str | None:
    """Why an object is not a stage: the stage protocol: a ``name`` and an async ``execute``."""
    kind = type(stage).__name__
    if isinstance(stage, type) or stage is None:
        return _not_an_instance(stage)
    try:
        getattr(stage, "name")  # noqa: B009 (a property may raise anything)
        execute = getattr(stage, "execute", None)
    except AttributeError:
        return f"{kind} instance has no 'name' (a PipelineStage needs a name and an async execute)"
    except Exception as exc:  # noqa: BLE001 - a property's own error, reported as a problem
        return f"reading {kind}'s name or execute raised {type(exc).__name__}: {exc}"
    if execute is None or not callable(execute):
        return f"{kind} instance has no execute() method (a PipelineStage needs one)"
    if not (inspect.iscoroutinefunction(execute) or inspect.isasyncgenfunction(execute)):
        return f"{kind}.execute is not an async function (write 'async def execute')"
    return None


def _not_an_instance(stage: type | None) -> str:
    if stage is None:
        return "got None, not a stage (a PipelineStage needs a name and an async execute)"
    return f"got the class {stage.__name__}, not an instance (write {stage.__name__}())"


def stage_problems_depend_on_the_instance(stage: object) -> bool:
    """Whether `stage_problem` may answer differently for two objects of the same
    type (functions and function stages), so its answer cannot be kept per type."""
    return isinstance(stage, FunctionStage) or _is_plain_function(stage)


def _is_plain_function(stage: object) -> bool:
    return isinstance(stage, types.FunctionType | types.MethodType | functools.partial)
