"""A kit for testing your own pipelines and stages under Trio's virtual clock.

- Stub stages that record every call (input, virtual start and end time, outcome):
  `fixed` (a fixed output, optionally after a delay), `flaky` (fails N
  times, then succeeds), `raising` (always raises), `recording` (computes
  its output from its input).
- `run_virtual` runs a pipeline from synchronous code under an autojumping
  virtual clock; ``await`` `record_run` does the same inside a Trio test (use
  pytest-trio's ``autojump_clock`` fixture for virtual time). Both return a
  [RunRecord][twinklr.core.pipeline.testing.RunRecord]: the result, every event, and
  the assertions structured-concurrency tests want (ran before/after, ran concurrently
  with, never started, was cancelled, no task left running).
- A pytest plugin (registered on install) with fixtures wrapping these: see
  ``twinklr_run_virtual`` and ``twinklr_record``.
- The store contracts as checks for a store of your own: ``await``
  `cache_store_conformance` and `run_store_conformance` with a factory of fresh
  stores; the first broken promise is an `AssertionError` that names it.

Times in a record are ms since the run started (as in ``result.timeline``); stub calls
are stamped with Trio's clock, in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio
import trio.testing

from ._conformance._cache_cases import cache_store_conformance
from ._conformance._run_cases import run_store_conformance
from ._engine._executor import PipelineExecutor
from ._observe._events import TERMINAL_KINDS, EventKind
from ._values._results import StageResult
from ._values._status import StageStatus

if TYPE_CHECKING:
    from ._observe._events import PipelineEvent
    from ._values._context import PipelineContext
    from ._values._results import PipelineResult
    from ._values._timing import StageTiming
    from .definition import PipelineDefinition

__all__ = [
    "RunRecord",
    "StageCall",
    "StubStage",
    "cache_store_conformance",
    "fixed",
    "flaky",
    "raising",
    "record_run",
    "recording",
    "run_store_conformance",
    "run_virtual",
]


@attrs.frozen
class StageCall:
    """One call of a [StubStage][twinklr.core.pipeline.testing.StubStage], stamped with
    Trio's clock (seconds)."""

    input: Any
    """What the stage was given."""
    started_at: float
    """When the call began."""
    ended_at: float | None
    """When it ended (None while it runs)."""
    outcome: str
    """``running``, ``succeeded``, ``failed`` (a failure result), ``raised`` or
    ``cancelled``."""


@attrs.define(eq=False)
class StubStage:
    """A stage for tests: waits ``delay`` seconds, then fails its first ``fail_times``
    calls and succeeds after that, recording every call in `calls`.

    ``output`` is the value it returns, or a function of its input. A failing call
    raises ``error`` when it is an exception (instance or class), else returns a failure
    result with ``error`` as its message.
    """

    __twinklr_loop__ = "trio"  # Trio code, on any host loop

    name: str = "stub"
    output: Any = None
    delay: float = 0.0
    fail_times: float = 0
    error: str | BaseException | type[BaseException] = "stub failure"
    calls: list[StageCall] = attrs.field(factory=list)
    """Every call so far, in order."""

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        """Record the call, sleep, then answer as configured."""
        number = len(self.calls)
        self.calls.append(StageCall(input, trio.current_time(), None, "running"))
        try:
            if self.delay:
                await trio.sleep(self.delay)
        except trio.Cancelled:
            self._ended(number, "cancelled")
            raise
        if number < self.fail_times:
            if isinstance(self.error, str):
                self._ended(number, "failed")
                return StageResult.failure(self.error, stage_name=self.name)
            self._ended(number, "raised")
            raise self.error
        value = self.output(input) if callable(self.output) else self.output
        self._ended(number, "succeeded")
        return StageResult.success(value, stage_name=self.name)

    def _ended(self, number: int, outcome: str) -> None:
        self.calls[number] = attrs.evolve(
            self.calls[number], ended_at=trio.current_time(), outcome=outcome
        )

    @property
    def inputs(self) -> list[Any]:
        """The input of each call, in order."""
        return [call.input for call in self.calls]

    @property
    def call_count(self) -> int:
        """How many times the stage was called (attempts and fan-out items included)."""
        return len(self.calls)


def fixed(output: Any, *, delay: float = 0.0, name: str = "fixed") -> StubStage:
    """A stage that returns ``output`` after ``delay`` seconds."""
    return StubStage(name=name, output=output, delay=delay)


def recording(
    compute: Callable[[Any], Any], *, delay: float = 0.0, name: str = "recording"
) -> StubStage:
    """A stage that returns ``compute(input)`` after ``delay`` seconds."""
    return StubStage(name=name, output=compute, delay=delay)


def flaky(
    times: int,
    output: Any = None,
    *,
    error: str | BaseException | type[BaseException] = "stub failure",
    delay: float = 0.0,
    name: str = "flaky",
) -> StubStage:
    """A stage whose first ``times`` calls fail (with ``error``), then returns ``output``."""
    if times < 0:
        msg = f"flaky stage '{name}': times must be >= 0, got {times}"
        raise ValueError(msg)
    return StubStage(name=name, output=output, delay=delay, fail_times=times, error=error)


def raising(
    error: BaseException | type[BaseException], *, delay: float = 0.0, name: str = "raising"
) -> StubStage:
    """A stage that always raises ``error`` after ``delay`` seconds."""
    return StubStage(name=name, delay=delay, fail_times=float("inf"), error=error)


