"""Reliability under random faults: random DAGs of up to 60 stages with random patterns
(fan-out, conditional, non-critical), durations, failures, exceptions, timeouts,
retries and raising conditions, run on the virtual clock with a cache, then rerun with
the faults removed.

A reference model says, for each stage, how it ends when it runs to the end (its
"static" outcome) and what it outputs; the checks compare the real run against it:

- a stage starts only after every input has ended (event order and timeline);
- with fail-fast, nothing starts after the first critical failure; without it, every
  stage ends exactly as the model says;
- when the run returns, no stage task is alive (the testing kit's check);
- every succeeded output is exactly the model's;
- the cache holds exactly the successful stages (and fan-out items);
- the rerun without faults succeeds with the fault-free outputs and executes exactly
  what had not succeeded on the same input.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import structlog
import structlog.testing
import trio
import trio.lowlevel
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cache_warnings
from fixtures.load import LimiterLog, load_pipeline, reference_outputs, run_batch
from twinklr.core.pipeline import (
    CacheEntry,
    EventKind,
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RateLimiter,
    RetryConfig,
    SQLiteCacheStore,
    StageDefinition,
    StageResult,
    StageStatus,
)
from twinklr.core.pipeline._observe._events import TERMINAL_KINDS
from twinklr.core.pipeline.testing import RunRecord, run_virtual

FAULTS = ("none", "result", "raise", "timeout", "flaky", "condition")
DIGEST_BASE = 1_000_000
FAILED = StageStatus.FAILED


@attrs.frozen
class Spec:
    """One stage of a random pipeline."""

    deps: tuple[int, ...]
    fan_out: bool
    condition: bool | None  # None: unconditional; else whether it goes ahead
    critical: bool
    duration: int  # seconds
    fault: str
    attempts: int  # RetryConfig.max_attempts
    flaky_times: int  # failures before success, for "flaky"


@st.composite
def specs(draw: st.DrawFn, max_size: int = 60) -> tuple[list[Spec], bool]:
    """A random pipeline (its stages' specs) and whether it fails fast."""
    size = draw(st.integers(1, max_size))
    stages = []
    for i in range(size):
        fan_out = i > 0 and draw(st.integers(0, 5)) == 0
        if fan_out:
            deps: tuple[int, ...] = (draw(st.integers(0, i - 1)),)
        elif i:
            deps = tuple(sorted(draw(st.sets(st.integers(0, i - 1), max_size=min(i, 3)))))
        else:
            deps = ()
        condition = None if fan_out or draw(st.integers(0, 4)) else draw(st.booleans())
        fault = draw(st.sampled_from(FAULTS) if draw(st.integers(0, 3)) == 0 else st.just("none"))
        if fault == "condition" and condition is None:
            fault = "none"
        stages.append(
            Spec(
                deps=deps,
                fan_out=fan_out,
                condition=condition,
                critical=draw(st.integers(0, 4)) > 0,
                duration=draw(st.integers(0, 3)),
                fault=fault,
                attempts=draw(st.integers(1, 3)),
                flaky_times=draw(st.integers(1, 2)),
            )
        )
    return stages, draw(st.booleans())


def digest(value: Any) -> int:
    return DIGEST_BASE + zlib.crc32(json.dumps(value, sort_keys=True).encode()) % 1000


def plain_output(index: int, value: Any) -> list[int]:
    """A stage's output: a few ints of its own, then one that depends on its input."""
    return [index * 1000 + k for k in range(1 + index % 3)] + [digest(value)]


def item_output(index: int, item: int) -> int:
    return item * 10 + index


def faulty_item(item: Any) -> bool:
    """The fan-out item a fan-out stage's fault hits: the input-dependent one."""
    return isinstance(item, int) and item >= DIGEST_BASE


@attrs.define(eq=False)
class ModelStage:
    """A stage that behaves as its spec says while ``faults[0]`` is on."""

    index: int
    spec: Spec
    faults: list[bool]
    name: str = "model"
    calls: list[Any] = attrs.field(factory=list)
    failures: dict[str, int] = attrs.field(factory=dict)

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        self.calls.append(input)
        spec = self.spec
        faulty = self.faults[0] and (not spec.fan_out or faulty_item(input))
        fault = spec.fault if faulty else "none"
        if fault == "timeout":
            await trio.sleep(spec.duration + 10)  # its timeout is duration + 1 s
        await trio.sleep(spec.duration)
        if fault == "flaky":
            key = json.dumps(input, sort_keys=True)
            failed = self.failures.get(key, 0)
            if failed < spec.flaky_times:
                self.failures[key] = failed + 1
                fault = "raise"
        if fault == "result":
            return StageResult.failure(f"stage {self.index} says no")
        if fault == "raise":
            msg = f"stage {self.index} raised"
            raise RuntimeError(msg)
        if spec.fan_out:
            return StageResult.success(item_output(self.index, input))
        return StageResult.success(plain_output(self.index, input))


def condition(spec: Spec, faults: list[bool]) -> Any:
    def check(context: PipelineContext) -> bool:
        if faults[0] and spec.fault == "condition":
            msg = "the condition cannot tell"
            raise LookupError(msg)
        return bool(spec.condition)

    return check


def build(stages: list[Spec], *, fail_fast: bool) -> tuple[PipelineDefinition, list[ModelStage]]:
    faults = [True]
    models = [ModelStage(i, spec, faults) for i, spec in enumerate(stages)]
    definitions = []
    for i, spec in enumerate(stages):
        pattern = ExecutionPattern.SEQUENTIAL
        if spec.fan_out:
            pattern = ExecutionPattern.FAN_OUT
        elif spec.condition is not None:
            pattern = ExecutionPattern.CONDITIONAL
        definitions.append(
            StageDefinition(
                f"s{i}",
                models[i],
                inputs=[f"s{d}" for d in spec.deps],
                pattern=pattern,
                condition=condition(spec, faults) if spec.condition is not None else None,
                critical=spec.critical,
                timeout_ms=(spec.duration + 1) * 1000 if spec.fault == "timeout" else None,
                retry_config=RetryConfig(max_attempts=spec.attempts, initial_delay_ms=100),
            )
        )
    return PipelineDefinition(name="random", stages=definitions, fail_fast=fail_fast), models


@attrs.frozen
class Expected:
    """How a stage ends when it runs to the end, and what it hands on."""

    status: StageStatus | None  # None: never starts (an input failed critically)
    output: Any = None
    input: Any = None


def model(stages: list[Spec], *, faults: bool) -> list[Expected]:
    """Each stage's outcome when every stage runs to its end (no fail-fast cut)."""
    expected: list[Expected] = []
    for i, spec in enumerate(stages):
        ins = [expected[d] for d in spec.deps]
        if any(e.status is None or (e.status is StageStatus.FAILED and stages[d].critical)
               for e, d in zip(ins, spec.deps, strict=True)):  # fmt: skip
            expected.append(Expected(None))
            continue
        handed = [e.output for e in ins]
        value = None if not ins else handed[0] if len(ins) == 1 else {
            f"s{d}": out for d, out in zip(spec.deps, handed, strict=True)
        }  # fmt: skip
        expected.append(_outcome(i, spec, value, faults=faults))
    return expected


def _outcome(index: int, spec: Spec, value: Any, *, faults: bool) -> Expected:  # noqa: PLR0911
    failed = Expected(StageStatus.FAILED, None, value)
    if faults and spec.fault == "condition":
        return failed
    if spec.condition is False:
        return Expected(StageStatus.SKIPPED, None, value)
    fault = spec.fault if faults else "none"
    if fault == "flaky":
        fault = "none" if spec.attempts > spec.flaky_times else "raise"
    if spec.fan_out:
        if not isinstance(value, list):
            return failed  # nothing to fan out over (the input was skipped or failed)
        if fault in {"result", "raise", "timeout"} and any(faulty_item(x) for x in value):
            return failed
        return Expected(StageStatus.SUCCEEDED, [item_output(index, x) for x in value], value)
    if fault in {"result", "raise", "timeout"}:
        return failed
    return Expected(StageStatus.SUCCEEDED, plain_output(index, value), value)


def check_dataflow(record: RunRecord, stages: list[Spec], *, fail_fast: bool) -> None:
    """Each stage started after all its inputs ended (events and timeline agree); with
    fail-fast, none started (or was queued) after the first critical failure."""
    ended_at: dict[str, int] = {}
    first_critical_failure = None
    critical = {f"s{i}" for i, spec in enumerate(stages) if spec.critical}
    for position, event in enumerate(record.events):
        if event.kind in TERMINAL_KINDS:
            ended_at[event.stage or ""] = position
        if event.kind is EventKind.STAGE_FAILED and event.stage in critical:
            first_critical_failure = first_critical_failure or position
        if event.kind in {EventKind.STAGE_STARTED, EventKind.STAGE_QUEUED}:
            index = int((event.stage or "")[1:])
            assert all(f"s{d}" in ended_at for d in stages[index].deps), event
            if fail_fast:
                assert first_critical_failure is None, f"{event} after a critical failure"
    for stage, timing in record.stages.items():
        for d in stages[int(stage[1:])].deps:
            assert record.stages[f"s{d}"].finished_ms <= timing.started_ms


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs())
def test_random_faults_then_a_clean_rerun(drawn: tuple[list[Spec], bool]) -> None:
    stages, fail_fast = drawn
    pipeline, models = build(stages, fail_fast=fail_fast)
    store = MemoryCacheStore()
    executor = PipelineExecutor(cache=store)
    expected = model(stages, faults=True)

    first = run_virtual(pipeline, executor=executor)
    statuses = check_run(first, stages, expected, fail_fast=fail_fast)
    check_cache(trio.run(store.entries), first.result, stages, statuses)

    # The rerun without faults: exactly what had not succeeded on the same input runs.
    before = [len(m.calls) for m in models]
    done_items = _succeeded_item_values(first.result, stages, expected)
    models[0].faults[0] = False
    clean = model(stages, faults=False)
    second = run_virtual(pipeline, executor=executor)
    second.assert_no_task_left_running()
    check_dataflow(second, stages, fail_fast=fail_fast)
    assert second.result.success == succeeds(clean, stages)
    for i, (spec, e) in enumerate(zip(stages, clean, strict=True)):
        stage = f"s{i}"
        rerun_calls = models[i].calls[before[i] :]
        got = second.result.get_result(stage)
        if (fail_fast and got is None) or (got is not None and got.status is StageStatus.CANCELLED):
            continue  # cut short by a structural failure (a fan-out over a skipped stage)
        assert second.result.get_output(stage) == e.output, stage
        if e.status in {None, StageStatus.SKIPPED} or (spec.fan_out and e.status is FAILED):
            assert rerun_calls == [], stage
        elif spec.fan_out:
            undone = [x for x in e.input if x not in done_items.get(i, set())]
            assert Counter(rerun_calls) == Counter(undone), stage
        else:
            reused = statuses[i] is StageStatus.SUCCEEDED and expected[i].input == e.input
            assert rerun_calls == ([] if reused else [e.input]), stage


