"""Plain async functions as stages: ``async def analyze(input)`` or ``analyze(input,
context)``, given to ``StageDefinition`` as they are or decorated with `stage`.

A function stage returns its output as a plain value (a returned ``StageResult`` is
used as it is, so failures, soft failures and metadata still work) and fails by
raising. An async generator function streams its items, as a class stage's would.
"""

from __future__ import annotations

import functools
import inspect
import types
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

from .._values._results import NO_METADATA, StageResult, make_result
from .._values._status import StageStatus

if TYPE_CHECKING:
    from .._values._context import PipelineContext

T = TypeVar("T")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_SUCCEEDED = StageStatus.SUCCEEDED
#: What may be an async function (checked before the slower ``inspect`` calls).
_CALLABLE_KINDS = (types.FunctionType, types.MethodType, functools.partial)


#: ``arguments(fn)`` when ``fn``'s signature cannot be read (a builtin): give it both.
UNREADABLE = 0

# Reading a signature costs more than running a stage: once per function (held weakly,
# so a function made per run is not kept alive).
_arguments: weakref.WeakKeyDictionary[Callable[..., Any], int | None] = weakref.WeakKeyDictionary()


def arguments(fn: Callable[..., Any]) -> int | None:
    """How many of the two arguments a stage function (``input, context``) or a
    condition (``context, input``) takes: 1 or 2; None when it can take neither
    (no positional parameter, more than two required, a required keyword);
    `UNREADABLE` when its signature cannot be read. Remembered per function."""
    try:
        return _arguments[fn]
    except KeyError:
        known = _arguments[fn] = _read_arguments(fn)
    except TypeError:  # not weakly referenceable
        known = _read_arguments(fn)
    return known


def _read_arguments(fn: Callable[..., Any]) -> int | None:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return UNREADABLE
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return 2
    positional = [p for p in parameters if p.kind in _POSITIONAL]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    required_keywords = [
        p
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    if not positional or len(required) > 2 or required_keywords:  # noqa: PLR2004
        return None
    return min(len(positional), 2)


def _takes_context(fn: Callable[..., Any]) -> bool | None:
    """Whether a stage function is called as ``fn(input, context)`` (True, also when its
    signature cannot be read) or ``fn(input)``; None when it can take neither."""
    count = arguments(fn)
    return None if count is None else count != 1


def signature_text(fn: Callable[..., Any]) -> str:
    """``fn``'s parameters as written, without annotations: ``(input, *, key)``."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return "(...)"
    return str(
        signature.replace(
            parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
            return_annotation=signature.empty,
        )
    )


class FunctionStage(Generic[T]):
    """An async function as a stage: ``execute(input, context)`` calls it and wraps a
    plain return value as the stage's successful output.

    Calling the stage calls the function, so a decorated function can still be called
    (and tested) directly.
    """

    __slots__ = ("__wrapped__", "_name", "fn", "takes_context", "version")

    def __init__(
        self, fn: Callable[..., Awaitable[T]], *, name: str | None = None, version: str = "1"
    ) -> None:
        self.fn = fn
        self.__wrapped__ = fn
        self._name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.version = version
        self.takes_context = _takes_context(fn)

    @property
    def name(self) -> str:
        """The stage's name (the function's, by default)."""
        return self._name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, FunctionStage)  # noqa: S101 (same type, for mypy)
        return (self.fn, self._name, self.version) == (other.fn, other._name, other.version)

    def __hash__(self) -> int:
        return hash((self.fn, self._name, self.version))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function itself."""
        return self.fn(*args, **kwargs)

    def problem(self) -> str | None:
        """Why the function cannot serve as a stage, or None when it can (what
        validation reports, naming the stage)."""
        version: object = self.version
        if not isinstance(version, str) or not version:
            return f"@stage version must be a non-empty string, got {version!r}"
        return self.signature_problem()

    def signature_problem(self) -> str | None:
        """Why the function's parameters cannot take a stage's input, or None (what the
        decorator refuses at once)."""
        if self.takes_context is not None:
            return None
        bare = signature_text(self.fn)
        return (
            f"function {self._name}{bare} must take (input) or (input, context) "
            "as its positional parameters"
        )

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[T]:
        """Call the function on ``input`` (and ``context``); its return value is the
        output, unless it is a ``StageResult`` already."""
        fn: Callable[..., Awaitable[Any]] = self.fn
        returned = await (fn(input, context) if self.takes_context else fn(input))
        if isinstance(returned, StageResult):
            return returned
        return make_result(_SUCCEEDED, returned, None, "", NO_METADATA)


