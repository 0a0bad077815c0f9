"""Run exports: Chrome trace JSON, Mermaid gantt, the text report."""

from __future__ import annotations

import itertools
import json

import trio
import trio.testing

from twinklr.core.pipeline import (
    PipelineResult,
    StageResult,
    critical_path,
    timeline_report,
    to_chrome_trace,
    to_mermaid_gantt,
)
from twinklr.core.pipeline.example_usage import run_demo


async def demo(autojump_clock: trio.testing.MockClock) -> PipelineResult:
    return await run_demo("Carol of the Bells")


async def test_the_trace_has_a_complete_event_per_stage_and_nested_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await demo(autojump_clock)
    trace = json.loads(json.dumps(to_chrome_trace(result)))
    events = trace["traceEvents"]
    stages = {e["name"]: e for e in events if e["ph"] == "X" and "[" not in e["name"]}
    assert set(stages) == set(result.timeline)
    macro = stages["macro"]
    assert (macro["ts"], macro["dur"]) == (90_000, 120_000)
    assert macro["args"]["attempts"] == 2
    assert macro["args"]["retry_ms"] == 20
    items = [e for e in events if e["ph"] == "X" and e["name"].startswith("groups[")]
    assert sorted(e["args"]["item"] for e in items) == list(range(6))
    groups = stages["groups"]
    for item in items:  # inside the stage's span, on tracks of their own
        assert groups["ts"] <= item["ts"]
        assert item["ts"] + item["dur"] <= groups["ts"] + groups["dur"]
        assert item["tid"] != groups["tid"]
    by_track: dict[int, list[tuple[float, float]]] = {}
    for item in items:
        by_track.setdefault(item["tid"], []).append((item["ts"], item["ts"] + item["dur"]))
    for spans in by_track.values():  # no overlap within a track
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert {"audio", "groups", "groups items (1)"} <= names
    assert trace["otherData"]["total_duration_ms"] == 280


async def test_the_gantt_chart_marks_the_critical_path(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await demo(autojump_clock)
    gantt = to_mermaid_gantt(result)
    lines = gantt.splitlines()
    assert lines[:4] == [
        "gantt",
        f"    title twinklr_sequencer run {result.run_id} (280 ms)",
        "    dateFormat x",
        "    axisFormat %S.%L",
    ]
    assert "    macro (succeeded) :crit, done, s3, 90, 210" in lines
    assert "    lyrics (succeeded) :done, s1, 50, 70" in lines
    assert [s.stage for s in critical_path(result)] == [
        "audio", "profile", "macro", "group_contexts", "groups", "render"
    ]  # fmt: skip


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
