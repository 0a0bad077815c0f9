"""Executor overhead against two hand-written bare-Trio baselines, in one process.

Shapes: a 1,000-stage chain; 1 -> 1,000 -> 1 wide; a 10,000-item fan-out; a 10,000-stage
random DAG (each stage depends on up to 3 earlier ones, fixed seed).

Baselines run the same trivial async work per stage:
  (a) parked: one task per stage, spawned up front, parked on its inputs' events;
  (b) floor:  a stage's task is started by whichever input finishes last (never parks).

Reported per shape: microseconds per stage (best of --repeat runs), the executor's ratio
to each baseline, and peak traced memory per stage in bytes (tracemalloc, a separate
pass). "exec" reruns one definition (its plan is reused, as in a service); "cold" builds
a new definition every run (validation and planning included).

    python benchmarks/bench_executor.py [--repeat 5] [--quick] [--shape random]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import random
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import structlog
import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
)

Deps = list[list[int]]
Runner = Callable[[], Awaitable[float]]
ROUNDS_CAP = 11  # --repeat at most this
SHAPES = ("chain", "wide", "fan-out", "random")


async def work(value: Any) -> Any:
    """The per-stage work every contender does: one trivial async call."""
    return value


class Trivial:
    """The executor's stage doing the same work."""

    name = "trivial"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        return StageResult.success(await work(input))


@attrs.frozen
class Shape:
    """A benchmark DAG: dependencies per stage, or a fan-out of ``items``."""

    name: str
    deps: Deps
    items: int = 0

    @property
    def stages(self) -> int:
        return self.items or len(self.deps)


def chain(n: int) -> Shape:
    return Shape(f"chain {n:,}", [[]] + [[i - 1] for i in range(1, n)])


def wide(n: int) -> Shape:
    return Shape(f"1 -> {n:,} -> 1", [[]] + [[0] for _ in range(n)] + [list(range(1, n + 1))])


def random_dag(n: int, seed: int = 7) -> Shape:
    rng = random.Random(seed)
    deps: Deps = [[]]
    for i in range(1, n):
        deps.append(sorted(rng.sample(range(i), min(i, rng.randint(0, 3)))))
    return Shape(f"random DAG {n:,}", deps)


def fan_out(n: int) -> Shape:
    return Shape(f"fan-out {n:,} items", [[], [0]], items=n)


# -- contenders -------------------------------------------------------------------------


async def parked(shape: Shape) -> None:
    """(a) One task per stage, spawned up front, parked on its inputs' events."""
    if shape.items:
        source = trio.Event()

        async def item(k: int) -> None:
            await source.wait()
            await work(k)

        async with trio.open_nursery() as nursery:
            for k in range(shape.items):
                nursery.start_soon(item, k)
            await work(None)
            source.set()
        return
    events = [trio.Event() for _ in shape.deps]

    async def stage(i: int) -> None:
        for d in shape.deps[i]:
            await events[d].wait()
        await work(i)
        events[i].set()

    async with trio.open_nursery() as nursery:
        for i in range(len(shape.deps)):
            nursery.start_soon(stage, i)


async def floor(shape: Shape) -> None:
    """(b) A stage's task is started by the input that finishes last: no task parks."""
    if shape.items:
        await work(None)
        async with trio.open_nursery() as nursery:
            for k in range(shape.items):
                nursery.start_soon(work, k)
        return
    remaining = [len(d) for d in shape.deps]
    dependents: Deps = [[] for _ in shape.deps]
    for i, deps in enumerate(shape.deps):
        for d in deps:
            dependents[d].append(i)

    async with trio.open_nursery() as nursery:

        async def stage(i: int) -> None:
            await work(i)
            for j in dependents[i]:
                remaining[j] -= 1
                if remaining[j] == 0:
                    nursery.start_soon(stage, j)

        for i, deps in enumerate(shape.deps):
            if not deps:
                nursery.start_soon(stage, i)


