"""A fan-out of CPU-bound items: in-process (a thread, the GIL serialises them) against
worker processes (trio-parallel), on the same pipeline; then the cluster runners against
their libraries' own calls on the same cluster: Dask per item (against ``client.map``), a
closure over 20 MB fanned out (against ``client.map`` with the table scattered), the
return of a fail-fast with 10,000 calls in flight, and Ray per item (against
``ray.get([f.remote(x) ...])``).

    python benchmarks/bench_offload.py [--items 100] [--ms 80] [--no-ray]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
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


def dask_big_closure(client: Any, runner: Any) -> tuple[float, float]:
    """Seconds for a 50-item fan-out of a closure over 20 MB: ours against
    ``client.map`` with the table scattered by hand."""
    table = bytes(20_000_000)
    values = list(range(50))
    pipeline = fan_out(lambda v: len(table) + v, runner, values)

    def theirs() -> float:
        start = time.perf_counter()
        scattered = client.scatter(table, broadcast=True)
        client.gather(client.map(lambda v, t: len(t) + v, values, t=scattered, pure=False))
        return time.perf_counter() - start

    trio.run(run_timed, pipeline)
    theirs()
    return min(trio.run(run_timed, pipeline) for _ in range(3)), min(theirs() for _ in range(3))


def dask_fail_fast(runner: Any, scratch: str, in_flight: int) -> float:
    """Seconds from the failing call's raise (on its worker) to the run's return, with
    ``in_flight`` calls submitted."""
    marker, first = f"{scratch}/failed-at", f"{scratch}/first"

    def fail_first(value: int) -> int:
        import os  # noqa: PLC0415 (on the worker)

        try:
            os.close(os.open(first, os.O_CREAT | os.O_EXCL))  # the first call to start
        except FileExistsError:
            time.sleep(0.5)
            return value
        time.sleep(1.0)  # (every call is submitted by then)
        with open(marker, "w") as out:  # noqa: PTH123
            out.write(repr(time.time()))
        raise KeyError(value)

    async def timed_failure() -> float:
        result = await PipelineExecutor().execute(
            fan_out(fail_first, runner, list(range(in_flight)))
        )
        assert not result.success  # noqa: S101
        return time.time()

    try:
        returned = trio.run(timed_failure)
        return returned - float(Path(marker).read_text())
    finally:
        for path in (marker, first):
            Path(path).unlink(missing_ok=True)


_LET_GO = (None, "released", "forgotten")


def dask_release_floor(client: Any, in_flight: int) -> float:
    """Seconds plain Dask takes to let go of ``in_flight`` submitted calls: every future
    released at once (in one callback on the client's loop), until the scheduler reports
    every key released. What our fail-fast figure cannot go below."""
    import threading  # noqa: PLC0415

    def sleeps(value: int) -> int:
        time.sleep(0.5)
        return value

    futures = client.map(sleeps, range(in_flight), pure=False)
    keys = [future.key for future in futures]
    time.sleep(1.0)  # (as in dask_fail_fast: a second of work before the failure)
    start = time.perf_counter()
    released = threading.Event()

    def release_all() -> None:
        for future in futures:
            future.release()
        released.set()

    client.loop.add_callback(release_all)
    released.wait()
    while keys:
        status = client.sync(client.scheduler.get_task_status, keys=keys)
        keys = [key for key, state in status.items() if state not in _LET_GO]
    return time.perf_counter() - start


def dask_figures() -> None:
    import tempfile  # noqa: PLC0415

    from twinklr.core.pipeline import DaskRunner  # noqa: PLC0415

    ours, theirs = dask_overhead(500)
    print(
        f"Dask, 500 trivial items on a 2-worker LocalCluster: {ours:.2f} ms/item through the "
        f"executor, {theirs:.2f} ms/item with client.map ({ours / theirs:.2f}x)"
    )
    with tempfile.TemporaryDirectory() as scratch:
        runner = DaskRunner(n_workers=2, local_directory=scratch)
        client = runner.connect()
        try:
            ours, theirs = dask_big_closure(client, runner)
            print(
                f"Dask, a closure over 20 MB fanned out to 50 items: {ours:.2f} s through the "
                f"executor, {theirs:.2f} s with client.map and the table scattered "
                f"({ours / theirs:.2f}x)"
            )
            after = dask_fail_fast(runner, scratch, 10_000)
            floor = dask_release_floor(client, 10_000)
            print(
                f"Dask, fail-fast with 10,000 calls in flight: the run returns {after:.2f} s"
                f" after the failure, once the scheduler has let them go; plain Dask takes"
                f" {floor:.2f} s to let go of 10,000 released futures ({after / floor:.2f}x)"
            )
        finally:
            runner.close()


def ray_overhead(items: int) -> tuple[float, float]:
    """Milliseconds per item for trivial items: the executor's Ray backend against
    ``ray.get([f.remote(x) ...])``, on the same local Ray (2 CPUs)."""
    import ray  # noqa: PLC0415

    from twinklr.core.pipeline import RayRunner  # noqa: PLC0415

    async def held() -> tuple[float, float]:
        async with RayRunner(num_cpus=2) as runner:
            values = list(range(items))
            pipeline = fan_out(identity, runner, values)
            remote = ray.remote(identity)

            def theirs() -> float:
                start = time.perf_counter()
                ray.get([remote.remote(v) for v in values])
                return time.perf_counter() - start

            await run_timed(pipeline)  # warm up both
            theirs()
            best_ours = min([await run_timed(pipeline) for _ in range(3)])
            best_theirs = min(theirs() for _ in range(3))
        return best_ours / items * 1000, best_theirs / items * 1000

    return trio.run(held)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--ms", type=float, default=80)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray figures")
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
    dask_figures()
    if not args.no_ray:
        ours, theirs = ray_overhead(500)
        print(
            f"Ray, 500 trivial items on a local Ray (2 CPUs): {ours:.2f} ms/item through the "
            f"executor, {theirs:.2f} ms/item with ray.get ({ours / theirs:.2f}x)"
        )


if __name__ == "__main__":
    main()
