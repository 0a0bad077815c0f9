"""What a user meets with the defaults, in one process:

- logging left unconfigured, against the same runs with structlog filtered at WARNING
  (what the other benchmarks set up first); target: within 1.1x;
- stages written as plain async functions, against the same work as class stages
  (logging unconfigured); target: within 1.1x.

Shapes: a 1,000-stage chain and a 10,000-stage random DAG of no-op stages (the ones of
``bench_executor.py``). Reported: microseconds per stage, best of --repeat interleaved
rounds, and the ratios.

    python benchmarks/bench_defaults.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from bench_executor import (
    ROUNDS_CAP,
    Shape,
    chain,
    executor_runner,
    random_dag,
    timed,
    work,
)

#: How logging is set up before a run: name -> set-up.
SETUPS: dict[str, Callable[[], None]] = {
    "structlog at WARNING": lambda: structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    ),
    "unconfigured": structlog.reset_defaults,
}


async def trivial(input: Any) -> Any:
    """The function stage doing the benchmarks' work."""
    return await work(input)


def measure(shape: Shape, repeat: int) -> dict[str, float]:
    """Best time per stage (µs) of each contender, rounds interleaved."""
    classes, functions = executor_runner(shape), executor_runner(shape, stage=trivial)
    contenders: dict[str, tuple[Callable[[], None], Callable[[], Awaitable[float]]]] = {
        **{name: (setup, classes) for name, setup in SETUPS.items()},
        "function stages": (structlog.reset_defaults, functions),
    }
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeat):
        for name, (setup, run) in contenders.items():
            setup()
            best[name] = min(best[name], timed(run))
    structlog.reset_defaults()
    return {name: seconds / shape.stages * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    repeat = max(1, min(args.repeat, ROUNDS_CAP))
    header = "structlog@WARNING us  unconfigured us  ratio   functions us  ratio"
    print(f"{'shape':<20}{header}")
    for shape in (chain(1_000), random_dag(10_000)):
        figures = measure(shape, repeat)
        structlog_us, unconfigured = figures["structlog at WARNING"], figures["unconfigured"]
        functions = figures["function stages"]
        print(
            f"{shape.name:<20}{structlog_us:>19.1f}{unconfigured:>17.1f}"
            f"{unconfigured / structlog_us:>6.2f}x{functions:>15.1f}"
            f"{functions / unconfigured:>6.2f}x"
        )


if __name__ == "__main__":
    main()