def check_run(
    record: RunRecord, stages: list[Spec], expected: list[Expected], *, fail_fast: bool
) -> dict[int, StageStatus | None]:
    """The run against the model: dataflow, nothing left running, each stage's outcome
    (exactly the model's without fail-fast; else the model's, cancelled or not started),
    succeeded outputs. Returns each stage's status."""
    record.assert_no_task_left_running()
    check_dataflow(record, stages, fail_fast=fail_fast)
    result = record.result
    assert result.success == succeeds(expected, stages)
    statuses: dict[int, StageStatus | None] = {}
    for i, e in enumerate(expected):
        got = result.get_result(f"s{i}")
        statuses[i] = None if got is None else got.status
        if not fail_fast:
            assert statuses[i] is e.status, (i, got, e)
        else:
            assert statuses[i] in {e.status, StageStatus.CANCELLED, None}, (i, got, e)
        if statuses[i] is StageStatus.SUCCEEDED:
            assert result.outputs[f"s{i}"] == e.output
    return statuses


def check_cache(
    entries: list[CacheEntry],
    result: PipelineResult,
    stages: list[Spec],
    statuses: dict[int, StageStatus | None],
) -> None:
    """The cache holds exactly the successful stages, and fan-out items."""
    by_stage = Counter(entry.stage for entry in entries)
    for i, spec in enumerate(stages):
        stage = f"s{i}"
        if spec.fan_out:
            timing = result.timeline.get(stage)
            items = [] if timing is None else timing.items
            succeeded = sum(item.status is StageStatus.SUCCEEDED for item in items)
            assert by_stage[stage] == succeeded, stage
        else:
            assert by_stage[stage] == (statuses[i] is StageStatus.SUCCEEDED), stage


