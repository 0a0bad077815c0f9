"""The run history in PostgreSQL, on a real server the tests start: the run-store
contract, and two hosts (two processes, no shared files) suspending and resuming one
run."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
import structlog.testing
import trio

from fixtures.postgres import Server, fresh_schema, postgres, restartable_postgres
from twinklr.core.pipeline import (
    CacheWarning,
    PipelineDefinition,
    PipelineExecutor,
    PostgresCacheStore,
    PostgresRunStore,
    RunStoreProtocol,
    StageDefinition,
)
from twinklr.core.pipeline.testing import run_store_conformance

pytest.importorskip("psycopg")
__all__ = ["postgres", "restartable_postgres"]  # (the fixtures)


async def test_keeps_every_promise_of_a_run_store(postgres: str) -> None:
    await run_store_conformance(lambda: PostgresRunStore(postgres, schema=fresh_schema()))


def test_is_a_run_store_named_without_its_password(postgres: str) -> None:
    dsn = postgres.replace("postgres@", "postgres:s3cret@")
    store: RunStoreProtocol = PostgresRunStore(dsn, schema=fresh_schema())
    assert isinstance(store, RunStoreProtocol)
    assert "s3cret" not in store.location
    assert "s3cret" not in repr(store)
    assert store.runs() == []
    store.close()


HOST = """
import json, sys, trio
from twinklr.core.pipeline import (
    PipelineDefinition, PipelineExecutor, PostgresCacheStore, PostgresRunStore,
    StageDefinition, WaitForInput,
)

async def plan(value):
    print("planned", file=sys.stderr)
    return f"plan {value}"

async def render(answer):
    return f"rendered ({answer})"

pipeline = PipelineDefinition("show", [
    StageDefinition("plan", plan),
    StageDefinition("approve", WaitForInput("Render it?", answer_type=str), inputs=["plan"]),
    StageDefinition("render", render, inputs=["approve"]),
])
dsn, schema, action = sys.argv[1:4]
cache = PostgresCacheStore(dsn, schema=schema)
runs = PostgresRunStore(dsn, schema=schema)
if action == "suspend":
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    result = trio.run(executor.execute, pipeline, 1)
elif action == "answer":
    print(json.dumps(runs.respond(sys.argv[4], "approve", "yes")))
    sys.exit()
else:
    result = trio.run(
        lambda: PipelineExecutor(cache=cache, runs=runs).resume(sys.argv[4], pipeline=pipeline)
    )
