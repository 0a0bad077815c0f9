"""Stub stages shared by the tests: deterministic, timed on Trio's clock."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import strategies as st

from twinklr.core.pipeline import (
    CacheStore,
    CacheWarning,
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    SQLiteCacheStore,
    StageDefinition,
    StageResult,
)

# Installed, the plugin loads through its pytest11 entry point; the suite turns that off
# (see addopts) and loads it here, once coverage is measuring.
pytest_plugins = ("twinklr.core.pipeline.pytest_plugin",)


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
    """A `Stub` with the given output and delay."""
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


#: A random DAG: each stage's inputs (up to 3 earlier stages), durations in seconds, and
#: which stage (if any) fails.
RandomDag = tuple[list[list[int]], list[int], int | None]


@st.composite
def random_dags(draw: st.DrawFn, max_size: int = 25, max_duration: int = 5) -> RandomDag:
    """A random DAG of 1 to ``max_size`` stages (see :data:`RandomDag`)."""
    size = draw(st.integers(1, max_size))
    deps = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))) if i else []
        for i in range(size)
    ]
    durations = draw(st.lists(st.integers(0, max_duration), min_size=size, max_size=size))
    failing = draw(st.none() | st.integers(0, size - 1))
    return deps, durations, failing


def random_pipeline(dag: RandomDag) -> tuple[PipelineDefinition, list[Stub]]:
    """``dag`` as a pipeline of stubs named by index (the failing one fails once)."""
    deps, durations, failing = dag
    stubs = [
        Stub(name=str(i), output=i, delay=durations[i], fail_times=int(i == failing))
        for i in range(len(deps))
    ]
    pipeline = PipelineDefinition(
        "random",
        [
            StageDefinition(str(i), stubs[i], inputs=[str(d) for d in deps[i]])
            for i in range(len(deps))
        ],
    )
    return pipeline, stubs


class Unpicklable:
    """A value that refuses to travel to another process."""

    def __reduce__(self) -> Any:
        msg = "no pickling here"
        raise TypeError(msg)


def chain(*stubs: Stub, name: str = "p") -> PipelineDefinition:
    """The stubs one after the other, ``s0`` -> ``s1`` -> ..."""
    return PipelineDefinition(
        name,
        [
            StageDefinition(f"s{i}", s, inputs=[f"s{i - 1}"] if i else [])
            for i, s in enumerate(stubs)
        ],
    )


# -- the cache's tests: both stores, and a fan-out over a counted list --------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> CacheStore:
    if request.param == "memory":
        return MemoryCacheStore()
    return SQLiteCacheStore(tmp_path)


async def count_to(count: int) -> list[int]:
    return list(range(count))


def batch(square: Any, source: Any = count_to, name: str = "batch") -> PipelineDefinition:
    """A source stage ``items`` and a fan-out ``sq`` of ``square`` over its list."""
    return PipelineDefinition(
        name,
        [
            StageDefinition("items", source),
            StageDefinition("sq", square, pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
        ],
    )


@contextlib.contextmanager
def cache_warnings() -> Iterator[list[str]]:
    """The texts of the `CacheWarning`s said inside, in order (filled when it ends);
    any other warning is an error still."""
    said: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CacheWarning)
        yield said
    said.extend(str(w.message) for w in caught if issubclass(w.category, CacheWarning))