def succeeds(expected: list[Expected], stages: list[Spec]) -> bool:
    """Whether a run whose stages end as ``expected`` succeeds: no critical failure."""
    return all(
        e.status is not StageStatus.FAILED or not spec.critical
        for e, spec in zip(expected, stages, strict=True)
    )


def _succeeded_item_values(
    result: Any, stages: list[Spec], expected: list[Expected]
) -> dict[int, set[Any]]:
    """The item values each fan-out stage finished successfully in the first run."""
    done: dict[int, set[Any]] = {}
    for i, spec in enumerate(stages):
        timing = result.timeline.get(f"s{i}")
        if not spec.fan_out or timing is None or not isinstance(expected[i].input, list):
            continue
        values = expected[i].input
        done[i] = {values[t.index] for t in timing.items if t.status is StageStatus.SUCCEEDED}
    return done


# -- fault injection -------------------------------------------------------------------

#: A run that a test kills with SIGKILL in its middle, then reruns in a fresh process:
#: 200 fan-out items of 20 ms (real time), four at a time, cached in SQLite; each item
#: says when it is done; the run prints a JSON summary when it ends.
KILLABLE = textwrap.dedent(
    """
    import json, sys
    import trio
    from twinklr.core.pipeline import (
        ExecutionPattern, PipelineDefinition, PipelineExecutor, SQLiteCacheStore,
        StageDefinition, StageResult,
    )

    class Item:
        name = "item"
        def __init__(self):
            self.ran = 0
        async def execute(self, input, context):
            await trio.sleep(0.02)
            self.ran += 1
            print("done", input, flush=True)
            return StageResult.success({"item": input, "square": input * input})

    class Items:
        name = "items"
        async def execute(self, input, context):
            return StageResult.success(list(range(input)))

    class Total:
        name = "total"
        async def execute(self, input, context):
            return StageResult.success(sum(part["square"] for part in input))

    item = Item()
    pipeline = PipelineDefinition("killable", [
        StageDefinition("items", Items()),
        StageDefinition("each", item, inputs=["items"], pattern=ExecutionPattern.FAN_OUT,
                        max_concurrent_fan_out=4),
        StageDefinition("total", Total(), inputs=["each"]),
    ])
    executor = PipelineExecutor(cache=SQLiteCacheStore(sys.argv[1]))
    result = trio.run(executor.execute, pipeline, 200)
    print(json.dumps({
        "success": result.success,
        "total": result.outputs.get("total"),
        "ran": item.ran,
        "cached_items": result.stage_results["each"].metadata.get("cached_items"),
    }), flush=True)
    """
)


