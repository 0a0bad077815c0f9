"""The cache in PostgreSQL, on a real server the tests start (Debian's binaries)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures.postgres import fresh_schema, postgres
from twinklr.core.pipeline import (
    CacheRecord,
    PipelineDefinition,
    PipelineExecutor,
    PostgresCacheStore,
    StageDefinition,
)
from twinklr.core.pipeline.testing import cache_store_conformance

pytest.importorskip("psycopg")
__all__ = ["postgres"]  # (the fixture)


def record(key: str, payload: bytes) -> CacheRecord:
    return CacheRecord(
        key=key, pipeline="p", stage="s", group="g", payload=payload, created_at=time.time()
    )


async def test_keeps_every_promise_of_a_cache_store(postgres: str) -> None:
    await cache_store_conformance(lambda: PostgresCacheStore(postgres, schema=fresh_schema()))
    await cache_store_conformance(
        lambda: PostgresCacheStore(postgres, schema=fresh_schema(), max_bytes=10_000)
    )


def chain(count: int) -> PipelineDefinition:
    stages = [StageDefinition("s0", add_one)]
    stages += [StageDefinition(f"s{n}", add_one, inputs=[f"s{n - 1}"]) for n in range(1, count)]
    return PipelineDefinition("chain", stages)


async def add_one(value: int) -> int:
    return value + 1


async def test_a_cached_run_reads_its_entries_in_a_few_queries_not_one_a_stage(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = PostgresCacheStore(postgres, schema=fresh_schema())
    first = await PipelineExecutor(cache=store).execute(chain(300), 0)
    assert first.outputs["s299"] == 300
    calls: list[object] = []
    run = store._db.run

    def counted(work: Any) -> Any:
        calls.append(work)
        return run(work)

    monkeypatch.setattr(store._db, "run", counted)
    again = await PipelineExecutor(cache=store).execute(chain(300), 0)
    assert len(again.cached_stages) == 300
    assert again.outputs["s299"] == 300
    assert len(calls) <= 3, len(calls)
    await store.aclose()


async def test_a_bounded_store_never_evicts_what_a_run_on_another_host_holds(
    postgres: str,
) -> None:
    schema = fresh_schema()
    here = PostgresCacheStore(postgres, schema=schema)
    there = PostgresCacheStore(postgres, schema=schema, max_bytes=1_000)  # another host's
    held = {"kept"}
    here.hold(held)
    await here.save([record("kept", b"k" * 400)])
    for n in range(6):
        await there.save([record(f"fill{n}", b"f" * 400)])
    kept = {entry.key for entry in await there.entries()}
    assert "kept" in kept
    assert len(kept) == 2  # (the held entry and the one just written)
    here.release(held)
    await here.keys("p")  # (any call: the released hold's rows go)
    await there.save([record("last", b"l" * 400)])
    assert "kept" not in {entry.key for entry in await there.entries()}
    await here.aclose()
    await there.aclose()


async def test_the_holds_of_a_host_that_died_lapse_with_their_lease(postgres: str) -> None:
    schema = fresh_schema()
    dead = PostgresCacheStore(postgres, schema=schema, hold_lease_s=60)
    dead.hold({"kept"})
    await dead.save([record("kept", b"k" * 400)])
    dead.close()  # (its process is gone: nobody releases or renews)
    later = PostgresCacheStore(
        postgres, schema=schema, max_bytes=500, clock=lambda: time.time() + 61
    )
    await later.save([record("new", b"n" * 400)])
    assert [entry.key for entry in await later.entries()] == ["new"]
    await later.aclose()


HOST = """
import json, sys, trio
from twinklr.core.pipeline import (
    PipelineDefinition, PipelineExecutor, PostgresCacheStore, StageDefinition
)

async def add_one(value):
    print("ran", value, file=sys.stderr)
    return value + 1

pipeline = PipelineDefinition(
    "hosts", [StageDefinition("a", add_one), StageDefinition("b", add_one, inputs=["a"])]
)
store = PostgresCacheStore(sys.argv[1], schema=sys.argv[2])
result = trio.run(PipelineExecutor(cache=store).execute, pipeline, 1)
print(json.dumps({"outputs": dict(result.outputs), "cached": list(result.cached_stages)}))
"""


def test_two_hosts_hit_each_others_entries(postgres: str, tmp_path: Path) -> None:
    schema = fresh_schema()
    seen = []
    for host in ("host-a", "host-b"):
        folder = tmp_path / host  # (no file in common)
        folder.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", HOST, postgres, schema],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        seen.append((json.loads(done.stdout), done.stderr.count("ran ")))
        assert list(folder.iterdir()) == []  # nothing kept on the host
    (first, ran_first), (second, ran_second) = seen
    assert first == {"outputs": {"a": 2, "b": 3}, "cached": []}
    assert second == {"outputs": {"a": 2, "b": 3}, "cached": ["a", "b"]}
    assert (ran_first, ran_second) == (2, 0)
