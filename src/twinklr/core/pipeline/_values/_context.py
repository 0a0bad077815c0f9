"""The shared, mutable context that stages read and write, and its frozen snapshot."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import attrs

from ._usage import Budget, Prices, Usage, cost_of, record_saved, record_usage

#: The context of the pipeline run in this task: a limiter records its waits there.
current_context: ContextVar[PipelineContext | None] = ContextVar(
    "twinklr_current_context", default=None
)

#: Whether the run this task (or worker thread: Trio copies context variables into it)
#: belongs to is being cancelled; it answers for that run even after the run ended.
run_cancelling: ContextVar[Callable[[], bool] | None] = ContextVar(
    "twinklr_run_cancelling", default=None
)


class Limiter(Protocol):
    """What stages and providers use of a rate limiter: ``RateLimiter`` is the one
    shipped (any object with these two methods will do)."""

    def acquire(self, tokens: float = 1) -> AbstractAsyncContextManager[float]:
        """Wait for room for a request of ``tokens`` tokens, then enter; yields the wait."""
        ...

    async def wait_for_capacity(self, tokens: float = 1) -> float:
        """Wait for room for a request of ``tokens`` tokens and admit it; return the wait."""
        ...


_NO_DEFAULT = (
    "no rate limiter is configured: give the context one, "
    "PipelineContext(rate_limiter=RateLimiter(requests_per_minute=...))"
)


@attrs.frozen
class NoRateLimiter:
    """What ``context.rate_limiter`` holds when no limiter is configured.

    It is false (``if context.rate_limiter:`` tells whether one is configured), and
    using it raises a ``LookupError`` that says what to configure, instead of an
    ``AttributeError`` on None.
    """

    advice: str = ""
    """Said after what to configure (the command line names its ``--context``)."""

    @property
    def message(self) -> str:
        """What the ``LookupError`` says."""
        return f"{_NO_DEFAULT}{self.advice}"

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "<no rate limiter configured>"

    def acquire(self, tokens: float = 1) -> AbstractAsyncContextManager[float]:
        """Raises ``LookupError``: there is no limiter to wait for."""
        raise LookupError(self.message)

    async def wait_for_capacity(self, tokens: float = 1) -> float:
        """Raises ``LookupError``: there is no limiter to wait for."""
        raise LookupError(self.message)

    def statistics(self) -> Any:
        """Raises ``LookupError``: there is no limiter to report on."""
        raise LookupError(self.message)


def _limiter_or_none(value: Limiter | None) -> Limiter:
    return NoRateLimiter() if value is None else value


#: A write a stage made through the context: ``(operation, name, value)``.
Write = tuple[str, str, Any]

#: The writes of the stage (or fan-out item) running in this task, when its output
#: will be cached: they are stored with the output and replayed on a cache hit.
_recording: ContextVar[list[Write] | None] = ContextVar("twinklr_recording", default=None)


def record_writes() -> list[Write]:
    """Start recording this task's context writes; returns the list they go into."""
    writes: list[Write] = []
    _recording.set(writes)
    return writes


def stop_recording() -> None:
    """Stop recording this task's context writes."""
    _recording.set(None)


@contextmanager
def work_metrics() -> Iterator[None]:
    """Writes made inside are not recorded for replay: the metrics the library writes
    about work done (requests, waits, tokens), which a cache hit does not do again."""
    token = _recording.set(None)
    try:
        yield
    finally:
        _recording.reset(token)


@attrs.frozen(kw_only=True)
class ContextSnapshot:
    """A frozen copy of a context's state and metrics at one moment."""

    state: Mapping[str, Any]
    """State keys and values (a shallow copy)."""
    metrics: Mapping[str, Any]
    """Metric names and values (a shallow copy)."""


