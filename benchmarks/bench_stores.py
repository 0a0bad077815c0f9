"""The PostgreSQL stores on a real server, started here from Debian's binaries as the
tests start theirs:

- recording the 1,000-stage chain of bench_executor into `PostgresRunStore`, against
  the same run unrecorded (timed around the run, the recorder's last write included;
  interleaved, best of --repeat). Target: at most 15% slower.
- a fully cached 1,000-stage run on `PostgresCacheStore`: how many calls reach the
  server. Target: a bounded number, not one a stage.
- --processes processes making --runs runs each against the one server, every run
  suspended at a gate, answered through the run store and resumed, each process with a
  cache and a run store of its own. Target: no run, entry or answer lost.

    python benchmarks/bench_stores.py [--repeat 7] [--processes 8] [--runs 100]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import structlog
import trio

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))

from bench_executor import chain, definition
from bench_runs import recording, timed
from fixtures.postgres import own_server
from twinklr.core.pipeline import (
    PipelineExecutor,
    PostgresCacheStore,
    PostgresRunStore,
)


def cached_round_trips(dsn: str) -> tuple[int, int]:
    """Calls reaching the server for the first run of the 1,000-stage chain, and for the
    same run again, fully cached."""
    store = PostgresCacheStore(dsn, schema=f"b{uuid.uuid4().hex[:12]}")
    calls: list[object] = []
    run = store._db.run  # noqa: SLF001 (counted, not changed)

    def counted(work: Any) -> Any:
        calls.append(work)
        return run(work)

    store._db.run = counted  # type: ignore[method-assign]  # noqa: SLF001
    pipeline = definition(chain(1000))
    timed(PipelineExecutor(cache=store), pipeline)
    first = len(calls)
    calls.clear()
    timed(PipelineExecutor(cache=store), pipeline)
    return first, len(calls)


#: One process of the load: ``runs`` runs, each suspended at its gate, answered through
#: the run store and resumed; prints what it got.
WORKER = """
import json, sys, trio
from twinklr.core.pipeline import (
    PipelineDefinition, PipelineExecutor, PostgresCacheStore, PostgresRunStore,
    StageDefinition, WaitForInput,
)

async def plan(value):
    return f"plan {value}"

async def render(answer):
    return f"rendered {answer}"

pipeline = PipelineDefinition("load", [
    StageDefinition("plan", plan),
    StageDefinition("approve", WaitForInput("Go?", answer_type=str), inputs=["plan"]),
    StageDefinition("render", render, inputs=["approve"]),
])
dsn, schema, worker, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cache = PostgresCacheStore(dsn, schema=schema)
store = PostgresRunStore(dsn, schema=schema)

async def main():
    outputs = []
    for n in range(runs):
        suspending = PipelineExecutor(cache=cache, runs=store, suspend_on_wait=True)
        suspended = await suspending.execute(pipeline, f"{worker}-{n}")
        answer = f"answer {worker}-{n}"
        await trio.to_thread.run_sync(store.respond, suspended.run_id, "approve", answer)
        resumed = await PipelineExecutor(cache=cache, runs=store).resume(
            suspended.run_id, pipeline=pipeline
        )
        outputs.append([resumed.run_id, resumed.outputs.get("render")])
    return outputs

print(json.dumps(trio.run(main)))
"""


def load(dsn: str, processes: int, runs: int) -> dict[str, Any]:
    """Run the load; what the processes and the stores say afterwards."""
    schema = f"b{uuid.uuid4().hex[:12]}"
    start = time.perf_counter()
    children = [
        subprocess.Popen(  # noqa: S603 (this interpreter, this file's script)
            [sys.executable, "-c", WORKER, dsn, schema, str(worker), str(runs)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for worker in range(processes)
    ]
    outputs = []
    for child in children:
        out, _ = child.communicate(timeout=1800)
        assert child.returncode == 0  # noqa: S101
        outputs += json.loads(out)
    elapsed = time.perf_counter() - start
    wrong = [
        run_id
        for index, (run_id, render) in enumerate(outputs)
        if render != f"rendered answer {index // runs}-{index % runs}"
    ]
    store = PostgresRunStore(dsn, schema=schema)
    recorded = store.runs(pipeline="load")
    cache = PostgresCacheStore(dsn, schema=schema)
    entries = trio.run(cache.entries, "load")
    return {
        "seconds": elapsed,
        "runs": len(outputs),
        "wrong answers": len(wrong),
        "recorded": len(recorded),
        "succeeded": sum(record.status == "succeeded" for record in recorded),
        "entries": len(entries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with own_server() as server:
        store = PostgresRunStore(server.dsn, schema=f"b{uuid.uuid4().hex[:12]}")
        plain, recorded = recording(chain(1000), store, args.repeat)
        print(
            f"1,000-stage chain: {plain * 1000:.1f} ms unrecorded, {recorded * 1000:.1f} ms "
            f"recorded into PostgreSQL ({(recorded / plain - 1) * 100:+.1f}%)"
        )
        first, again = cached_round_trips(server.dsn)
        print(
            f"1,000-stage chain on PostgresCacheStore: {first} calls to the server on the "
            f"first run, {again} on the fully cached one"
        )
        seen = load(server.dsn, args.processes, args.runs)
        print(
            f"{args.processes} processes x {args.runs} runs (each suspended, answered, "
            f"resumed) in {seen['seconds']:.1f} s: {seen['runs']} runs back, "
            f"{seen['wrong answers']} with a wrong answer; the run store has "
            f"{seen['recorded']} ({seen['succeeded']} succeeded), the cache "
            f"{seen['entries']} entries"
        )


if __name__ == "__main__":
    main()
