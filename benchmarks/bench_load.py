"""Load: 1,000 concurrent runs of a 20-stage pipeline in one Trio process, sharing one
rate limiter and one cache store, against the same work in bare Trio.

The pipeline is the reliability suite's (``tests/fixtures/load.py``): seven layers,
stages sleeping 10-40 ms, two stages per run calling a fake LLM through the shared
limiter. Both contenders run on Trio's virtual clock (the sleeps cost no wall time,
only their scheduling), so the figures are the orchestration's CPU cost:

- bare Trio: per run, one task per stage, started up front and parked on its inputs'
  ``trio.Event``s, the same sleeps and limiter calls, outputs in a list;
- the executor: ``executor.start`` per run in one nursery (a ``RunHandle`` each, its
  event history kept), with a ``MemoryCacheStore`` shared by all runs, or without.

Reported: wall time, microseconds per stage, the ratio to bare Trio; peak memory per
run; memory still held after the batch once the results are dropped (against the
process before it), and how much more after three more batches (a leak grows it).

    python benchmarks/bench_load.py [--runs 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures.load import (
    LLM_STAGES,
    STAGES,
    compute,
    inputs_of,
    load_pipeline,
    run_batch,
)
from twinklr.core.pipeline import MemoryCacheStore, RateLimiter

Batch = Callable[[int], Awaitable[Any]]


def new_limiter() -> RateLimiter:
    """One limiter per batch, shared by its runs (each batch has a clock of its own)."""
    return RateLimiter(requests_per_minute=1_000_000)


def bare_trio() -> Batch:
    """The same runs with nothing but Trio: a task per stage, parked on events."""
    pipeline = load_pipeline()
    seconds = [sdef.stage.seconds for sdef in pipeline.stages]
    deps = [inputs_of(i) for i in range(STAGES)]

    async def one_run(value: int, nursery: trio.Nursery, limiter: RateLimiter) -> None:
        done = [trio.Event() for _ in range(STAGES)]
        outputs: list[Any] = [None] * STAGES

        async def stage(i: int) -> None:
            for d in deps[i]:
                await done[d].wait()
            given: Any = value
            if len(deps[i]) == 1:
                given = outputs[deps[i][0]]
            elif deps[i]:
                given = {f"s{d}": outputs[d] for d in deps[i]}
            if i in LLM_STAGES:
                async with limiter.acquire(tokens=100):
                    await trio.sleep(seconds[i])
            else:
                await trio.sleep(seconds[i])
            outputs[i] = compute(i, given)
            done[i].set()

        for i in range(STAGES):
            nursery.start_soon(stage, i)

    async def batch(runs: int) -> None:
        limiter = new_limiter()
        async with trio.open_nursery() as nursery:
            for value in range(runs):
                await one_run(value, nursery, limiter)

    return batch


def executor(*, cached: bool) -> Batch:
    pipeline = load_pipeline()
    store = MemoryCacheStore()

    async def batch(runs: int) -> None:
        results = await run_batch(
            runs, pipeline=pipeline, store=store if cached else None, limiter=new_limiter()
        )
        assert all(result.success for result in results)  # noqa: S101
        await store.clear()  # every batch starts cold: no run is served from the cache

    return batch


def timed(batch: Batch, runs: int) -> float:
    gc.collect()
    start = time.perf_counter()
    trio.run(batch, runs, clock=trio.testing.MockClock(autojump_threshold=0))
    return time.perf_counter() - start


def memory(batch: Batch, runs: int) -> tuple[float, float, float]:
    """Peak bytes per run during a batch; bytes held after it (against before the first
    batch); bytes more after three further batches. Traced from before the first batch,
    so what a batch leaves behind is all counted, and what a later one reuses is not
    counted twice."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        trio.run(batch, runs, clock=clock)
        gc.collect()
        after_one, peak = tracemalloc.get_traced_memory()
        for _ in range(3):
            trio.run(batch, runs, clock=clock)
            gc.collect()
        after_four = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return (peak - before) / runs, after_one - before, after_four - after_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    contenders = {
        "bare Trio": bare_trio(),
        "executor": executor(cached=False),
        "executor + cache": executor(cached=True),
    }
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(args.repeat):
        for name, batch in contenders.items():
            best[name] = min(best[name], timed(batch, args.runs))
    stages = args.runs * STAGES
    floor = best["bare Trio"]
    print(f"{args.runs:,} concurrent runs of a {STAGES}-stage pipeline (virtual clock)")
    print(f"{'':<18}{'wall s':>8}{'us/stage':>10}{'x bare':>8}{'peak B/run':>12}"
          f"{'held B':>9}{'+3 batches B':>14}")  # fmt: skip
    for name, batch in contenders.items():
        peak, held, growth = memory(batch, args.runs)
        print(
            f"{name:<18}{best[name]:>8.2f}{best[name] / stages * 1e6:>10.1f}"
            f"{best[name] / floor:>8.2f}{peak:>12.0f}{held:>9.0f}{growth:>14.0f}"
        )


if __name__ == "__main__":
    main()
