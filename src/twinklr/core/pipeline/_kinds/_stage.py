"""A stage's definition: its id, the stage object, its inputs and its policy.

A frozen value; constructing an invalid one does not raise (validation reports what is
wrong, naming the stage). Its public home is ``twinklr.core.pipeline.definition``.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    Literal,
    Protocol,
    TypedDict,
    TypeVar,
    Unpack,
    overload,
)

import attrs

from .._values._policy import ExecutionPattern, RetryConfig
from .._values._results import StageResult
from ._function import function_stage, is_async_function
from ._subpipeline import Pipeline, SubPipelineStage

if TYPE_CHECKING:
    from .._values._context import PipelineContext

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def _to_inputs(value: Iterable[str] | str | None) -> tuple[Any, ...]:
    # Never raises: a bad input is validation's to report, naming the stage.
    given: object = value
    kind = type(given)
    if kind is list or kind is tuple:  # the common cases first: an ABC check is slow
        return tuple(given)  # type: ignore[arg-type]
    if given is None:
        return ()
    if isinstance(given, str) or not isinstance(given, Iterable):
        return (given,)
    return tuple(given)


def _to_stage(value: Any) -> Any:
    # A whole pipeline, or an async function, may be used as a stage: wrap it so the
    # executor sees a stage.
    if isinstance(value, Pipeline):
        return SubPipelineStage(value)
    if is_async_function(value):
        return function_stage(value)
    return value


def _to_routes(value: Any) -> Any:
    """``{branch: ids}`` with each branch's ids as a tuple (one id may be a string); any
    other value is kept for validation to report."""
    if value is None or not isinstance(value, Mapping):
        return value
    return {
        branch: (ids,) if isinstance(ids, str) else tuple(ids) if _iterable(ids) else ids
        for branch, ids in value.items()
    }


def _iterable(value: object) -> bool:
    return isinstance(value, list | tuple | set | frozenset)


class _ReturnsResult(Protocol[T]):
    """A class stage: its ``execute`` returns ``StageResult[T]``."""

    def execute(self, input: Any, context: Any, /) -> Awaitable[StageResult[T]]: ...


class _YieldsItems(Protocol[T_co]):
    """A class stage whose ``execute`` is an async generator of ``T``."""

    def execute(self, input: Any, context: Any, /) -> AsyncIterator[T_co]: ...


class _Executes(Protocol):
    """Any other class stage (its ``execute`` typed loosely: its output is ``Any``).

    Not ``object``: an overload taking anything would make a function whose output type
    contains ``Any`` (``dict[str, Any]``, a bare ``np.ndarray``) match it as well as its
    own, and type checkers then give up on the output type."""

    def execute(self, input: Any, context: Any, /) -> Any: ...


class _Options(TypedDict, total=False):
    """The keyword arguments of `StageDefinition` but ``pattern``."""

    inputs: Iterable[str] | str | None
    condition: Callable[[PipelineContext], bool] | Callable[[PipelineContext, Any], bool] | None
    retry_config: RetryConfig | None
    timeout_ms: float | None
    critical: bool
    max_concurrent_fan_out: int | None
    fan_out_over: str | None
    description: str | None
    version: str
    cache: bool
    cache_ttl: float | timedelta | None
    input_type: Any
    output_type: Any
    routes: Mapping[str, Iterable[str] | str] | None
    router: Callable[[Any], Any] | None


class StageOptions(_Options, total=False):
    """The keyword arguments of `StageDefinition` (for type checkers)."""

    pattern: ExecutionPattern


@attrs.frozen(init=False)
class StageDefinition(Generic[T]):
    """One stage of a pipeline: its id, the stage object, its inputs and its policy.

    ``id`` and ``stage`` may be given positionally, as in ``StageDefinition("audio",
    analyze)``, and so may the rest in the original Twinklr's order (``pattern``,
    ``inputs``, ``condition``, ``retry_config``, ``timeout_ms``, ``critical``,
    ``max_concurrent_fan_out``, ``description``, ``input_type``, ``output_type``); the
    options added since are keyword-only. ``stage`` may also be a
    [PipelineDefinition][twinklr.core.pipeline.PipelineDefinition] (a sub-pipeline).
    A definition is generic in its stage's output type ``T``, which type checkers infer
    from a function's return annotation or from ``StageResult[T]`` on a class stage's
    ``execute``: ``result.output(definition)`` is then typed ``T``.
    """

    id: str
    """Unique id within the pipeline; other stages name it in their ``inputs``."""
    stage: Any = attrs.field(converter=_to_stage)
    """An async function (``async def f(input)`` or ``f(input, context)``, whose return
    value is the output), or an object with a ``name`` and ``async def execute(input,
    context)`` returning a ``StageResult``, or a
    [PipelineDefinition][twinklr.core.pipeline.PipelineDefinition]."""
    pattern: ExecutionPattern = attrs.field(default=ExecutionPattern.SEQUENTIAL)
    """How the stage runs (see [ExecutionPattern][twinklr.core.pipeline.ExecutionPattern])."""
    inputs: tuple[str, ...] = attrs.field(default=(), converter=_to_inputs)
    """Ids of the stages whose outputs this stage needs."""
    condition: Callable[[PipelineContext], bool] | Callable[[PipelineContext, Any], bool] | None = (
        attrs.field(default=None)
    )
    """Evaluated when the inputs are ready, as ``condition(context)`` or, with two
    parameters, ``condition(context, input)``; False skips the stage (output None)."""
    retry_config: RetryConfig | None = attrs.field(default=None)
    """Retry policy per attempt (per item for fan-out); None means one attempt."""
    timeout_ms: float | None = attrs.field(default=None)
    """Bound on each attempt (each item's attempt for fan-out)."""
    critical: bool = attrs.field(default=True)
    """A critical failure fails the run and cancels everything; a non-critical one is
    recorded and its dependents receive None."""
    max_concurrent_fan_out: int | None = attrs.field(default=None)
    """At most this many fan-out items at once; None is unbounded."""
    fan_out_over: str | None = attrs.field(default=None, kw_only=True)
    """For a fan-out stage with several inputs: the input holding the list."""
    description: str | None = attrs.field(default=None)
    """Free text for people and graphs."""
    version: str = attrs.field(default="1", kw_only=True)
    """Part of the cache key: bump it to invalidate cached outputs of this stage."""
    cache: bool = attrs.field(default=True, kw_only=True)
    """Whether successful outputs are cached (when the executor has a cache store)."""
    cache_ttl: float | timedelta | None = attrs.field(default=None, kw_only=True)
    """How long a cached output is served (seconds, or a timedelta); None: no expiry."""
    input_type: Any = attrs.field(default=None)
    """What the stage takes, for people (a type or its name; nothing checks it)."""
    output_type: Any = attrs.field(default=None)
    """The type cached outputs are read back as; by default the ``T`` of execute's
    ``StageResult[T]`` return annotation (a function's return annotation). A string is
    documentation only, as in the original Twinklr."""
    routes: Mapping[str, tuple[str, ...]] | None = attrs.field(
        default=None, converter=_to_routes, kw_only=True, hash=False
    )
    """Branches this stage chooses between: ``{branch: [stage_id, ...]}``, each listed
    stage taking this one as an input. The stage's output (or ``router(output)``) names
    the branch or branches taken (a string, or several; none is allowed); the stages
    listed only under branches not taken are skipped, and so is every stage whose inputs
    were all skipped by routing. A stage with one live input runs (None for the others)."""
    router: Callable[[Any], Any] | None = attrs.field(default=None, kw_only=True)
    """Picks the branch or branches from the output (by default the output is the branch
    name); naming a branch that is not in ``routes`` fails the stage."""

    if TYPE_CHECKING:

        def __twinklr_output__(self) -> T:
            """The stage's output type, for type checkers only (`PipelineResult.output`)."""
            ...

        # The overloads type a definition by its stage; at run time the fields are
        # attrs' positional parameters in the original Twinklr's order (the options
        # added since are keyword-only), and attrs' initialiser is the constructor.
        # A fan-out stage's output is the list of its items' outputs: those first.
        @overload
        def __init__(
            self: StageDefinition[list[T]],
            id: str,
            stage: _ReturnsResult[T],
            *,
            pattern: Literal[ExecutionPattern.FAN_OUT],
            **options: Unpack[_Options],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[list[T]]],
            id: str,
            stage: _YieldsItems[T],
            *,
            pattern: Literal[ExecutionPattern.FAN_OUT],
            **options: Unpack[_Options],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[T]],
            id: str,
            stage: Callable[..., Awaitable[StageResult[T]]],
            *,
            pattern: Literal[ExecutionPattern.FAN_OUT],
            **options: Unpack[_Options],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[list[T]]],
            id: str,
            stage: Callable[..., AsyncIterator[T]],
            *,
            pattern: Literal[ExecutionPattern.FAN_OUT],
            **options: Unpack[_Options],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[T]],
            id: str,
            stage: Callable[..., Awaitable[T]],
            *,
            pattern: Literal[ExecutionPattern.FAN_OUT],
            **options: Unpack[_Options],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[dict[str, Any]]],
            id: str,
            stage: Pipeline,
            *,
            pattern: Literal[ExecutionPattern.FAN_OUT],
            **options: Unpack[_Options],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[T],
            id: str,
            stage: _ReturnsResult[T],
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[T]],
            id: str,
            stage: _YieldsItems[T],
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[T],
            id: str,
            stage: Callable[..., Awaitable[StageResult[T]]],
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[list[T]],
            id: str,
            stage: Callable[..., AsyncIterator[T]],
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[T],
            id: str,
            stage: Callable[..., Awaitable[T]],
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[dict[str, Any]],
            id: str,
            stage: Pipeline,
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[Any],
            id: str,
            stage: _Executes,
            **options: Unpack[StageOptions],
        ) -> None: ...
        @overload
        def __init__(
            self: StageDefinition[Any],
            id: str,
            stage: object,
            pattern: ExecutionPattern,
            /,
            *more: Any,
            **options: Any,
        ) -> None: ...
        def __init__(self, id: str, stage: Any, *more: Any, **options: Any) -> None: ...


def one_attempt(sdef: StageDefinition[Any]) -> bool:
    """Whether ``sdef`` runs one attempt with no time bound (no retries, no timeout):
    validation has nothing of its policy to check, and the executor calls it plainly."""
    config: object = sdef.retry_config
    return sdef.timeout_ms is None and (
        config is None or (type(config) is RetryConfig and config.max_attempts == 1)
    )


def _constructor(cls: type) -> Any:
    """``cls``'s attrs initialiser as its ``__init__``: no call on top of it, and
    Python's own argument errors name the class (``StageDefinition() got an unexpected
    keyword argument 'timeout'``)."""
    generated = cls.__attrs_init__  # type: ignore[attr-defined]
    code = generated.__code__.replace(co_name="__init__", co_qualname=cls.__name__)
    init = types.FunctionType(
        code, generated.__globals__, "__init__", generated.__defaults__, generated.__closure__
    )
    init.__kwdefaults__ = generated.__kwdefaults__
    init.__qualname__ = cls.__qualname__  # (what Python's argument errors say)
    init.__doc__ = cls.__doc__
    return init


if not TYPE_CHECKING:
    StageDefinition.__init__ = _constructor(StageDefinition)
