"""Stub stages shared by the tests: deterministic, timed on Trio's clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
import trio.testing

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageResult,
)


@attrs.define
class Stub:
    """A stage that records its calls, sleeps ``delay`` seconds, then answers.

    It fails its first ``fail_times`` calls (raising ``raises`` if set, else returning
    ``StageResult.failure(error)``), then returns ``output(input)`` (or ``output``).
    """

    name: str = "stub"
    output: Any = None
    delay: float = 0.0
    fail_times: int = 0
    error: str = "boom"
    raises: type[Exception] | None = None
    calls: list[tuple[float, Any]] = attrs.field(factory=list)
    finished: list[float] = attrs.field(factory=list)
    cancelled: list[float] = attrs.field(factory=list)

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        self.calls.append((trio.current_time(), input))
        attempt = len(self.calls)
        try:
            if self.delay:
                await trio.sleep(self.delay)
        except trio.Cancelled:
            self.cancelled.append(trio.current_time())
            raise
        self.finished.append(trio.current_time())
        if attempt <= self.fail_times:
            if self.raises is not None:
                raise self.raises(self.error)
            return StageResult.failure(self.error, stage_name=self.name)
        value = self.output(input) if callable(self.output) else self.output
        return StageResult.success(value, stage_name=self.name)


def stub(output: Any = None, delay: float = 0.0, **kwargs: Any) -> Stub:
    """A :class:`Stub` with the given output and delay."""
    return Stub(output=output, delay=delay, **kwargs)


def const(value: Any) -> Callable[[Any], Any]:
    """An output function that ignores its input."""
    return lambda _input: value


def run_virtual(
    pipeline: PipelineDefinition,
    initial_input: Any = None,
    context: PipelineContext | None = None,
) -> PipelineResult:
    """Run ``pipeline`` synchronously under an autojumping virtual clock (for hypothesis)."""
    return trio.run(
        PipelineExecutor().execute,
        pipeline,
        initial_input,
        context,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )
