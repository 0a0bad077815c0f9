"""What a plan costs before it runs, against another commit: building and validating a
10,000-stage random DAG, and the peak memory of building and running it once.

Each measurement is a fresh interpreter on one source tree (``--tree``, default this
one), interleaved round by round with the other trees, best of ``--repeat``; the figures
of every tree after the first are also given as ratios to the first's. The run is also
timed against the bare-Trio floor of ``bench_executor`` in the same process. Only the
public API is used (and the compiled plan: ``pipeline.plan()`` where a definition has
it, the engine's ``plan_of`` where it does not), so older commits can be measured:

    git worktree add /tmp/before <commit>
    python benchmarks/bench_build.py --tree /tmp/before --tree . [--repeat 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STAGES = 10_000


def measure(kind: str) -> dict[str, float]:
    """One tree's figures, in this interpreter (``kind``: class or function stages)."""
    import structlog  # noqa: PLC0415 (the tree's own environment, once its path is set)
    import trio  # noqa: PLC0415

    # As a service runs: warnings only (an unconfigured structlog prints every event).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    import bench_executor as bench  # noqa: PLC0415
    from twinklr.core.pipeline import PipelineExecutor  # noqa: PLC0415

    async def double(input: Any) -> Any:
        return input

    stage: Any = double if kind == "function" else None
    shape = bench.random_dag(STAGES)
    gc.collect()
    start = time.perf_counter()
    pipeline = bench.definition(shape, stage)
    built = time.perf_counter() - start
    gc.collect()
    start = time.perf_counter()
    compile_plan(pipeline)
    planned = time.perf_counter() - start

    floor = bench.timed(bench.baseline(bench.floor, shape))
    gc.collect()
    tracemalloc.start()
    fresh = bench.definition(shape, stage)
    start = time.perf_counter()
    result = trio.run(PipelineExecutor().execute, fresh)
    ran = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result.success  # noqa: S101
    return {
        "build_ms": built * 1000,
        "plan_ms": planned * 1000,
        "cold_run_vs_floor": ran / floor,
        "traced_peak_mb": peak / 2**20,
        "process_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def compile_plan(pipeline: Any) -> Any:
    """Validate and compile ``pipeline`` as its commit does."""
    plan = getattr(pipeline, "plan", None)
    if callable(plan):
        return plan()
    from twinklr.core.pipeline._engine._plan import plan_of  # noqa: PLC0415

    return plan_of(pipeline)


def in_tree(tree: Path, kind: str) -> dict[str, float]:
    """`measure` in a fresh interpreter importing the package from ``tree``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree / "src"), str(HERE)])}
    code = f"import bench_build, json; print(json.dumps(bench_build.measure({kind!r})))"
    done = subprocess.run(  # noqa: S603 (our interpreter, fixed code)
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", action="append", type=Path, help="a source tree (repeatable)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--kind", choices=["class", "function"], default="class")
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree or [HERE.parent]]
    best: dict[Path, dict[str, float]] = {tree: {} for tree in trees}
    for _ in range(args.repeat):
        for tree in trees:
            for name, value in in_tree(tree, args.kind).items():
                best[tree][name] = min(best[tree].get(name, float("inf")), value)
    first = best[trees[0]]
    print(f"a {STAGES:,}-stage random DAG of {args.kind} stages, best of {args.repeat}:")
    for tree, figures in best.items():
        shown = ", ".join(f"{name} {value:.2f}" for name, value in figures.items())
        print(f"  {tree}: {shown}")
        if tree != trees[0]:
            ratios = ", ".join(
                f"{name} {value / first[name]:.2f}x" for name, value in figures.items()
            )
            print(f"    against {trees[0].name}: {ratios}")


if __name__ == "__main__":
    main()
