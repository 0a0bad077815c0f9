"""Recording into a run store against the same runs unrecorded, and the store's reads.

Shapes: the 1,000-stage chain and the 10,000-stage random DAG of bench_executor, every
stage trivial, and a 10,000-item fan-out. Each contender is timed around one run
(inside ``trio.run``, so the recorder's final write, which the run awaits, is counted),
interleaved, best of --repeat; the store is a SQLite file in a temporary directory.
Targets: recording slows the 1,000-stage run by at most 10% and the 10,000-stage one
by at most 15%.

Then the store is filled with 10,000 recorded runs of the demo pipeline's shape
(written straight into it, as 10,000 runs would) and ``runs list`` is timed: the
store's query for the newest 50 and the whole command in a fresh interpreter. Target:
under 200 ms.

    python benchmarks/bench_runs.py [--repeat 7] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import logging
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import structlog
import trio

from bench_executor import Shape, chain, definition, fan_out, random_dag
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    RunStore,
    RunStoreProtocol,
)


def timed(executor: PipelineExecutor, pipeline: PipelineDefinition) -> float:
    async def run() -> float:
        start = time.perf_counter()
        result = await executor.execute(pipeline)
        elapsed = time.perf_counter() - start
        assert result.success  # noqa: S101
        return elapsed

    gc.collect()
    return trio.run(run)


def recording(shape: Shape, store: RunStoreProtocol, repeat: int) -> tuple[float, float]:
    """Seconds for ``shape`` unrecorded and recorded into ``store`` (best of ``repeat``,
    interleaved)."""
    pipeline = definition(shape)
    plain = PipelineExecutor()
    recorded = PipelineExecutor(runs=store)
    timed(plain, pipeline)
    timed(recorded, pipeline)
    best = {"plain": float("inf"), "recorded": float("inf")}
    for _ in range(repeat):
        best["plain"] = min(best["plain"], timed(plain, pipeline))
        best["recorded"] = min(best["recorded"], timed(recorded, pipeline))
    return best["plain"], best["recorded"]


def filled_store(directory: str, count: int) -> RunStore:
    """A store holding ``count`` runs of the demo's shape, recorded once and copied."""
    from twinklr.core.pipeline.example_usage import build_pipeline, demo_context  # noqa: PLC0415

    store = RunStore(Path(directory) / "many.sqlite3")
    executor = PipelineExecutor(runs=store)
    pipeline = build_pipeline()
    trio.run(executor.execute, pipeline, "jingle bells", demo_context("jingle bells", None))
    store._db.locked(lambda db: _copy_rows(db, count))  # noqa: SLF001 (the fast way to fill)
    return store


def _copy_rows(db: sqlite3.Connection, count: int) -> None:
    """Copy the one recorded run ``count - 1`` times, each a minute older."""
    columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
    row = db.execute("SELECT * FROM runs").fetchone()
    template = dict(zip(columns, row, strict=True))
    rows = []
    for i in range(1, count):
        copy = dict(template, run_id=f"{i:012x}", started_at=template["started_at"] - i * 60.0)
        copy["finished_at"] = copy["started_at"] + 1.0
        rows.append(tuple(copy[name] for name in columns))
    marks = ",".join("?" * len(columns))
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO runs VALUES ({marks})", rows)  # noqa: S608
    db.execute("COMMIT")


def listing(store: RunStore, repeat: int) -> tuple[float, float]:
    best_query = min(_time(lambda: store.runs(limit=50)) for _ in range(repeat))
    command = [sys.executable, "-m", "twinklr.core.pipeline.cli", "runs", "list"]
    command += ["--store", str(store.path)]
    best_command = min(
        _time(lambda: subprocess.run(command, check=True, capture_output=True))  # noqa: S603
        for _ in range(3)
    )
    return best_query, best_command


def _time(call: object) -> float:
    start = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smaller shapes")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    small, large = (100, 1000) if args.quick else (1000, 10_000)
    with tempfile.TemporaryDirectory() as directory:
        print(f"{'shape':<24}{'plain us':>10}{'recorded us':>13}{'ratio':>8}")
        for shape in (chain(small), random_dag(large), fan_out(large)):
            store = RunStore(Path(directory) / f"{shape.name}.sqlite3")
            plain, recorded = recording(shape, store, args.repeat)
            n = shape.items or len(shape.deps)
            print(
                f"{shape.name:<24}{plain / n * 1e6:>10.1f}{recorded / n * 1e6:>13.1f}"
                f"{recorded / plain:>7.2f}x"
            )
        count = 1000 if args.quick else 10_000
        store = filled_store(directory, count)
        query, command = listing(store, args.repeat)
        print(
            f"runs list over {count:,} runs: the store's query {query * 1000:.1f} ms, "
            f"the whole command {command * 1000:.0f} ms (target < 200 ms)"
        )


if __name__ == "__main__":
    main()
