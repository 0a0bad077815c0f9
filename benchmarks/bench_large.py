"""A 50 MB float64 array through the SQLite cache against ``np.save``/``np.load``.

The baseline writes the array to a file with ``np.save`` and reads it back with
``np.load``. Through the cache, as a user meets it: a one-stage pipeline returning the
array, run on an empty SQLite store (the write: the run's time beyond the same run
uncached) and run again (the read: served from the cache). Interleaved, best of each;
the ratio is (write + read) / (save + load). Also shown: the store alone (``save`` of
the packed entry, then ``load`` and decode), without the executor. Every file written is
removed after its round, so no measurement pays for an earlier one's dirty pages.

    python benchmarks/bench_large.py [--repeat 7] [--mb 50]
"""

from __future__ import annotations

import argparse
import gc
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trio

from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    SQLiteCacheStore,
    StageDefinition,
)
from twinklr.core.pipeline._cache._run_cache import RunCache


def timed(function: Callable[[], Any]) -> float:
    """One timing of ``function``, in milliseconds."""
    gc.collect()
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


class Bench:
    """The measurements, on one array, one store and one scratch directory."""

    def __init__(self, array: np.ndarray, scratch: Path) -> None:
        self.array = array
        self.scratch = scratch
        self.store = SQLiteCacheStore(scratch / "cache")  # a user's store: there already
        self.served: list[Any] = []

        async def analyse(_input: Any) -> np.ndarray:
            return array

        self.pipeline = PipelineDefinition(
            name="large", stages=[StageDefinition(id="audio", stage=analyse)]
        )
        trio.run(self.store.clear)  # opened (the schema made) before anything is timed

    def save_load(self) -> None:
        np.save(self.scratch / "array.npy", self.array)
        back = np.load(self.scratch / "array.npy")
        assert back.shape == self.array.shape  # noqa: S101

    def uncached(self) -> None:
        trio.run(PipelineExecutor().execute, self.pipeline, 0)

    def fill(self) -> None:
        result = trio.run(PipelineExecutor(cache=self.store).execute, self.pipeline, 0)
        assert not result.cached_stages  # noqa: S101

    def hit(self) -> None:
        result = trio.run(PipelineExecutor(cache=self.store).execute, self.pipeline, 0)
        assert result.cached_stages == ("audio",)  # noqa: S101
        self.served.append(result.outputs["audio"])  # checked after the timing

    def store_only(self) -> tuple[float, float]:
        """The store and the run's cache alone: offer, save; load, decode."""
        log = logging.getLogger("bench")
        cache = RunCache(self.store, "large", 0, log)
        sdef = self.pipeline.stages[0]
        key = cache.key(sdef, 0)
        assert key is not None  # noqa: S101
        start = time.perf_counter()
        cache.offer(sdef, key, self.array, [])
        record = cache.writer._receive.receive_nowait()  # noqa: SLF001 (the queued record)
        trio.run(self.store.save, [record])
        wrote = time.perf_counter() - start
        start = time.perf_counter()
        reader = RunCache(self.store, "large", 0, log)
        trio.run(reader.load)
        hit = reader.lookup(sdef, key)
        read = time.perf_counter() - start
        assert hit is not None  # noqa: S101
        assert np.array_equal(hit[0], self.array)  # noqa: S101
        return wrote * 1000, read * 1000

    def round(self) -> dict[str, float]:
        """One of each, then every file removed (no round pays for another's pages)."""
        times = {
            "base": timed(self.save_load),
            "plain": timed(self.uncached),
            "fill": timed(self.fill),
            "hit": timed(self.hit),
        }
        trio.run(self.store.clear)
        times["save"], times["load"] = self.store_only()
        assert np.array_equal(self.served.pop(), self.array)  # noqa: S101
        (self.scratch / "array.npy").unlink()
        trio.run(self.store.clear)  # its entry, and the entry's file
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mb", type=int, default=50)
    args = parser.parse_args()
    array = np.random.default_rng(0).random(args.mb * 1024 * 1024 // 8)
    scratch = Path(tempfile.mkdtemp(prefix="twinklr-bench-"))
    try:
        bench = Bench(array, scratch)
        rounds = [bench.round() for _ in range(args.repeat)]  # interleaved
    finally:
        shutil.rmtree(scratch)
    best = {name: min(r[name] for r in rounds) for name in rounds[0]}
    write = max(best["fill"] - best["plain"], 0.0)
    print(f"{args.mb} MB float64 array, best of {args.repeat}")
    print(f"  np.save + np.load to a file       {best['base']:8.1f} ms")
    print(f"  uncached run                      {best['plain']:8.1f} ms")
    print(f"  run on an empty SQLite cache      {best['fill']:8.1f} ms  (write: {write:.1f} ms)")
    print(f"  run served from the cache         {best['hit']:8.1f} ms  (read)")
    print(f"  through the cache / np.save+load  {(write + best['hit']) / best['base']:8.2f}x")
    alone = (best["save"] + best["load"]) / best["base"]
    print(
        f"  the store alone: save {best['save']:.1f} ms, load {best['load']:.1f} ms, {alone:.2f}x"
    )


if __name__ == "__main__":
    main()