def definition(shape: Shape, stage: Any = None) -> PipelineDefinition:
    """``shape`` as a definition whose stages are ``stage`` (default: :class:`Trivial`)."""
    if shape.items:
        items = list(range(shape.items))

        class Source:
            name = "source"

            async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
                return StageResult.success(await work(items))

        return PipelineDefinition(
            shape.name,
            [
                StageDefinition("source", Source()),
                StageDefinition(
                    "fan", Trivial(), pattern=ExecutionPattern.FAN_OUT, inputs=["source"]
                ),
            ],
        )
    stage = Trivial() if stage is None else stage
    return PipelineDefinition(
        shape.name,
        [
            StageDefinition(f"s{i}", stage, inputs=[f"s{d}" for d in deps])
            for i, deps in enumerate(shape.deps)
        ],
    )


def executor_runner(
    shape: Shape, *, cold: bool = False, stage: Any = None
) -> Callable[[], Awaitable[float]]:
    """The executor on ``shape`` (its stages ``stage``, see :func:`definition`): warm
    reruns one definition, as a service would (the plan is reused); cold runs a
    definition never run before (built outside the timing), so validation and planning
    are paid every run."""
    pipeline = definition(shape, stage)
    executor = PipelineExecutor()

    async def run() -> float:
        target = definition(shape, stage) if cold else pipeline  # built before the timer
        start = time.perf_counter()
        result = await executor.execute(target)
        elapsed = time.perf_counter() - start
        assert result.success  # noqa: S101
        return elapsed

    return run


# -- measurement ------------------------------------------------------------------------


def baseline(contender: Callable[[Shape], Awaitable[None]], shape: Shape) -> Runner:
    """A baseline timed inside its Trio loop, as the executor is."""

    async def run() -> float:
        start = time.perf_counter()
        await contender(shape)
        return time.perf_counter() - start

    return run


def timed(run: Runner) -> float:
    gc.collect()
    return trio.run(run)


def peak_memory(run: Runner) -> int:
    gc.collect()
    tracemalloc.start()
    trio.run(run)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def measure(shape: Shape, repeat: int) -> dict[str, Any]:
    contenders: dict[str, Runner] = {
        "floor": baseline(floor, shape),
        "parked": baseline(parked, shape),
        "executor": executor_runner(shape),
        "cold": executor_runner(shape, cold=True),
    }
    # Interleaved rounds, best of each: machine noise hits every contender alike.
    times = dict.fromkeys(contenders, float("inf"))
    rounds = repeat * max(1, 2000 // shape.stages)  # small shapes get more rounds
    for _ in range(rounds):
        for name, run in contenders.items():
            times[name] = min(times[name], timed(run))
    memory = {name: peak_memory(run) for name, run in contenders.items()}
    n = shape.stages
    return {
        "shape": shape.name,
        "us": {name: t / n * 1e6 for name, t in times.items()},
        "vs_floor": times["executor"] / times["floor"],
        "vs_parked": times["executor"] / times["parked"],
        "cold_vs_floor": times["cold"] / times["floor"],
        "bytes": {name: m / n for name, m in memory.items()},
    }


def event_overhead(shape: Shape, repeat: int) -> tuple[float, float, float]:
    """Microseconds per stage: no consumer; a consumer taking events in batches
    (``receive`` then ``receive_nowait`` while there are more); one ``async for``-ing
    them one by one (a task switch per event, which is the consumer's own cost)."""
    pipeline = definition(shape)
    executor = PipelineExecutor()

    async def quiet() -> float:
        start = time.perf_counter()
        await executor.execute(pipeline)
        return time.perf_counter() - start

    async def batches(receive: trio.MemoryReceiveChannel[Any]) -> None:
        with contextlib.suppress(trio.EndOfChannel):
            while True:
                await receive.receive()
                with contextlib.suppress(trio.WouldBlock):
                    while True:
                        receive.receive_nowait()

    async def one_by_one(receive: trio.MemoryReceiveChannel[Any]) -> None:
        async for _event in receive:
            pass

    def watched(consume: Callable[[trio.MemoryReceiveChannel[Any]], Awaitable[None]]) -> Runner:
        async def run() -> float:
            send, receive = trio.open_memory_channel[Any](math.inf)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(consume, receive)
                start = time.perf_counter()
                await executor.execute(pipeline, events=send)
                elapsed = time.perf_counter() - start
                await send.aclose()
            return elapsed

        return run

    runs = {"quiet": quiet, "batches": watched(batches), "one_by_one": watched(one_by_one)}
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run))
    us = {name: t / shape.stages * 1e6 for name, t in best.items()}
    return us["quiet"], us["batches"], us["one_by_one"]