class StreamingFunctionStage(FunctionStage[T]):
    """An async generator function as a streaming stage: each item it yields is handed
    on as it is yielded (to a fan-out pipelined on it), and its output is their list."""

    __slots__ = ()

    async def execute(  # type: ignore[override]
        self, input: Any, context: PipelineContext
    ) -> AsyncIterator[T]:
        """Yield what the generator function yields."""
        fn: Callable[..., AsyncIterator[T]] = self.fn  # type: ignore[assignment]
        produced = fn(input, context) if self.takes_context else fn(input)
        async with aclosing(produced) as items:  # type: ignore[type-var]
            async for item in items:
                yield item


def is_async_function(value: object) -> bool:
    """Whether ``value`` is an async (or async generator) function, to wrap as a stage."""
    return isinstance(value, _CALLABLE_KINDS) and (
        inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)
    )


def function_stage(
    fn: Callable[..., Any], *, name: str | None = None, version: str = "1"
) -> FunctionStage[Any]:
    """The stage that runs ``fn``: a streaming one for an async generator function."""
    kind = StreamingFunctionStage if inspect.isasyncgenfunction(fn) else FunctionStage
    return kind(fn, name=name, version=version)


class _Decorator(Protocol):
    """What ``@stage(name=..., version=...)`` returns: ``stage`` with those settings."""

    @overload
    def __call__(self, fn: Callable[..., AsyncIterator[T]], /) -> StreamingFunctionStage[T]: ...
    @overload
    def __call__(self, fn: Callable[..., Awaitable[StageResult[T]]], /) -> FunctionStage[T]: ...
    @overload
    def __call__(self, fn: Callable[..., Awaitable[T]], /) -> FunctionStage[T]: ...


@overload
def stage(fn: Callable[..., AsyncIterator[T]], /) -> StreamingFunctionStage[T]: ...
@overload
def stage(fn: Callable[..., Awaitable[StageResult[T]]], /) -> FunctionStage[T]: ...
@overload
def stage(fn: Callable[..., Awaitable[T]], /) -> FunctionStage[T]: ...
@overload
def stage(*, name: str | None = None, version: str = "1") -> _Decorator: ...
def stage(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    version: str = "1",
) -> FunctionStage[Any] | _Decorator:
    """Make an async function a stage, with a name and a cache version if wanted.

    ``@stage`` on its own, or ``@stage(name="audio", version="2")``. A plain async
    function works as a stage without it.

    Args:
        fn: The function, when used as ``@stage`` without parentheses.
        name: The stage's name (the function's name by default).
        version: Goes into the cache key: bumping it invalidates the stage's cached
            outputs.

    Returns:
        The stage, or (with parentheses) a decorator that makes one.
    """

    def wrap(function: Callable[..., Any]) -> FunctionStage[Any]:
        given: object = function
        if not callable(given):
            msg = f"@stage decorates an async function, got {type(given).__name__}"
            raise TypeError(msg)
        if not (inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)):
            label = getattr(function, "__name__", type(function).__name__)
            msg = (
                f"@stage needs an async function, got the plain function {label}: write "
                f"'async def {label}', or run it off the Trio thread with SyncStage({label})"
            )
            raise TypeError(msg)
        made = function_stage(function, name=name, version=version)
        problem = made.signature_problem()
        if problem is not None:
            raise TypeError(problem)
        return made

    if fn is None:
        decorator: _Decorator = wrap  # type: ignore[assignment]
        return decorator
    return wrap(fn)
