"""Runs from asyncio (`aio.execute`) against the same runs under `trio.run`, in one
process.

Shapes: the 10,000-stage random DAG and a 10,000-item fan-out of bench_executor, every
stage trivial. Three contenders per shape, each timed around one run (best of
--repeat, interleaved):
  trio:          ``await PipelineExecutor().execute(p)`` inside ``trio.run``;
  aio, trio:     ``await aio.execute(p, stage_loop="trio")`` inside ``asyncio.run`` (Trio
                 in guest mode on the asyncio loop; the stages are Trio code);
  aio, asyncio:  ``await aio.execute(p)``, the same stages run as asyncio tasks.

Reported: microseconds per stage, the guest-mode ratio (target: within 1.3x of
``trio.run``) and an asyncio stage's extra cost, the hand-over to the host loop and back
(target: under 20 us). Each aio run starts and ends its own guest run, as a lone request
does.

    python benchmarks/bench_aio.py [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Literal

import structlog
import trio

from bench_executor import Shape, definition, fan_out, random_dag
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, aio


def trio_run(pipeline: PipelineDefinition) -> float:
    async def run() -> float:
        start = time.perf_counter()
        result = await PipelineExecutor().execute(pipeline)
        elapsed = time.perf_counter() - start
        assert result.success  # noqa: S101
        return elapsed

    gc.collect()
    return trio.run(run)


def aio_run(pipeline: PipelineDefinition, stage_loop: Literal["trio", "asyncio"]) -> float:
    async def run() -> float:
        start = time.perf_counter()
        result = await aio.execute(pipeline, stage_loop=stage_loop)
        elapsed = time.perf_counter() - start
        assert result.success, result.error  # noqa: S101
        return elapsed

    gc.collect()
    return asyncio.run(run())


def measure(shape: Shape, repeat: int) -> dict[str, float]:
    pipeline = definition(shape)
    contenders: dict[str, Callable[[], float]] = {
        "trio": lambda: trio_run(pipeline),
        "aio, trio": lambda: aio_run(pipeline, "trio"),
        "aio, asyncio": lambda: aio_run(pipeline, "asyncio"),
    }
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeat):
        for name, run in contenders.items():
            best[name] = min(best[name], run())
    return {name: seconds / shape.stages * 1e6 for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per contender (best kept)")
    parser.add_argument("--quick", action="store_true", help="1,000 stages instead of 10,000")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    n = 1_000 if args.quick else 10_000
    print(f"{'shape':<22}{'trio':>8}{'aio,trio':>10}{'ratio':>7}{'aio,asyncio':>13}{'extra':>8}")
    for shape in (random_dag(n), fan_out(n)):
        us = measure(shape, args.repeat)
        ratio = us["aio, trio"] / us["trio"]
        extra = us["aio, asyncio"] - us["aio, trio"]
        print(
            f"{shape.name:<22}{us['trio']:>8.1f}{us['aio, trio']:>10.1f}{ratio:>6.2f}x"
            f"{us['aio, asyncio']:>13.1f}{extra:>8.1f}"
        )
    print("us per stage; ratio: aio with Trio stages / trio.run (target <= 1.3x);")
    print("extra: an asyncio stage's hand-over cost, us per stage (target < 20)")


if __name__ == "__main__":
    main()