@attrs.define
class PipelineContext:
    """Services and shared state for one run (or several, if you pass it again).

    Stages get services through it (dependency injection) and talk to each other through
    ``state``; ``metrics`` collects numbers for the run's result. All stages run on one
    Trio thread, so reads and writes need no locking.

    Write through ``set_state``, ``add_metric`` and ``increment_metric``: those writes are
    stored with a cached stage's output and replayed when the cache serves it, so stages
    downstream see the same state as in the first run.
    """

    provider: Any = None
    """The LLM (or other) provider stages call."""
    config: Any = None
    """Application configuration."""
    job_config: Any = None
    """Configuration of this job."""
    state: dict[str, Any] = attrs.field(factory=dict)
    """Mutable state shared between stages."""
    metrics: dict[str, Any] = attrs.field(factory=dict)
    """Metrics recorded by stages and by the executor."""
    rate_limiter: Limiter = attrs.field(
        default=None, converter=_limiter_or_none, repr=lambda value: repr(value or None)
    )
    """The process's rate limiter for LLM calls (a ``RateLimiter``), shared by every
    stage and run. Unset (or None), it is a false `NoRateLimiter` whose use raises a
    ``LookupError`` that says what to configure."""
    rate_limiters: dict[str, Limiter] = attrs.field(factory=dict)
    """More limiters by name (one per model or provider), besides the default one."""
    prices: Prices | None = None
    """Prices by model, US dollars per million input and output tokens (see
    `record_usage`; providers take their own)."""
    budget: Budget | None = None
    """What a run may spend on LLM calls (``llm.Budget``): the call that would go over
    it is refused before it is sent (`BudgetExceededError`)."""

    # The original Twinklr context's fields: carried for stages, not used by the engine.
    app_config: Any = None
    """The original's name for ``config``: either one sets both."""
    session: Any = None
    """The application session stages use (the original Twinklr's)."""
    output_dir: Path | None = None
    """Where stages write their artifacts."""
    checkpoint_dir: Path | None = None
    """Where stages keep checkpoints of their own."""
    cache: Any = None
    """A cache of the application's own for stages (the executor's is its ``cache``)."""
    llm_logger: Any = None
    """Where stages log their LLM calls."""
    cancel_token: Any = None
    """An event (anything with ``is_set()``) the application sets to ask for
    cancellation; `is_cancelled` reports it."""
    _cancel_checks: list[Callable[[], bool]] = attrs.field(
        factory=list, init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        if self.app_config is None:
            self.app_config = self.config
        elif self.config is None:
            self.config = self.app_config

    def is_cancelled(self) -> bool:
        """Whether a run of this context is being cancelled (fail-fast, a cancelled
        handle or caller, a stage cancelled), or ``cancel_token`` is set.

        A plain read, safe from any thread: synchronous work run off the Trio thread
        (``SyncStage``) can poll it and stop early, since a worker thread cannot be
        interrupted.
        """
        token = self.cancel_token
        if token is not None and token.is_set():
            return True
        if current_context.get() is self:  # asked from inside a run of this context
            check = run_cancelling.get()
            if check is not None:
                return check()  # its own run's: true still after an abandoned thread's run
        return any(check() for check in self._cancel_checks)

    def record_usage(
        self,
        *,
        model: str | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_input_tokens: int = 0,
        cost_usd: float | None = None,
        requests: int = 1,
    ) -> Usage:
        """Count an LLM call made with a client of the stage's own for the stage that
        runs it (the run's ``usage_by_stage``), as the library's providers do. Its cost
        is ``cost_usd``, else from ``prices`` (None for a model not in them)."""
        counts = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_input_tokens": cached_input_tokens,
            "requests": requests,
        }
        for name, count in counts.items():
            if type(count) is not int or count < 0:
                msg = f"record_usage: {name} must be a whole number >= 0, got {count!r}"
                raise ValueError(msg)
        if cost_usd is None:
            cost_usd = cost_of(model, input_tokens, output_tokens, cached_input_tokens, self.prices)
        usage = Usage(cost_usd=cost_usd, **counts)
        record_usage(usage, model)
        return usage

    def watch_cancellation(self, check: Callable[[], bool]) -> Callable[[], None]:
        """Have `is_cancelled` also ask ``check`` (the engine registers each run that
        uses this context); returns the function that removes it again."""
        self._cancel_checks.append(check)
        return functools.partial(self._cancel_checks.remove, check)

    def limiter(self, name: str | None = None) -> Limiter:
        """The limiter called ``name`` (the default ``rate_limiter`` for None).

        Raises ``LookupError``, saying which limiters there are, when this context has
        no such limiter: ``async with context.limiter().acquire(tokens=n)`` never ends
        in an ``AttributeError`` on None.
        """
        found = self.rate_limiter if name is None else self.rate_limiters.get(name)
        if not found:
            names = ", ".join(repr(known) for known in self.rate_limiters) or "none"
            if name is None:
                unset = self.rate_limiter
                said = unset.message if isinstance(unset, NoRateLimiter) else _NO_DEFAULT
                msg = f"{said} (named limiters: {names})"
            else:
                msg = (
                    f"no rate limiter named {name!r}: this context's named limiters are "
                    f"{names} (PipelineContext(rate_limiters={{{name!r}: RateLimiter(...)}}))"
                )
            raise LookupError(msg)
        return found

    def get_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self.state.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for downstream stages."""
        self.state[key] = value
        writes = _recording.get()
        if writes is not None:
            writes.append(("set_state", key, value))

    def add_metric(self, name: str, value: Any) -> None:
        """Record ``value`` as metric ``name`` (replacing any earlier value)."""
        self.metrics[name] = value
        writes = _recording.get()
        if writes is not None:
            writes.append(("add_metric", name, value))

    def increment_metric(self, name: str, amount: float = 1) -> None:
        """Add ``amount`` to metric ``name`` (starting from 0)."""
        self.metrics[name] = self.metrics.get(name, 0) + amount
        writes = _recording.get()
        if writes is not None:
            writes.append(("increment_metric", name, amount))

    def replay(self, writes: list[Write]) -> None:
        """Apply writes recorded from a stage (a cache hit stands in for the stage)."""
        for operation, name, value in writes:
            if operation == "set_state":
                self.set_state(name, value)
            elif operation == "add_metric":
                self.add_metric(name, value)
            elif operation == "increment_metric":
                self.increment_metric(name, value)
            elif operation == "usage":  # what the stage's LLM calls cost: saved this time
                record_saved(value)

    def get_metric(self, name: str, default: Any = None) -> Any:
        """The value of metric ``name``, or ``default``."""
        return self.metrics.get(name, default)

    def snapshot(self) -> ContextSnapshot:
        """A frozen copy of state and metrics as they are now."""
        return ContextSnapshot(
            state=MappingProxyType(dict(self.state)),
            metrics=MappingProxyType(dict(self.metrics)),
        )
