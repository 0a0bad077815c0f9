"""What a user measures with the defaults: the executor with logging left unconfigured,
against the same runs with structlog filtered at WARNING (what the other benchmarks
set up first), in one process.

Shapes: a 1,000-stage chain and a 10,000-stage random DAG of no-op stages (the ones of
``bench_executor.py``). Reported: microseconds per stage (best of --repeat interleaved
rounds) and the ratio to structlog at WARNING. Target: unconfigured within 1.1x.

    python benchmarks/bench_defaults.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

import structlog

from bench_executor import ROUNDS_CAP, Shape, chain, executor_runner, random_dag, timed

#: How logging is set up before a run: name -> set-up.
SETUPS: dict[str, Callable[[], None]] = {
    "structlog at WARNING": lambda: structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    ),
    "unconfigured": structlog.reset_defaults,
}


def measure(shape: Shape, repeat: int) -> dict[str, float]:
    """Best time per stage (µs) of each set-up, rounds interleaved."""
    run = executor_runner(shape)
    best = dict.fromkeys(SETUPS, float("inf"))
    for _ in range(repeat):
        for name, setup in SETUPS.items():
            setup()
            best[name] = min(best[name], timed(run))
    structlog.reset_defaults()
    return {name: seconds / shape.stages * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    repeat = max(1, min(args.repeat, ROUNDS_CAP))
    names = list(SETUPS)
    print(f"{'shape':<22}" + "".join(f"{name + ' us':>26}" for name in names) + "   ratio")
    for shape in (chain(1_000), random_dag(10_000)):
        figures = measure(shape, repeat)
        ratio = figures["unconfigured"] / figures["structlog at WARNING"]
        cells = "".join(f"{figures[name]:>26.1f}" for name in names)
        print(f"{shape.name:<22}{cells}   {ratio:.2f}x")


if __name__ == "__main__":
    main()
