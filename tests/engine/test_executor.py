"""The supervisor: dataflow timing, fail-fast, cancellation, results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import structlog
import structlog.testing
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import RandomDag, Stub, const, random_dags, random_pipeline, run_virtual, stub
from twinklr.core.pipeline import (
    EventKind,
    PipelineContext,
    PipelineDefinition,
    PipelineEvent,
    PipelineExecutor,
    PipelineValidationError,
    StageDefinition,
    StageResult,
    StageStatus,
    StageTimeoutError,
    run_pipeline,
)
from twinklr.core.pipeline.definition import RetryConfig


def chain(
    *stages: StageDefinition[Any], name: str = "p", fail_fast: bool = True
) -> PipelineDefinition:
    return PipelineDefinition(name, list(stages), fail_fast=fail_fast)


async def test_stages_start_when_their_own_inputs_are_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a(1) -> b(2) -> d(1) ; a -> c(5) ; (c, d) -> e(1).  d must not wait for c.
    stages = {k: stub(k, delay=d) for k, d in {"a": 1, "b": 2, "c": 5, "d": 1, "e": 1}.items()}
    pipeline = chain(
        StageDefinition("a", stages["a"]),
        StageDefinition("b", stages["b"], inputs=["a"]),
        StageDefinition("c", stages["c"], inputs=["a"]),
        StageDefinition("d", stages["d"], inputs=["b"]),
        StageDefinition("e", stages["e"], inputs=["c", "d"]),
    )
    result = await PipelineExecutor().execute(pipeline, "song")
    assert result.success
    starts = {k: s.calls[0][0] for k, s in stages.items()}
    assert starts == {"a": 0, "b": 1, "c": 1, "d": 3, "e": 6}
    assert result.total_duration_ms == 7000
    assert result.timeline["d"].queued_ms == 3000
    assert result.timeline["e"].started_ms == 6000
    assert result.timeline["e"].finished_ms == 7000
    assert result.timeline["c"].duration_ms == 5000


async def test_inputs_are_initial_single_or_dict() -> None:
    a = stub(lambda x: f"a({x})")
    b = stub(lambda x: f"b({x})")
    c = stub(lambda x: x)
    pipeline = chain(
        StageDefinition("a", a),
        StageDefinition("b", b, inputs=["a"]),
        StageDefinition("c", c, inputs=["b", "a"]),
    )
    result = await PipelineExecutor().execute(pipeline, "in", PipelineContext())
    assert a.calls[0][1] == "in"
    assert b.calls[0][1] == "a(in)"
    assert c.calls[0][1] == {"b": "b(a(in))", "a": "a(in)"}
    assert result.outputs == {"a": "a(in)", "b": "b(a(in))", "c": {"b": "b(a(in))", "a": "a(in)"}}
    assert result.get_output("b") == "b(a(in))"
    assert result.get_output("nope", "default") == "default"
    result_b = result.get_result("b")
    assert result_b is not None
    assert result_b.metadata["attempts"] == 1
    assert result.get_result("nope") is None


async def test_critical_failure_cancels_everything_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow, after_slow, after_fail = stub(delay=10), stub(delay=1), stub()
    failing = stub(delay=2, fail_times=1, error="render exploded")
    pipeline = chain(
        StageDefinition("a", stub(const("A"), delay=1)),
        StageDefinition("slow", slow, inputs=["a"]),
        StageDefinition("fail", failing, inputs=["a"]),
        StageDefinition("after_slow", after_slow, inputs=["slow"]),
        StageDefinition("after_fail", after_fail, inputs=["fail"]),
    )
    result = await PipelineExecutor().execute(pipeline)
    assert not result.success
    assert result.failed_stages == ("fail",)
    assert result.cancelled_stages == ("slow",)
    assert set(result.not_started_stages) == {"after_slow", "after_fail"}
    assert slow.cancelled == [3]  # cancelled the instant "fail" failed, not at t=11
    assert result.total_duration_ms == 3000
    assert result.outputs == {"a": "A"}
    assert result.error == "stage 'fail' failed: render exploded"
    cancelled = result.stage_results["slow"]
    assert cancelled.status is StageStatus.CANCELLED
    assert cancelled.error is not None
    assert "render exploded" in cancelled.error
    assert not after_slow.calls
    assert not after_fail.calls


async def test_non_critical_failure_passes_none_downstream() -> None:
    downstream = stub(lambda x: x)
    pipeline = chain(
        StageDefinition("a", stub("A")),
        StageDefinition("opt", stub(fail_times=1), inputs=["a"], critical=False),
        StageDefinition("b", downstream, inputs=["a", "opt"]),
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.success
    assert result.failed_stages == ("opt",)
    assert downstream.calls[0][1] == {"a": "A", "opt": None}
    assert "opt" not in result.outputs
    assert result.error is None


async def test_without_fail_fast_independent_branches_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow, after_fail = stub("S", delay=10), stub()
    pipeline = chain(
        StageDefinition("a", stub()),
        StageDefinition("slow", slow, inputs=["a"]),
        StageDefinition("fail", stub(delay=1, fail_times=1), inputs=["a"]),
        StageDefinition("after_fail", after_fail, inputs=["fail"]),
        fail_fast=False,
    )
    result = await PipelineExecutor().execute(pipeline)
    assert not result.success
    assert result.outputs["slow"] == "S"
    assert result.not_started_stages == ("after_fail",)
    assert result.total_duration_ms == 10000


async def test_outer_cancellation_cancels_every_stage_and_propagates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    left, right, after = stub(delay=5), stub(delay=7), stub()
    pipeline = chain(
        StageDefinition("a", stub()),
        StageDefinition("left", left, inputs=["a"]),
        StageDefinition("right", right, inputs=["a"]),
        StageDefinition("after", after, inputs=["left", "right"]),
    )
    with trio.move_on_after(2) as scope:
        await PipelineExecutor().execute(pipeline)
    assert scope.cancelled_caught
    assert left.cancelled == [2]
    assert right.cancelled == [2]
    await trio.sleep(100)  # nothing was left running to call "after" later
    assert not after.calls
    assert not left.finished


@pytest.mark.parametrize(
    ("behaviour", "message", "name"),
    [
        # an exception carries no name: the executor fills in the stage id
        (stub(fail_times=1, raises=RuntimeError, error="kaput"), "RuntimeError: kaput", "x"),
        # a failure result keeps the name the stage gave it
        (stub(fail_times=1, error="said no"), "said no", "stub"),
    ],
)
async def test_errors_are_results(behaviour: Stub, message: str, name: str) -> None:
    result = await PipelineExecutor().execute(chain(StageDefinition("x", behaviour)))
    assert not result.success
    failed = result.stage_results["x"]
    assert failed.status is StageStatus.FAILED
    assert not failed.success
    assert failed.error == message
    assert failed.stage_name == name


class ReturnsPlain:
    name = "plain"

    async def execute(self, input: Any, context: PipelineContext) -> Any:
        return 42


async def test_a_wrong_return_type_fails_naming_the_stage_and_value() -> None:
    result = await PipelineExecutor().execute(chain(StageDefinition("x", ReturnsPlain())))
    assert result.error == "stage 'x' failed: stage 'x' returned int 42, expected a StageResult"
    assert isinstance(result.stage_results["x"].exception, TypeError)


async def test_timeout_fails_the_attempt_at_the_exact_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow = stub(delay=3)
    result = await PipelineExecutor().execute(chain(StageDefinition("x", slow, timeout_ms=1500)))
    failed = result.stage_results["x"]
    assert isinstance(failed.exception, StageTimeoutError)
    assert failed.error == "stage 'x' timed out after 1500 ms (timeout)"
    assert slow.cancelled == [1.5]
    assert result.total_duration_ms == 1500


async def test_an_invalid_definition_raises_before_any_stage_runs() -> None:
    first = stub()
    pipeline = chain(StageDefinition("a", first), StageDefinition("b", stub(), inputs=["zz"]))
    with pytest.raises(PipelineValidationError, match="unknown stage 'zz'"):
        await PipelineExecutor().execute(pipeline)
    assert not first.calls


def test_run_pipeline_runs_from_sync_code() -> None:
    pipeline = chain(StageDefinition("a", stub(lambda x: x * 2)))
    result = run_pipeline(pipeline, 21)
    assert result.outputs == {"a": 42}


async def test_context_metrics_and_snapshot_are_in_the_result() -> None:
    class Counting:
        name = "counting"

        async def execute(self, input: Any, context: PipelineContext) -> StageResult[int]:
            context.increment_metric("calls")
            context.set_state("seen", input)
            return StageResult.success(1)

    context = PipelineContext()
    result = await PipelineExecutor().execute(chain(StageDefinition("a", Counting())), 7, context)
    assert result.metrics == {"calls": 1}
    assert result.context is not None
    assert result.context.state == {"seen": 7}
    context.set_state("seen", 8)  # the snapshot is frozen
    assert result.context.state == {"seen": 7}


# -- random DAGs ----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(random_dags())
def test_random_dags_run_in_dataflow_order(
    dag: RandomDag,
) -> None:
    deps, _, failing = dag
    pipeline, stubs = random_pipeline(dag)
    result = run_virtual(pipeline)
    finish = {i: s.finished[0] for i, s in enumerate(stubs) if s.finished}
    for i, s in enumerate(stubs):
        assert len(s.calls) <= 1, "a stage ran twice"
        if s.calls:
            started = s.calls[0][0]
            assert all(d in finish for d in deps[i]), "started before an input finished"
            assert started == max((finish[d] for d in deps[i]), default=0), "waited needlessly"
        # no stage is left running: each started stage finished or was cancelled
        assert not s.calls or s.finished or s.cancelled
    if failing is None:
        assert result.success
        assert result.outputs == {str(i): i for i in range(len(deps))}
        assert result.total_duration_ms == 1000 * max(finish.values())
    else:
        failed_at = stubs[failing].finished[0]
        assert not result.success
        assert result.failed_stages == (str(failing),)
        assert all(s.calls[0][0] <= failed_at for s in stubs if s.calls)
        assert all(s.cancelled == [failed_at] for s in stubs if s.calls and not s.finished)
        assert set(result.cancelled_stages) == {str(i) for i, s in enumerate(stubs) if s.cancelled}


KINDS = ("ok", "non_critical_failure", "skipped")


@st.composite
def random_mixed_dags(draw: st.DrawFn) -> tuple[list[list[int]], list[int], list[str], list[int]]:
    deps, durations, _ = draw(random_dags())
    kinds = [draw(st.sampled_from(KINDS)) for _ in deps]
    order = draw(st.permutations(range(len(deps))))
    return deps, durations, kinds, list(order)


@settings(max_examples=60, deadline=None)
@given(random_mixed_dags())
def test_random_dags_pass_none_for_skipped_and_non_critical_stages(
    dag: tuple[list[list[int]], list[int], list[str], list[int]],
) -> None:
    deps, durations, kinds, order = dag
    stubs = [
        Stub(output=i, delay=durations[i], fail_times=int(kinds[i] == "non_critical_failure"))
        for i in range(len(deps))
    ]
    definitions = {
        i: StageDefinition(
            str(i),
            stubs[i],
            inputs=[str(d) for d in deps[i]],
            critical=kinds[i] != "non_critical_failure",
            condition=(lambda _ctx: False) if kinds[i] == "skipped" else None,
        )
        for i in range(len(deps))
    }
    result = run_virtual(PipelineDefinition("mixed", [definitions[i] for i in order]))
    assert result.success
    produced = {i: i if kinds[i] == "ok" else None for i in range(len(deps))}
    for i, s in enumerate(stubs):
        if kinds[i] == "skipped":
            assert not s.calls
            continue
        assert len(s.calls) == 1
        expected: object = None
        if len(deps[i]) == 1:
            expected = produced[deps[i][0]]
        elif deps[i]:
            expected = {str(d): produced[d] for d in deps[i]}
        assert s.calls[0][1] == expected
    assert set(result.skipped_stages) == {str(i) for i, k in enumerate(kinds) if k == "skipped"}
    assert set(result.failed_stages) == {
        str(i) for i, k in enumerate(kinds) if k == "non_critical_failure"
    }
    assert result.outputs == {str(i): produced[i] for i, k in enumerate(kinds) if k != KINDS[1]}


async def test_transitions_are_logged_with_bound_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = chain(
        StageDefinition(
            "flaky",
            stub(fail_times=1, error="rate_limit"),
            retry_config=RetryConfig(max_attempts=2, initial_delay_ms=10),
        ),
        StageDefinition("bad", stub(fail_times=1, error="nope"), inputs=["flaky"]),
        name="logged",
    )
    with structlog.testing.capture_logs() as logs:
        result = await PipelineExecutor().execute(pipeline)
    events = [(log["event"], log.get("stage"), log["log_level"]) for log in logs]
    assert events == [
        ("run_started", None, "info"),
        ("stage_queued", "flaky", "debug"),
        ("stage_started", "flaky", "debug"),
        ("attempt_failed", "flaky", "info"),
        ("stage_retrying", "flaky", "info"),
        ("stage_succeeded", "flaky", "debug"),
        ("stage_queued", "bad", "debug"),
        ("stage_started", "bad", "debug"),
        ("stage_failed", "bad", "warning"),
        ("run_finished", None, "info"),
    ]
    assert all(log["pipeline"] == "logged" and log["run_id"] == result.run_id for log in logs)
    retry = logs[4]
    assert (retry["attempt"], retry["delay_ms"], retry["error"]) == (1, 10, "rate_limit")
    assert logs[5]["attempt"] == 2
    assert logs[-1]["success"] is False


class Interrupts:
    name = "interrupts"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        raise KeyboardInterrupt


async def test_keyboard_interrupt_reaches_the_caller_as_itself() -> None:
    pipeline = chain(StageDefinition("a", Interrupts()))
    with pytest.raises(KeyboardInterrupt):
        await PipelineExecutor().execute(pipeline)


def test_keyboard_interrupt_from_run_pipeline() -> None:
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(chain(StageDefinition("a", Interrupts())))


async def test_execute_refuses_what_is_not_a_definition() -> None:
    with pytest.raises(TypeError, match="execute\\(\\) needs a PipelineDefinition, got list"):
        await PipelineExecutor().execute([StageDefinition("a", stub())])  # type: ignore[arg-type]


async def test_a_failure_log_names_the_stage_and_last_attempt() -> None:
    pipeline = chain(StageDefinition("x", stub(fail_times=1, error="nope")), name="one")
    with structlog.testing.capture_logs() as logs:
        await PipelineExecutor().execute(pipeline)
    failed = next(log for log in logs if log["event"] == "stage_failed")
    assert failed["stage"] == "x"
    assert failed["attempt"] == 1
    assert failed["error"] == "nope"
    assert failed["log_level"] == "warning"


async def test_without_fail_fast_the_first_critical_failure_is_the_error() -> None:
    pipeline = chain(
        StageDefinition("a", stub(fail_times=1, error="first")),
        StageDefinition("b", stub(fail_times=1, error="second")),
        fail_fast=False,
    )
    result = await PipelineExecutor().execute(pipeline)
    assert set(result.failed_stages) == {"a", "b"}
    assert result.error in {"stage 'a' failed: first", "stage 'b' failed: second"}
    assert result.error == f"stage '{result.failed_stages[0]}' failed: " + (
        "first" if result.failed_stages[0] == "a" else "second"
    )
    assert "Timeline(" in repr(result.timeline)


class SoftFails:
    name = "judge"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        return StageResult.soft_failure("best so far", "iteration ceiling reached")


async def test_a_soft_failure_hands_its_output_on_and_the_run_goes_on() -> None:
    downstream = stub(lambda x: x)
    pipeline = chain(
        StageDefinition("plan", SoftFails()),
        StageDefinition("render", downstream, inputs=["plan"]),
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.success
    assert result.soft_failed_stages == ("plan",)
    assert result.failed_stages == ()
    assert downstream.calls[0][1] == "best so far"
    assert result.stage_results["plan"].status is StageStatus.SOFT_FAILED
    assert result.stage_results["plan"].error == "iteration ceiling reached"


async def test_siblings_queued_with_a_failing_stage_never_start_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 49 siblings become ready at the same instant as one that fails at once. Whatever
    # order Trio runs their tasks in (it shuffles them), none starts (runs its code)
    # after the failure: those queued behind it never start at all.
    siblings = [stub(n, delay=1.0) for n in range(49)]
    stages = [StageDefinition("root", stub(0))]
    stages += [StageDefinition(f"s{n}", s, inputs=["root"]) for n, s in enumerate(siblings[:24])]
    stages.append(StageDefinition("bad", stub(fail_times=1), inputs=["root"]))
    stages += [
        StageDefinition(f"s{n + 24}", s, inputs=["root"]) for n, s in enumerate(siblings[24:])
    ]
    send, receive = trio.open_memory_channel[PipelineEvent](math.inf)
    result = await PipelineExecutor().execute(PipelineDefinition("p", stages), events=send)
    events = [receive.receive_nowait() for _ in range(receive.statistics().current_buffer_used)]
    failed_at = next(i for i, e in enumerate(events) if e.kind is EventKind.STAGE_FAILED)
    assert not [e for e in events[failed_at:] if e.kind is EventKind.STAGE_STARTED]
    started = [s for s in siblings if s.calls]
    assert all(s.cancelled == [0.0] for s in started)
    assert len(result.not_started_stages) == 49 - len(started)


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        (".twinklr", "cache=SQLiteCacheStore('.twinklr')"),
        (Path("cache"), "cache=SQLiteCacheStore(PosixPath('cache'))"),
        ({}, "got dict {}"),
    ],
)
def test_a_cache_that_is_not_a_store_is_refused(given: object, hint: str) -> None:
    with pytest.raises(TypeError, match="cache must be a cache store") as raised:
        PipelineExecutor(cache=given)  # type: ignore[arg-type]
    assert hint in str(raised.value)
