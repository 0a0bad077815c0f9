"""Following a run from the command: one plain line per transition worth seeing."""

from __future__ import annotations

import io

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)
from twinklr.core.pipeline.cli import Progress, execute_with_progress


async def test_a_run_reads_as_timed_lines(autojump_clock: trio.testing.MockClock) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub([1, 2], delay=0.1)),
            StageDefinition(
                "b",
                stub(lambda x: x * 2, delay=0.2),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["a"],
            ),
            StageDefinition(
                "c", stub(delay=0.1, fail_times=1), inputs=["b"], retry_config=RetryConfig(2, 50)
            ),
            StageDefinition(
                "d",
                stub(),
                inputs=["c"],
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda _context: False,
            ),
        ],
    )
    out = io.StringIO()
    result = await execute_with_progress(
        PipelineExecutor(), pipeline, None, None, Progress(out, quiet=False)
    )
    assert result is not None
    assert result.success
    assert trio.current_time() == 0.55  # the display does not hold the run up
    assert out.getvalue().splitlines() == [
        "[      0.0 ms] a: started",
        "[    100.0 ms] a: done",
        "[    100.0 ms] b: started",
        "[    300.0 ms] b: 1/2 items",
        "[    300.0 ms] b: 2/2 items",
        "[    300.0 ms] b: done",
        "[    300.0 ms] c: started",
        "[    400.0 ms] c: retrying (attempt 1: boom; next in 50 ms)",
        "[    550.0 ms] c: done",
        "[    550.0 ms] d: started",
        "[    550.0 ms] d: skipped",
    ]


async def test_quiet_prints_nothing_but_knows_what_was_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("fails", stub(delay=1, fail_times=1)),
            StageDefinition("slow", stub(delay=5)),
        ],
    )
    out = io.StringIO()
    progress = Progress(out, quiet=True)
    result = await execute_with_progress(PipelineExecutor(), pipeline, None, None, progress)
    assert result is not None
    assert not result.success
    assert result.error == "stage 'fails' failed: boom"
    assert list(progress.cancelled) == ["slow"]
    assert progress.running == {}
    assert out.getvalue() == ""


async def test_a_failed_item_is_not_counted_as_done(autojump_clock: trio.testing.MockClock) -> None:
    async def items(_value: object) -> list[int]:
        return [0, 1, 2]

    async def work(item: int) -> int:
        await trio.sleep(item)
        if item == 1:
            raise ValueError("item one is cursed")
        return item

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", items),
            StageDefinition("work", work, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
        ],
    )
    out = io.StringIO()
    await execute_with_progress(
        PipelineExecutor(), pipeline, None, None, Progress(out, quiet=False)
    )
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert "work: 1/3 items" in lines
    assert "work: 1/3 items (item 1 failed: ValueError: item one is cursed)" in lines
    assert not any("3/3" in line or "2/3" in line for line in lines)


async def test_the_gates_of_a_run_are_answered_by_ask(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from twinklr.core.pipeline import WaitForInput  # noqa: PLC0415

    asked: list[tuple[str, object]] = []

    def ask(request: object) -> object:
        asked.append((request.prompt, request.input))  # type: ignore[attr-defined]
        return "yes"

    pipeline = PipelineDefinition(
        "gated",
        [
            StageDefinition("plan", stub("the plan", delay=1)),
            StageDefinition("approve", WaitForInput("Go?"), inputs=["plan"]),
        ],
    )
    out = io.StringIO()
    result = await execute_with_progress(
        PipelineExecutor(), pipeline, None, None, Progress(out, quiet=False), ask=ask
    )
    assert result is not None
    assert result.outputs["approve"] == "yes"
    assert asked == [("Go?", "the plan")]
    assert "approve: waiting for input" in out.getvalue()
    assert "approve: answered" in out.getvalue()