@attrs.frozen
class RunRecord:
    """A finished run as a test sees it: its result, its events, and assertions."""

    result: PipelineResult
    """The run's result."""
    events: tuple[PipelineEvent, ...]
    """Every event of the run, in order (none dropped)."""
    leftover_tasks: tuple[str, ...] = ()
    """Names of Trio tasks that appeared during the run and were still alive after it
    (always empty when the executor keeps its promises)."""

    @property
    def stages(self) -> dict[str, StageTiming]:
        """Stage id -> timing, for every stage that started."""
        return dict(self.result.timeline)

    def timing(self, stage: str) -> StageTiming:
        """The timing of ``stage``; AssertionError when it never started."""
        if stage not in self.result.timeline:
            self._unknown(stage)
            msg = f"stage '{stage}' never started ({self._status_text(stage)})"
            raise AssertionError(msg)
        return self.result.timeline[stage]

    def assert_ran_before(self, first: str, then: str) -> None:
        """``first`` ended no later than ``then`` started."""
        a, b = self.timing(first), self.timing(then)
        if a.finished_ms > b.started_ms:
            msg = (
                f"expected '{first}' to end before '{then}' started, but '{first}' ended at "
                f"{a.finished_ms} ms and '{then}' started at {b.started_ms} ms"
            )
            raise AssertionError(msg)

    def assert_ran_after(self, stage: str, other: str) -> None:
        """``stage`` started no earlier than ``other`` ended."""
        self.assert_ran_before(other, stage)

    def assert_ran_concurrently(self, a: str, b: str) -> None:
        """``a`` and ``b`` were both running at some instant (their runs overlap)."""
        ta, tb = self.timing(a), self.timing(b)
        if not (ta.started_ms < tb.finished_ms and tb.started_ms < ta.finished_ms):
            msg = (
                f"expected '{a}' and '{b}' to run concurrently, but '{a}' ran "
                f"{ta.started_ms}-{ta.finished_ms} ms and '{b}' ran "
                f"{tb.started_ms}-{tb.finished_ms} ms"
            )
            raise AssertionError(msg)

    def assert_never_started(self, stage: str) -> None:
        """``stage`` never started (the run stopped before its inputs were ready)."""
        self._unknown(stage)
        if stage in self.result.timeline:
            timing = self.result.timeline[stage]
            msg = (
                f"expected '{stage}' never to start, but it started at {timing.started_ms} ms "
                f"and ended {timing.status.value}"
            )
            raise AssertionError(msg)

    def assert_cancelled(self, stage: str) -> None:
        """``stage`` was running when the run was cancelled (fail-fast or from outside)."""
        if stage not in self.result.cancelled_stages:
            msg = f"expected '{stage}' to be cancelled, but it {self._status_text(stage)}"
            raise AssertionError(msg)

    def assert_succeeded(self, *stages: str) -> None:
        """Each of ``stages`` (the whole run when none is given) succeeded."""
        if not stages:
            if not self.result.success:
                msg = f"expected the run to succeed, but {self.result.error}"
                raise AssertionError(msg)
            return
        for stage in stages:
            result = self.result.get_result(stage)
            if result is None or result.status is not StageStatus.SUCCEEDED:
                msg = f"expected '{stage}' to succeed, but it {self._status_text(stage)}"
                raise AssertionError(msg)

    def assert_no_task_left_running(self) -> None:
        """Every stage that started has ended, and no task the run started outlived it."""
        started = [e.stage for e in self.events if e.kind is EventKind.STAGE_STARTED]
        ended = {e.stage for e in self.events if e.kind in TERMINAL_KINDS}
        unended = [stage for stage in started if stage not in ended]
        if unended or self.leftover_tasks:
            msg = (
                f"tasks left running after run {self.result.run_id}: "
                f"stages {unended}, tasks {list(self.leftover_tasks)}"
            )
            raise AssertionError(msg)

    def _unknown(self, stage: str) -> None:
        known = set(self.result.stage_results) | set(self.result.not_started_stages)
        if stage not in known:
            msg = f"pipeline '{self.result.pipeline_name}' has no stage '{stage}'"
            raise AssertionError(msg)

    def _status_text(self, stage: str) -> str:
        self._unknown(stage)
        result = self.result.get_result(stage)
        if result is None:
            return "never started"
        if result.error:
            return f"ended {result.status.value}: {result.error}"
        return f"ended {result.status.value}"


async def record_run(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext | None = None,
    *,
    executor: PipelineExecutor | None = None,
) -> RunRecord:
    """Run ``pipeline`` inside the current Trio run and return its
    [RunRecord][twinklr.core.pipeline.testing.RunRecord] (with pytest-trio, request
    ``autojump_clock`` for virtual time)."""
    executor = executor if executor is not None else PipelineExecutor()
    before = _live_tasks()
    async with trio.open_nursery() as nursery:
        handle = await executor.start(nursery, pipeline, initial_input, context)
        result = await handle.wait()
    events = tuple([event async for event in handle.events()])
    leftover = tuple(sorted(task.name for task in _live_tasks() - before))
    return RunRecord(result, events, leftover)


def run_virtual(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext | None = None,
    *,
    executor: PipelineExecutor | None = None,
) -> RunRecord:
    """Run ``pipeline`` from synchronous code in a Trio run of its own whose clock jumps
    ahead whenever every task waits (sleeps take no real time); return its record."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    record: RunRecord = trio.run(
        lambda: record_run(pipeline, initial_input, context, executor=executor), clock=clock
    )
    return record


def _live_tasks() -> set[trio.lowlevel.Task]:
    """Every task of the current Trio run (system tasks included)."""
    tasks = set()
    root = trio.lowlevel.current_root_task()
    pending = [root] if root is not None else []
    while pending:
        task = pending.pop()
        tasks.add(task)
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return tasks
