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

import json
import zlib
from collections import Counter
from typing import Any

import attrs
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinklr.core.pipeline import (
    CacheEntry,
    EventKind,
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
)
from twinklr.core.pipeline._events import TERMINAL_KINDS
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
