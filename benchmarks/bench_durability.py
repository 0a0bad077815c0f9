"""What ``durability="sync"`` costs against ``"batched"`` (the default), per stage.

Each timed run fills an empty SQLite cache (a new temporary directory per run, so every
stage is a miss whose entry is written) with a no-op pipeline: a 200-stage chain (each
stage waits for its input's commit: the worst case for "sync") and a 1,000-stage random
DAG (up to 3 inputs per stage, fixed seed: concurrent stages share batches). Measured in
one process, interleaved, best of --repeat: the bare-Trio baseline (``floor`` of
bench_executor), the executor without a cache, and the filling run under each durability.
Reported: microseconds per stage, each against the bare-Trio baseline, and what "sync"
adds per stage over "batched".

Run it on another tree's package (an executor without ``durability`` runs as "batched")
to compare "batched" with that tree: ``PYTHONPATH=<tree>/src python
benchmarks/bench_durability.py``.

    python benchmarks/bench_durability.py [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

import structlog
import trio

from bench_executor import Shape, chain, floor, random_dag
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    SQLiteCacheStore,
    StageDefinition,
)

HAS_DURABILITY = "durability" in inspect.signature(PipelineExecutor).parameters


async def noop(_value: Any) -> int:
    return 1


def definition(shape: Shape) -> PipelineDefinition:
    return PipelineDefinition(
        shape.name,
        [
            StageDefinition(f"s{i}", noop, inputs=[f"s{d}" for d in deps])
            for i, deps in enumerate(shape.deps)
        ],
    )


def filling(pipeline: PipelineDefinition, durability: str | None) -> Callable[[], float]:
    """A run that fills a new, empty cache (seconds)."""

    def run() -> float:
        with tempfile.TemporaryDirectory() as folder:
            store = SQLiteCacheStore(folder)
            options: dict[str, Any] = {"cache": store}
            if durability is not None and HAS_DURABILITY:
                options["durability"] = durability
            executor = PipelineExecutor(**options)
            gc.collect()
            start = time.perf_counter()
            result = trio.run(executor.execute, pipeline, "song")
            elapsed = time.perf_counter() - start
            assert result.success  # noqa: S101
            assert not result.cached_stages  # noqa: S101
            trio.run(store.aclose)
            return elapsed

    return run


def uncached(pipeline: PipelineDefinition) -> Callable[[], float]:
    executor = PipelineExecutor()

    def run() -> float:
        gc.collect()
        start = time.perf_counter()
        trio.run(executor.execute, pipeline, "song")
        return time.perf_counter() - start

    return run


def bare(shape: Shape) -> Callable[[], float]:
    def run() -> float:
        gc.collect()
        start = time.perf_counter()
        trio.run(floor, shape)
        return time.perf_counter() - start

    return run


def measure(shape: Shape, repeat: int) -> dict[str, float]:
    pipeline = definition(shape)
    runs = {
        "bare trio": bare(shape),
        "no cache": uncached(pipeline),
        "batched": filling(pipeline, "batched"),
        "sync": filling(pipeline, "sync"),
    }
    for run in runs.values():  # warm up (the plan, SQLite, the threads)
        run()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    return {name: seconds / len(shape.deps) * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller shapes")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    shapes = [chain(50), random_dag(200)] if args.quick else [chain(200), random_dag(1000)]
    if not HAS_DURABILITY:
        print("(this tree has no durability option: 'sync' runs as the default)")
    print(f"{'shape':<10} {'run':<10} {'µs/stage':>9} {'x bare':>7}")
    for shape in shapes:
        figures = measure(shape, args.repeat)
        base = figures["bare trio"]
        for name, micros in figures.items():
            print(f"{shape.name:<10} {name:<10} {micros:9.1f} {micros / base:7.1f}")
        extra, ratio = figures["sync"] - figures["batched"], figures["sync"] / figures["batched"]
        print(f"{shape.name:<10} sync adds {extra:.1f} µs a stage ({ratio:.2f}x batched)")


if __name__ == "__main__":
    main()