print(json.dumps({
    "run_id": result.run_id, "outputs": dict(result.outputs),
    "waiting": list(result.waiting_stages), "cached": list(result.cached_stages),
}))
"""


def host(name: str, tmp_path: Path, *args: str) -> tuple[object, str]:
    folder = tmp_path / name  # (no file in common with the other host)
    folder.mkdir(exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", HOST, *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert list(folder.iterdir()) == []  # nothing kept on the host
    return json.loads(done.stdout), done.stderr


def test_a_run_suspended_on_one_host_is_answered_and_resumed_on_another(
    postgres: str, tmp_path: Path
) -> None:
    schema = fresh_schema()
    suspended, planned = host("host-a", tmp_path, postgres, schema, "suspend")
    assert isinstance(suspended, dict)
    run_id = suspended["run_id"]
    assert suspended["waiting"] == ["approve"]
    assert planned.count("planned") == 1
    answered, _ = host("host-b", tmp_path, postgres, schema, "answer", run_id[:8])
    assert answered == run_id
    resumed, planned_again = host("host-c", tmp_path, postgres, schema, "resume", run_id)
    assert resumed == {
        "run_id": run_id,
        "outputs": {"plan": "plan 1", "approve": "yes", "render": "rendered (yes)"},
        "waiting": [],
        "cached": ["plan"],
    }
    assert "planned" not in planned_again  # served from the shared cache
    store = PostgresRunStore(postgres, schema=schema)
    record = store.get(run_id)
    assert record is not None
    assert record.status == "succeeded"
    store.close()


async def suspended_run(postgres: str, schema: str) -> str:
    from twinklr.core.pipeline import (  # noqa: PLC0415
        PipelineDefinition,
        PipelineExecutor,
        PostgresCacheStore,
        StageDefinition,
        WaitForInput,
    )

    async def plan(value: int) -> int:
        return value

    pipeline = PipelineDefinition(
        "show",
        [
            StageDefinition("plan", plan),
            StageDefinition("approve", WaitForInput("Go?"), inputs=["plan"]),
        ],
    )
    cache = PostgresCacheStore(postgres, schema=schema)
    runs = PostgresRunStore(postgres, schema=schema)
    executor = PipelineExecutor(cache=cache, runs=runs, suspend_on_wait=True)
    result = await executor.execute(pipeline, 1)
    await cache.aclose()
    runs.close()
    return result.run_id


async def test_of_eight_hosts_claiming_a_run_at_once_one_gets_it(postgres: str) -> None:
    schema = fresh_schema()
    run_id = await suspended_run(postgres, schema)
    stores = [PostgresRunStore(postgres, schema=schema) for _ in range(8)]
    start = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def claim(store: PostgresRunStore) -> None:
        start.wait()
        try:
            store.claim(run_id)
        except LookupError:
            outcomes.append("refused")
        else:
            outcomes.append("claimed")

    threads = [threading.Thread(target=claim, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["claimed"] + ["refused"] * 7
    for store in stores:
        store.close()


async def test_the_claim_of_a_host_that_died_is_released_after_its_lease(postgres: str) -> None:
    schema = fresh_schema()
    run_id = await suspended_run(postgres, schema)
    dead, alive = (PostgresRunStore(postgres, schema=schema) for _ in range(2))
    dead.claim(run_id)
    with pytest.raises(LookupError, match=r"is running: it is being resumed"):
        alive.suspension(run_id)
    with psycopg.connect(postgres, autocommit=True) as admin:  # its host went quiet
        admin.execute(f"SET search_path TO {schema}")
        admin.execute(
            "UPDATE runs SET host = 'gone', updated_at = updated_at - 61 WHERE run_id = %s",
            (run_id,),
        )
    record = alive.get(run_id)
    assert record is not None
    assert record.status == "interrupted"
    alive.claim(run_id)  # (taken over)
    record = alive.get(run_id)
    assert record is not None
    assert (record.status, record.host) == ("running", alive.host)
    dead.close()
    alive.close()


class Restart:
    """What the restart test's stages reach (module-level stages: a closure over these
    would make their cache keys unknowable)."""

    server: Server
    save_failed: trio.Event
    record_failed: threading.Event
    ran: list[str]
    stopping: bool


async def restart_plan(value: int) -> int:
    Restart.ran.append("plan")
    return value + 1


async def restart_down(value: int) -> int:
    """The server goes away under the run (the first time)."""
    Restart.ran.append("down")
    if Restart.stopping:
        await trio.to_thread.run_sync(Restart.server.stop)
    return value + 1


async def restart_back(value: int) -> int:
    """The server comes back, once both stores have failed to write."""
    Restart.ran.append("back")
    await Restart.save_failed.wait()
    await trio.to_thread.run_sync(Restart.record_failed.wait)
    await trio.to_thread.run_sync(Restart.server.start)
    return value + 1


async def test_a_server_restarted_mid_run_loses_that_stretch_only(
    restartable_postgres: Server,
) -> None:
    server = Restart.server = restartable_postgres
    Restart.save_failed, Restart.record_failed = trio.Event(), threading.Event()
    Restart.ran, Restart.stopping = [], True
    cache = PostgresCacheStore(server.dsn, connect_timeout_s=1)
    runs = PostgresRunStore(server.dsn, connect_timeout_s=1)
    save, write = cache.save, runs.write

    async def saving(records: Any) -> None:
        try:
            await save(records)
        except Exception:
            Restart.save_failed.set()
            raise

    def writing(*args: Any, **fields: Any) -> None:
        try:
            write(*args, **fields)
        except Exception:
            Restart.record_failed.set()
            raise

    cache.save = saving  # type: ignore[method-assign]
    runs.write = writing  # type: ignore[method-assign]
    pipeline = PipelineDefinition(
        "restart",
        [
            StageDefinition("plan", restart_plan),
            StageDefinition("down", restart_down, inputs=["plan"]),
            StageDefinition("back", restart_back, inputs=["down"]),
        ],
    )
    # (sync: each stage's entry commits before the next stage starts)
    executor = PipelineExecutor(cache=cache, runs=runs, durability="sync")
    with structlog.testing.capture_logs() as logs, pytest.warns(CacheWarning):
        result = await executor.execute(pipeline, 0)
    assert result.success
    assert result.outputs["back"] == 3
    assert result.uncached_stages == ("down",)
    events = [log["event"] for log in logs if log["log_level"] in ("warning", "info")]
    assert events.count("cache_write_failed") == 1
    assert events.count("run_record_failed") == 1
    assert events.count("run_record_resumed") == 1
    record = runs.get(result.run_id)
    assert record is not None
    assert record.status == "succeeded"  # recorded again once the server was back
    Restart.ran.clear()
    Restart.stopping = False
    again = await PipelineExecutor(cache=cache, runs=runs).execute(pipeline, 0)
    assert again.cached_stages == ("plan", "back")
    assert Restart.ran == ["down"]  # only what the restart cost is done again
    await cache.aclose()
    runs.close()