def test_a_run_killed_mid_way_loses_nothing_committed_and_serves_nothing_partial(
    tmp_path: Path,
) -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLABLE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert victim.stdout is not None
    done = 0
    deadline = time.monotonic() + 60
    while done < 100 and time.monotonic() < deadline:  # half of the items
        done += victim.stdout.readline().startswith("done")
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    assert done == 100

    committed = trio.run(_committed_items, tmp_path)
    assert 0 < len(committed) <= 104  # items finish four at a time; writes trail a little
    rerun = subprocess.run(
        [sys.executable, "-c", KILLABLE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    summary = json.loads(rerun.stdout.splitlines()[-1])
    assert summary["success"]
    assert summary["total"] == sum(i * i for i in range(200))  # as a clean run
    assert summary["cached_items"] == len(committed)  # everything committed is served
    assert summary["ran"] == 200 - len(committed)  # and only the rest runs


async def _committed_items(path: Path) -> dict[str, str]:
    store = SQLiteCacheStore(path)
    items = {e.key: e for e in await store.entries() if e.stage == "each"}
    with sqlite3.connect(store.path) as db:
        payloads = dict(db.execute("SELECT key, payload FROM entries").fetchall())
    for key in items:
        json.loads(payloads[key])  # every committed row is whole
    return {key: payloads[key] for key in items}


class Squares:
    name = "squares"

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[list[int]]:
        self.calls += 1
        await trio.sleep(1)
        base = input if isinstance(input, int) else input[0]
        return StageResult.success([base + 1] * 20_000)  # about 40 KB of JSON


def squares_chain(length: int) -> tuple[PipelineDefinition, list[Squares]]:
    stages = [Squares() for _ in range(length)]
    return PipelineDefinition(
        "squares",
        [
            StageDefinition(f"s{i}", stage, inputs=[f"s{i - 1}"] if i else [])
            for i, stage in enumerate(stages)
        ],
    ), stages


class LimitedStore(SQLiteCacheStore):
    """A real SQLite store whose file may not grow past ``max_pages`` pages (SQLite then
    fails writes with SQLITE_FULL, "database or disk is full"), or that refuses writes
    (``query_only``: a file that turned read-only after it was opened)."""

    def __init__(
        self, path: Path, *, max_pages: int | None = None, query_only: bool = False
    ) -> None:
        super().__init__(path)
        self.max_pages = max_pages
        self.query_only = query_only
        database = self._db
        opened = database._connect

        def connect() -> sqlite3.Connection:
            connection = opened()
            if self.max_pages is not None:
                connection.execute(f"PRAGMA max_page_count = {self.max_pages}")
            if self.query_only:
                connection.execute("PRAGMA query_only = ON")
            return connection

        database._connect = connect  # type: ignore[method-assign]


@pytest.mark.parametrize(
    ("store_settings", "error"),
    [
        ({"max_pages": 8}, "database or disk is full"),  # 32 KB: the schema, no output
        ({"query_only": True}, "attempt to write a readonly database"),
    ],
    ids=["disk-full", "read-only"],
)
async def test_a_cache_that_cannot_be_written_lets_the_run_go_on_uncached(
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    store_settings: dict[str, Any],
    error: str,
) -> None:
    pipeline, stages = squares_chain(5)
    executor = PipelineExecutor(cache=LimitedStore(tmp_path, **store_settings))
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        first = await executor.execute(pipeline, 3)
        second = await executor.execute(pipeline, 3)
    assert first.success
    assert second.success
    assert first.outputs == second.outputs
    assert second.uncached_stages == ("s0", "s1", "s2", "s3", "s4")
    assert len(said) == 2  # once a run
    assert f"the cache could not be written (OperationalError: {error})" in said[0]
    assert first.total_duration_ms == 5000  # no stage waited for the failing writes
    assert [stage.calls for stage in stages] == [2] * 5  # nothing was cached
    warnings = [log for log in logs if log["event"] == "cache_write_failed"]
    assert len(warnings) == 2  # once per run
    assert error in warnings[0]["error"]


async def test_a_disk_that_fills_mid_run_keeps_what_was_committed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    pipeline, stages = squares_chain(6)
    store = LimitedStore(tmp_path, max_pages=40)  # 160 KB: room for some outputs, not all
    executor = PipelineExecutor(cache=store)
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        first = await executor.execute(pipeline, 3)
    assert first.success
    assert any(log["event"] == "cache_write_failed" for log in logs)
    kept = {entry.stage for entry in await store.entries()}
    assert len(said) == 1
    assert set(first.uncached_stages) == {f"s{n}" for n in range(6)} - kept
    assert 0 < len(kept) < 6
    with cache_warnings():  # (still full: what it reran is not saved either)
        second = await executor.execute(pipeline, 3)
    assert second.outputs == first.outputs
    assert set(second.cached_stages) == kept
    assert sum(stage.calls == 1 for stage in stages) == len(kept)


async def test_corrupted_rows_are_misses_that_get_rewritten(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    pipeline, stages = squares_chain(3)
    store = SQLiteCacheStore(tmp_path)
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(pipeline, 2)
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE entries SET payload = '{\"output\": [1, 2' WHERE stage = 's1'")
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        second = await executor.execute(pipeline, 2)
    assert "a cached output of stage 's1' could not be read" in said[0]
    assert second.outputs == first.outputs
    assert second.cached_stages == ("s0", "s2")
    assert [stage.calls for stage in stages] == [1, 2, 1]
    assert any(log["event"] == "cache_entry_unreadable" for log in logs)
    third = await executor.execute(pipeline, 2)
    assert third.cached_stages == ("s0", "s1", "s2")  # the bad row was replaced


# -- load --------------------------------------------------------------------------------


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Warnings only, as a service would log (debug lines for 20,000 stages are slow)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    yield
    structlog.reset_defaults()


@pytest.mark.usefixtures("quiet_logs")
def test_a_thousand_concurrent_runs_share_one_limiter_and_one_cache() -> None:
    log = LimiterLog()
    pipeline = load_pipeline(log)
    store = MemoryCacheStore()
    limiter = RateLimiter(requests_per_minute=1200)  # 2,000 requests: two windows' worth

    async def main() -> tuple[list[PipelineResult], float]:
        with trio.fail_after(600):  # virtual: a deadlock fails here, it does not hang
            results = await run_batch(1000, pipeline=pipeline, store=store, limiter=limiter)
        return results, trio.current_time()

    clock = trio.testing.MockClock(autojump_threshold=0)
    results, ended = trio.run(main, clock=clock)
    assert all(result.success for result in results)
    for value, result in enumerate(results):  # no output lost or crossed between runs
        assert result.outputs == reference_outputs(value)
    # Fairness: the limiter let requests in in the order they asked, whichever run they
    # came from; 1,200 went in at once, the other 800 a window (60 s) later.
    admitted = [log.admitted_at[ticket] for ticket in log.asked]
    assert len(admitted) == 2000
    assert admitted == sorted(admitted)
    assert admitted.count(admitted[0]) == 1000  # every run's first call, at once
    statistics = limiter.statistics()
    assert statistics.admitted == 2000
    assert statistics.max_wait_s <= 60
    # The last runs: their second call asked at 0.10 s, waited for the window to let the
    # first calls (admitted at 0.04 s) out at 60.04 s, then 100 ms of their own path.
    assert ended == pytest.approx(60.14)
    assert min(result.total_duration_ms for result in results) == 200  # unhindered
    entries = trio.run(store.entries)  # the cache holds every stage of every run
    assert len(entries) == 1000 * 20


@pytest.mark.usefixtures("quiet_logs")
def test_memory_returns_to_its_baseline_after_batches_of_runs() -> None:
    pipeline = load_pipeline()

    def batch() -> None:
        limiter = RateLimiter(requests_per_minute=100_000)
        results = trio.run(
            lambda: run_batch(50, pipeline=pipeline, store=MemoryCacheStore(), limiter=limiter),
            clock=trio.testing.MockClock(autojump_threshold=0),
        )
        assert all(result.success for result in results)

    batch()  # warm-up: imports, the plan
    gc.collect()
    tracemalloc.start()  # before the batches: what they leave behind is all counted
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        batch()
        gc.collect()
        after_one = tracemalloc.get_traced_memory()[0]
        for _ in range(3):
            batch()
            gc.collect()
        after_four = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # Nothing run-sized stays (what does is interpreter caches warmed by the first
    # batch); later batches add nothing.
    assert after_one - baseline < 32 * 1024
    assert after_four - after_one < 1024, f"{after_four - after_one} bytes more after 150 runs"


# -- shapes an adversarial pass tried: they hold, and stay held (bounded to seconds) ----


async def _increment(value: int) -> int:
    return value + 1


def test_a_100000_stage_chain_runs_without_recursion() -> None:
    from twinklr.core.pipeline import (  # noqa: PLC0415 (this section's own names)
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
    )

    count = 100_000
    stages = [StageDefinition("s0", _increment)]
    stages += [StageDefinition(f"s{n}", _increment, inputs=[f"s{n - 1}"]) for n in range(1, count)]
    result = trio.run(PipelineExecutor().execute, PipelineDefinition("chain", stages), 0)
    assert result.success
    assert result.outputs[f"s{count - 1}"] == count


def test_a_50000_item_fan_out_runs_every_item_once() -> None:
    from twinklr.core.pipeline import (  # noqa: PLC0415
        ExecutionPattern,
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
    )

    async def items(count: int) -> list[int]:
        return list(range(count))

    pipeline = PipelineDefinition(
        "wide",
        [
            StageDefinition("items", items),
            StageDefinition("each", _increment, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
        ],
    )
    result = trio.run(PipelineExecutor().execute, pipeline, 50_000)
    assert result.outputs["each"] == list(range(1, 50_001))


def test_sub_pipelines_50_deep_run_and_fail_cleanly() -> None:
    from twinklr.core.pipeline import (  # noqa: PLC0415
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
        SubPipelineStage,
    )

    async def fails(value: int) -> int:
        raise ValueError("the innermost stage fails")

    def nest(depth: int, innermost: Any) -> PipelineDefinition:
        pipeline = PipelineDefinition("level-0", [StageDefinition("work", innermost)])
        for level in range(1, depth):
            inner = SubPipelineStage(pipeline)
            pipeline = PipelineDefinition(f"level-{level}", [StageDefinition("inner", inner)])
        return pipeline

    result = trio.run(PipelineExecutor().execute, nest(50, _increment), 1)
    value: Any = result.outputs["inner"]
    for _ in range(48):
        value = value["inner"]
    assert value == {"work": 2}
    failed = trio.run(PipelineExecutor().execute, nest(50, fails), 1)
    assert not failed.success
    assert "the innermost stage fails" in str(failed.error)


FOUR = textwrap.dedent(
    """
    import sys, trio
    from twinklr.core.pipeline import (
        ExecutionPattern, PipelineDefinition, PipelineExecutor, SQLiteCacheStore,
        StageDefinition,
    )

    async def items(count):
        return list(range(count))

    async def square(item):
        return item * item

    pipeline = PipelineDefinition("shared", [
        StageDefinition("items", items),
        StageDefinition("sq", square, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
    ])
    store = SQLiteCacheStore(sys.argv[1])
    for count in range(int(sys.argv[2]), int(sys.argv[2]) + 20):
        result = trio.run(PipelineExecutor(cache=store).execute, pipeline, count)
        assert result.outputs["sq"] == [i * i for i in range(count)], result.error
    print("ok")
    """
)


def test_four_processes_running_pipelines_on_one_sqlite_file(tmp_path: Path) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", FOUR, str(tmp_path), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for start in (10, 15, 20, 25)  # overlapping inputs: shared item entries
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        assert out.strip() == "ok"
    with sqlite3.connect(tmp_path / "twinklr-cache.sqlite3") as db:
        (items,) = db.execute("SELECT count(*) FROM entries WHERE stage = 'sq'").fetchone()
        (runs,) = db.execute("SELECT count(*) FROM entries WHERE stage = 'items'").fetchone()
    assert items == 44  # one entry per distinct item input (0..43), whoever wrote it
    assert runs == 35  # one per distinct count (10..44)
