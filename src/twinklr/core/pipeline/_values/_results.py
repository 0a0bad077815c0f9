"""Stage and pipeline results: frozen values that say what happened."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, cast, overload

import attrs

from ..errors import NoOutputError, StageExecutionError
from ._status import SUCCESS_STATUSES, StageStatus
from ._usage import Usage

if TYPE_CHECKING:
    from ._context import ContextSnapshot
    from ._timing import StageTiming

T = TypeVar("T")
_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class _Defines(Protocol[_T_co]):
    """A stage definition as `PipelineResult.output` reads it: its id and, for type
    checkers only, the type of its output (``StageDefinition[T]`` is one; it is defined
    above the results, so it is described here rather than imported)."""

    @property
    def id(self) -> str: ...

    def __twinklr_output__(self) -> _T_co: ...


#: The metadata of a result that has none (shared).
NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class _ReadOnly(Mapping[str, Any]):
    """Base of read-only mappings that results keep as they are (no copy)."""

    __slots__ = ()


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    # The common cases first, by exact type: an ABC's isinstance is Python code.
    if value is None:
        return NO_METADATA
    kind = type(value)
    if kind is MappingProxyType:
        return value
    if kind is dict:
        return MappingProxyType(dict(value)) if value else NO_METADATA
    # Read-only already: kept as it is (asking a lazy mapping for its length first
    # would make it count its entries).
    if isinstance(value, _ReadOnly):
        return value
    if not value:
        return NO_METADATA
    return MappingProxyType(dict(value))


class _SuccessConstructor(Protocol):
    def __call__(
        self,
        output: _T,
        *,
        stage_name: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> StageResult[_T]: ...


def _construct_success(
    output: _T, *, stage_name: str = "", metadata: Mapping[str, Any] | None = None
) -> StageResult[_T]:
    frozen = NO_METADATA if metadata is None else _frozen_mapping(metadata)
    return make_result(StageStatus.SUCCEEDED, output, None, stage_name, frozen)


def make_result(
    status: StageStatus,
    output: _T | None,
    error: str | None,
    stage_name: str,
    metadata: Mapping[str, Any],
) -> StageResult[_T]:
    """A result straight from its fields, skipping the friendly constructor's checks
    and filling its slots directly (the executor's hot path makes one per stage, and
    ``StageResult.success`` is this too): the same frozen value as the constructor's.
    ``metadata`` must be read-only already (``NO_METADATA``, a ``MappingProxyType``)."""
    result: StageResult[_T] = _new(StageResult)
    _set_status(result, status)
    _set_output(result, output)
    _set_error(result, error)
    _set_name(result, stage_name)
    _set_metadata(result, metadata)
    _set_exception(result, None)
    return result


class _SuccessDescriptor:
    """``StageResult.success(...)`` constructs; ``result.success`` answers a bool.

    Both spellings are in use, so the name has to serve as a constructor on the
    class and as a flag on an instance.
    """

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _SuccessConstructor: ...
    @overload
    def __get__(self, instance: StageResult[Any], owner: type[Any]) -> bool: ...
    def __get__(
        self, instance: StageResult[Any] | None, owner: type[Any]
    ) -> _SuccessConstructor | bool:
        if instance is None:
            return _construct_success
        return instance.status in SUCCESS_STATUSES


def _status_from(value: object) -> StageStatus:
    """A status given by its value (``"succeeded"``); anything else is refused."""
    try:
        return StageStatus(value)
    except ValueError:
        names = ", ".join(status.value for status in StageStatus)
        msg = f"StageResult status must be a StageStatus (one of {names}), got {value!r}"
        raise ValueError(msg) from None


@attrs.frozen(kw_only=True, init=False)
class StageResult(Generic[T]):
    """What one stage produced: an output, or an error, and how it ended.

    Build one with ``StageResult.success(output)``, ``StageResult.failure(error)``,
    ``StageResult.skipped()`` or ``StageResult.soft_failure(output, error)``. The plain
    constructor also takes ``success=True/False`` instead of a ``status`` (without
    either, a result with an ``error`` is a failure).
    """

    status: StageStatus
    """How the stage ended; ``success`` is derived from it."""
    output: T | None = None
    """The stage's output (the best candidate for a soft failure; None otherwise)."""
    error: str | None = None
    """A message saying what went wrong, for failed and soft-failed results."""
    stage_name: str = ""
    """The stage's name or id; filled in by the executor when the stage left it empty."""
    metadata: Mapping[str, Any] = attrs.field(default=None, converter=_frozen_mapping)
    """Free-form details: attempts, errors per attempt, fan-out item counts, ..."""
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)
    """The exception behind a failure, when there was one."""

    success = _SuccessDescriptor()

    def __init__(
        self,
        *,
        status: StageStatus | str | None = None,
        output: T | None = None,
        error: str | None = None,
        stage_name: str = "",
        metadata: Mapping[str, Any] | None = None,
        exception: BaseException | None = None,
        success: bool | None = None,
    ) -> None:
        if status is None:
            failed = error is not None if success is None else not success
            status = StageStatus.FAILED if failed else StageStatus.SUCCEEDED
        elif not isinstance(status, StageStatus):
            status = _status_from(status)
        if success is not None and success != (status in SUCCESS_STATUSES):
            msg = f"StageResult(success={success}) contradicts status={status.value!r}"
            raise ValueError(msg)
        self.__attrs_init__(
            status=status,
            output=output,
            error=error,
            stage_name=stage_name,
            metadata=metadata,
            exception=exception,
        )

    @classmethod
    def failure(
        cls,
        error: str | BaseException,
        *,
        stage_name: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> StageResult[Any]:
        """A failed result; ``error`` is a message or the exception that caused it."""
        exception = error if isinstance(error, BaseException) else None
        return cls(
            status=StageStatus.FAILED,
            error=_describe(error),
            stage_name=stage_name,
            metadata=metadata,
            exception=exception,
        )

    @classmethod
    def skipped(
        cls, *, stage_name: str = "", reason: str = "condition was false"
    ) -> StageResult[Any]:
        """A stage whose condition said no; it counts as success with output None."""
        return cls(status=StageStatus.SKIPPED, stage_name=stage_name, metadata={"reason": reason})

    @classmethod
    def soft_failure(
        cls,
        output: _T,
        error: str,
        *,
        stage_name: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> StageResult[_T]:
        """A stage that stopped short but hands ``output`` on; the run goes on."""
        return StageResult(
            status=StageStatus.SOFT_FAILED,
            output=output,
            error=error,
            stage_name=stage_name,
            metadata=metadata,
        )

    @property
    def failed(self) -> bool:
        """True when the stage failed outright (not skipped, not soft-failed)."""
        return self.status is StageStatus.FAILED


def _describe(error: str | BaseException) -> str:
    if isinstance(error, StageExecutionError):  # our own messages already say it all
        return str(error)
    if isinstance(error, BaseException):
        text = str(error)
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return error


_new = object.__new__
# The slot setters of StageResult's fields, for make_result.
_set_status, _set_output, _set_error, _set_name, _set_metadata, _set_exception = (
    getattr(StageResult, name).__set__
    for name in ("status", "output", "error", "stage_name", "metadata", "exception")
)
assert {field.name for field in attrs.fields(StageResult)} == {  # noqa: S101 (import-time check)
    "status",
    "output",
    "error",
    "stage_name",
    "metadata",
    "exception",
}


def success_result(
    output: T, *, stage_name: str = "", metadata: Mapping[str, Any] | None = None
) -> StageResult[T]:
    """Module-level spelling of ``StageResult.success(...)``."""
    return _construct_success(output, stage_name=stage_name, metadata=metadata)


def failure_result(
    error: str | BaseException,
    *,
    stage_name: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> StageResult[Any]:
    """Module-level spelling of ``StageResult.failure(...)``."""
    return StageResult.failure(error, stage_name=stage_name, metadata=metadata)


def skipped_result(
    *, stage_name: str = "", reason: str = "condition was false"
) -> StageResult[Any]:
    """Module-level spelling of ``StageResult.skipped(...)``."""
    return StageResult.skipped(stage_name=stage_name, reason=reason)


@attrs.frozen(kw_only=True)
class PipelineResult:
    """The outcome of one run: outputs, per-stage results, metrics and timings."""

    pipeline_name: str
    """The definition's name."""
    run_id: str
    """A unique id for this run, also bound into its log events."""
    success: bool
    """True when the run got to its end and no critical stage failed (soft failures and
    skips do not count); False for a failure, a cancelled run and a run that ended
    waiting for input (``waiting_stages``)."""
    outputs: Mapping[str, Any] = attrs.field(converter=_frozen_mapping)
    """Stage id -> output, for every stage that finished before the run ended."""
    stage_results: Mapping[str, StageResult[Any]] = attrs.field(converter=_frozen_mapping)
    """Stage id -> result, for every stage that ended (cancelled ones included)."""
    failed_stages: tuple[str, ...] = ()
    """Stages that failed, critical or not, in the order they failed."""
    skipped_stages: tuple[str, ...] = ()
    """Stages whose condition said no."""
    soft_failed_stages: tuple[str, ...] = ()
    """Stages that stopped short but handed a best-effort output on (the run went on)."""
    cached_stages: tuple[str, ...] = ()
    """Stages served from the cache instead of running (all items, for fan-out)."""
    uncached_stages: tuple[str, ...] = ()
    """Stages that ran with a cache but whose output was not kept (it, a write, their
    input or a value their function captures could not be stored or fingerprinted, or
    the store failed): each was said once as a `CacheWarning`. Not stages with
    ``cache=False``."""
    cancelled_stages: tuple[str, ...] = ()
    """Stages that were running when fail-fast (or the caller) cancelled them."""
    not_started_stages: tuple[str, ...] = ()
    """Stages that never started because the run stopped before their inputs were ready."""
    total_duration_ms: float = 0.0
    """Makespan of the run, on Trio's clock."""
    metrics: Mapping[str, Any] = attrs.field(default=None, converter=_frozen_mapping)
    """The context's metrics when the run ended."""
    context: ContextSnapshot | None = None
    """A frozen snapshot of the context when the run ended."""
    timeline: Mapping[str, StageTiming] = attrs.field(default=None, converter=_frozen_mapping)
    """Stage id -> timing, for every stage that started."""
    error: str | None = None
    """The failure that ended the run, naming the stage; None on success."""
    cancelled: bool = False
    """True when the run was cancelled from outside (``RunHandle.cancel()`` or the
    nursery it ran in) before it finished; ``cancelled_stages`` names the stages that
    were running then."""
    usage: Usage = attrs.field(factory=Usage)
    """What the run's LLM calls used and cost (its stages' together)."""
    usage_by_stage: Mapping[str, Usage] = attrs.field(factory=dict, converter=_frozen_mapping)
    """Stage id -> what its LLM calls used, for each stage that made any."""
    usage_saved: Usage = attrs.field(factory=Usage)
    """What the LLM calls of the stages the cache served had cost when they ran: what
    this run (a rerun, a resumed run) did not spend again."""
    waiting_stages: tuple[str, ...] = ()
    """The gates a suspended run waits for (``suspend_on_wait``, ``RunHandle.suspend``):
    the run ended with nothing else to do, not failed (``error`` is None), and
    ``PipelineExecutor.resume`` goes on from there with their answers."""

    @property
    def waiting(self) -> bool:
        """True when the run was suspended waiting for input (see ``waiting_stages``)."""
        return bool(self.waiting_stages)

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The original Twinklr's name for ``metrics``."""
        return self.metrics

    def get_output(self, stage_id: str, default: Any = None) -> Any:
        """The output of ``stage_id``, or ``default`` when it produced none."""
        return self.outputs.get(stage_id, default)

    def output(self, stage: _Defines[_T]) -> _T:
        """The output of ``stage`` in this run, typed as the stage's output (``T`` of a
        ``StageDefinition[T]``). A soft-failed stage's output is its best candidate.

        Raises [NoOutputError][twinklr.core.pipeline.NoOutputError] naming the stage
        when it has none: it never started, failed, was cancelled or was skipped (or is
        not in this pipeline).
        """
        stage_id = stage.id
        result = self.stage_results.get(stage_id)
        if result is None:
            if stage_id in self.waiting_stages:
                reason = "it waits for input (the run was suspended)"
            elif stage_id in self.not_started_stages:
                reason = "it never started"
            else:
                reason = "the pipeline has no such stage"
            raise NoOutputError(self.pipeline_name, stage_id, reason)
        status = result.status
        if status is StageStatus.FAILED:
            reason = f"it failed ({result.error})"
        elif status is StageStatus.SKIPPED:
            why = result.metadata.get("reason", "condition was false")
            if why == "condition was false":
                why = "its condition was false"
            routing = result.metadata.get("routing")
            reason = f"it was skipped ({why}{': ' + routing if routing else ''})"
        elif status is StageStatus.CANCELLED:
            reason = "it was cancelled"
        else:
            return cast("_T", result.output)
        raise NoOutputError(self.pipeline_name, stage_id, reason)

    def get_result(self, stage_id: str) -> StageResult[Any] | None:
        """The result of ``stage_id``, or None when it never ended (not started)."""
        return self.stage_results.get(stage_id)