class Slowly:
    """Produces ``n`` items, one every ``every_s`` (streaming: yields them as it goes)."""

    name = "slowly"

    def __init__(self, n: int, every_s: float) -> None:
        self.n, self.every_s = n, every_s

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        for item in range(self.n):
            await trio.sleep(self.every_s)
            yield item


class SlowlyAll(Slowly):
    """The same items, returned as one list at the end."""

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        for _ in range(self.n):
            await trio.sleep(self.every_s)
        return StageResult.success(list(range(self.n)))


class Work:
    """Works ``seconds`` on an item."""

    name = "work"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        await trio.sleep(self.seconds)
        return StageResult.success(input)


def pipelining_makespans(n: int = 1000) -> tuple[float, float]:
    """Virtual-time makespans (ms) of producer -> fan-out, streaming and not: the producer
    makes an item a millisecond, each item takes 10 ms, ten at a time."""

    def makespan(producer: Any) -> float:
        pipeline = PipelineDefinition(
            "pipelined",
            [
                StageDefinition("produce", producer),
                StageDefinition(
                    "work",
                    Work(0.010),
                    pattern=ExecutionPattern.FAN_OUT,
                    inputs=["produce"],
                    max_concurrent_fan_out=10,
                ),
            ],
        )
        result = trio.run(
            PipelineExecutor().execute, pipeline, clock=trio.testing.MockClock(autojump_threshold=0)
        )
        assert result.success  # noqa: S101
        return result.total_duration_ms

    return makespan(Slowly(n, 0.001)), makespan(SlowlyAll(n, 0.001))


def validation_time(n: int) -> float:
    pipeline = definition(random_dag(n))
    start = time.perf_counter()
    problems = pipeline.validate_pipeline()
    elapsed = time.perf_counter() - start
    assert not problems  # noqa: S101
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, choices=range(1, ROUNDS_CAP + 1))
    parser.add_argument("--quick", action="store_true", help="smaller shapes, one repeat")
    parser.add_argument(
        "--shape", choices=SHAPES, help="only this shape's row (to compare one change)"
    )
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    scale = 10 if args.quick else 1
    repeat = 1 if args.quick else args.repeat
    shapes = {
        "chain": chain(1000 // scale),
        "wide": wide(1000 // scale),
        "fan-out": fan_out(10_000 // scale),
        "random": random_dag(10_000 // scale),
    }
    print(
        f"{'shape':<22}{'floor us':>9}{'parked us':>10}{'exec us':>9}{'x floor':>9}"
        f"{'x parked':>9}{'cold us':>9}{'x floor':>9}{'floor B':>9}{'exec B':>9}{'cold B':>9}"
    )
    for name, shape in shapes.items():
        if args.shape not in {None, name}:
            continue
        row = measure(shape, repeat)
        us, mem = row["us"], row["bytes"]
        print(
            f"{row['shape']:<22}{us['floor']:>9.1f}{us['parked']:>10.1f}{us['executor']:>9.1f}"
            f"{row['vs_floor']:>9.2f}{row['vs_parked']:>9.2f}"
            f"{us['cold']:>9.1f}{row['cold_vs_floor']:>9.2f}"
            f"{mem['floor']:>9.0f}{mem['executor']:>9.0f}{mem['cold']:>9.0f}"
        )
    if args.shape is not None:
        return
    shape = random_dag(10_000 // scale)
    quiet_us, batch_us, single_us = event_overhead(shape, repeat)
    print(
        f"live events on the {shape.name}: {quiet_us:.1f} us/stage without a consumer; "
        f"{batch_us:.1f} (+{batch_us / quiet_us - 1:.0%}) with a consumer taking them in "
        f"batches; {single_us:.1f} (+{single_us / quiet_us - 1:.0%}) with one taking them "
        "one by one"
    )
    streamed, batched = pipelining_makespans(1000 // scale)
    print(
        f"producer -> fan-out, {1000 // scale:,} items (virtual time): {streamed:.0f} ms "
        f"streaming, {batched:.0f} ms without ({batched / streamed:.2f}x)"
    )
    n = 100_000 // scale
    print(f"validate a {n:,}-stage random DAG: {validation_time(n) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
