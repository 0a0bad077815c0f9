"""A fan-out of CPU-bound items: in-process (a thread, the GIL serialises them) against
worker processes (trio-parallel), on the same pipeline.

    python benchmarks/bench_offload.py [--items 100] [--ms 80]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import structlog
import trio

from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    ProcessRunner,
    StageDefinition,
    SyncStage,
    ThreadRunner,
)


def spin(iterations: int) -> int:
    """A fixed amount of pure-Python CPU work (the GIL serialises it across threads)."""
    total = 0
    for n in range(iterations):
        total += n % 7
    return total


def iterations_per_ms() -> int:
    """How many ``spin`` iterations take a millisecond here."""
    start = time.perf_counter()
    spin(2_000_000)
    return int(2_000_000 / ((time.perf_counter() - start) * 1000))


def fan_out(fn: Any, runner: Any, values: list[Any]) -> PipelineDefinition:
    """``fn`` over ``values`` on ``runner``, one item each."""
    return PipelineDefinition(
        "offload",
        [
            StageDefinition("items", SyncStage(lambda _: values, name="items")),
            StageDefinition(
                "work",
                SyncStage(fn, runner=runner),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["items"],
            ),
        ],
    )


async def run_timed(pipeline: PipelineDefinition) -> float:
    start = time.perf_counter()
    result = await PipelineExecutor().execute(pipeline)
    assert result.success  # noqa: S101
    return time.perf_counter() - start


def timed(runner: Any, items: int, iterations: int) -> float:
    return trio.run(run_timed, fan_out(spin, runner, [iterations] * items))


def identity(value: Any) -> Any:
    return value


def dask_overhead(items: int) -> tuple[float, float]:
    """Milliseconds per item for trivial items: the executor's Dask backend against
    Dask's own ``client.map`` + ``gather``, on the same 2-worker LocalCluster."""
    import tempfile  # noqa: PLC0415

    from twinklr.core.pipeline import DaskRunner  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        runner = DaskRunner(n_workers=2, local_directory=scratch)
        client = runner.connect()
        try:
            values = list(range(items))
            pipeline = fan_out(identity, runner, values)

            def theirs() -> float:
                start = time.perf_counter()
                client.gather(client.map(identity, values, pure=False))
                return time.perf_counter() - start

            trio.run(run_timed, pipeline)  # warm up both
            theirs()
            best_ours = min(trio.run(run_timed, pipeline) for _ in range(3))
            best_theirs = min(theirs() for _ in range(3))
        finally:
            runner.close()
    return best_ours / items * 1000, best_theirs / items * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--ms", type=float, default=80)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    iterations = int(iterations_per_ms() * args.ms)
    timed(ProcessRunner(max_workers=2), 4, 1)  # start the workers outside the timing
    threads = timed(ThreadRunner(), args.items, iterations)
    processes = timed(ProcessRunner(max_workers=2), args.items, iterations)
    print(
        f"{args.items} items of {args.ms:g} ms CPU: {threads:.2f} s in-process (thread), "
        f"{processes:.2f} s in 2 worker processes ({threads / processes:.2f}x faster)"
    )
    ours, theirs = dask_overhead(500)
    print(
        f"Dask, 500 trivial items on a 2-worker LocalCluster: {ours:.2f} ms/item through the "
        f"executor, {theirs:.2f} ms/item with client.map ({ours / theirs:.2f}x)"
    )


if __name__ == "__main__":
    main()
