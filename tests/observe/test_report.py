"""The text report of a run: its table, critical path and LLM spend, fitted to a
terminal's width when one is given."""

from __future__ import annotations

import trio
import trio.testing

from twinklr.core.pipeline import (
    PipelineResult,
    StageResult,
    critical_path,
    timeline_report,
    to_chrome_trace,
)
from twinklr.core.pipeline.example_usage import run_demo


async def demo(autojump_clock: trio.testing.MockClock) -> PipelineResult:
    return await run_demo("Carol of the Bells")


async def test_the_report_names_the_critical_path_and_its_shares(
    autojump_clock: trio.testing.MockClock,
) -> None:
    report = timeline_report(await demo(autojump_clock))
    assert "succeeded in 280.0 ms" in report
    assert "groups" in report
    assert "(6 items)" in report
    *_, path, spent = report.splitlines()
    assert path == (
        "critical path (280.0 ms): audio 50.0 ms (18%) -> profile 40.0 ms (14%) -> "
        "macro 120.0 ms (43%) -> group_contexts 0.0 ms (0%) -> groups 40.0 ms (14%) -> "
        "render 30.0 ms (11%)"
    )
    # the demo's fake model is priced: each stage's tokens and cost, then the run's
    assert report.splitlines()[1].endswith("cached   tokens     cost $")
    assert spent.startswith("LLM calls: 11, ")
    assert spent.endswith(" out, cost $0.000058")


def test_a_hand_made_result_has_no_critical_path() -> None:
    result = PipelineResult(
        pipeline_name="p",
        run_id="r",
        success=False,
        outputs={},
        stage_results={"a": StageResult.failure("x")},
    )
    assert critical_path(result) == ()
    assert "FAILED" in timeline_report(result)
    assert to_chrome_trace(result)["traceEvents"][0]["ph"] == "M"


async def test_the_report_lists_stages_that_never_started(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from twinklr.core.pipeline import (  # noqa: PLC0415 (this test's own names)
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
    )

    async def fails(_value: object) -> int:
        raise ValueError("broken")

    async def after(value: int) -> int:
        return value

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("first", fails),
            StageDefinition("second", after, inputs=["first"]),
            StageDefinition("third", after, inputs=["second"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, 0)
    rows = {line.split()[0]: line for line in timeline_report(result).splitlines()[2:]}
    assert rows["second"].split()[1:3] == ["not", "started"]
    assert rows["third"].split()[1:3] == ["not", "started"]
    assert rows["first"].split()[1] == "failed"


async def test_fitted_to_a_terminal_every_line_fits_and_the_end_and_time_taken_stay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await demo(autojump_clock)
    whole = timeline_report(result)
    assert max(len(line) for line in whole.splitlines()) > 100
    for width in (60, 80, 100, 140):
        report = timeline_report(result, width=width)
        assert max(len(line) for line in report.splitlines()) <= width, report
        header = next(line for line in report.splitlines() if line.startswith("stage ")).split()
        assert "end" in header
        assert "took" in header
    narrow = timeline_report(result, width=60).splitlines()
    # (after the summary, wrapped) the columns that fit, the ids only as wide as needed
    assert narrow[2].split() == ["stage", "status", "start", "end", "took", "tries"]
    assert any(line.startswith("group_contexts succeeded") for line in narrow)
    assert narrow[-1].startswith("  ")  # the LLM line, wrapped
    wide = timeline_report(result, width=140)
    assert wide.splitlines()[1].split()[-3:] == ["tokens", "cost", "$"]  # all there when it fits
    assert "(6 items)" in wide


async def test_a_long_stage_id_is_cut_with_an_ellipsis_only_when_fitted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from twinklr.core.pipeline import (  # noqa: PLC0415
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
    )

    async def step(value: int) -> int:
        return value

    name = "render_every_display_group_of_the_show"
    result = await PipelineExecutor().execute(
        PipelineDefinition("p", [StageDefinition(name, step)]), 1
    )
    assert timeline_report(result).splitlines()[2].startswith(name[:20] + "succeeded")
    fitted = timeline_report(result, width=80).splitlines()
    assert any(line.startswith(name[:19] + "… succeeded") for line in fitted), fitted
