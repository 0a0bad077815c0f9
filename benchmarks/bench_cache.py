"""A fully cached rerun against an uncached run of the same no-op pipeline.

Shapes: a 1,000-stage chain and a 1,000-stage random DAG (up to 3 inputs per stage,
fixed seed), every stage a no-op returning a small value. For each store (memory,
SQLite in a temporary directory) the cache is filled by one run, then reruns that are
served entirely from the cache are timed against uncached runs, interleaved, best of
each. Reported: microseconds per stage, the ratio, and the added cost per cached stage
(key, lookup, decode, replay). The first (filling) run's cost is reported too.

    python benchmarks/bench_cache.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import gc
import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

import structlog
import trio

from bench_executor import Shape, chain, random_dag
from twinklr.core.pipeline import (
    CacheStore,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    SQLiteCacheStore,
    StageDefinition,
    StageResult,
)


class Noop:
    """Returns a small constant: the cost measured is the executor's and the cache's."""

    name = "noop"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[int]:
        return StageResult.success(1)


def definition(shape: Shape) -> PipelineDefinition:
    stage = Noop()
    return PipelineDefinition(
        shape.name,
        [
            StageDefinition(f"s{i}", stage, inputs=[f"s{d}" for d in deps])
            for i, deps in enumerate(shape.deps)
        ],
    )


def timed(executor: PipelineExecutor, pipeline: PipelineDefinition, *, cached: bool) -> float:
    async def run() -> float:
        start = time.perf_counter()
        result = await executor.execute(pipeline, "song")
        elapsed = time.perf_counter() - start
        assert result.success  # noqa: S101
        assert len(result.cached_stages) == (len(pipeline.stages) if cached else 0)  # noqa: S101
        return elapsed

    gc.collect()
    return trio.run(run)


def measure(shape: Shape, store: CacheStore, repeat: int) -> dict[str, float]:
    pipeline = definition(shape)
    plain, caching = PipelineExecutor(), PipelineExecutor(cache=store)
    timed(plain, pipeline, cached=False)  # compile the plan
    fill = timed(caching, pipeline, cached=False)
    best = {"uncached": float("inf"), "cached": float("inf")}
    runs: dict[str, Callable[[], float]] = {
        "uncached": lambda: timed(plain, pipeline, cached=False),
        "cached": lambda: timed(caching, pipeline, cached=True),
    }
    for _ in range(repeat):
        for name, run in runs.items():
            best[name] = min(best[name], run())
    n = len(shape.deps)
    return {
        "uncached_us": best["uncached"] / n * 1e6,
        "cached_us": best["cached"] / n * 1e6,
        "ratio": best["cached"] / best["uncached"],
        "lookup_us": (best["cached"] - best["uncached"]) / n * 1e6,
        "fill_us": fill / n * 1e6,
    }


def stores(directory: str) -> dict[str, Callable[[], CacheStore]]:
    return {"memory": MemoryCacheStore, "sqlite": lambda: SQLiteCacheStore(directory)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="100-stage shapes")
    args = parser.parse_args()
    size = 100 if args.quick else 1000
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"{'shape':<20}{'store':<8}{'uncached us':>12}{'cached us':>10}{'ratio':>7}"
        f"{'lookup us':>10}{'fill us':>9}"
    )
    for shape in (chain(size), random_dag(size)):
        with tempfile.TemporaryDirectory(prefix="twinklr-bench-") as directory:
            for name, make in stores(directory).items():
                row = measure(shape, make(), args.repeat)
                print(
                    f"{shape.name:<20}{name:<8}{row['uncached_us']:>12.1f}"
                    f"{row['cached_us']:>10.1f}{row['ratio']:>7.2f}{row['lookup_us']:>10.1f}"
                    f"{row['fill_us']:>9.1f}"
                )


if __name__ == "__main__":
    main()
