"""Run exports: Chrome trace JSON, Mermaid gantt."""

from __future__ import annotations

import itertools
import json

import trio
import trio.testing

from twinklr.core.pipeline import (
    PipelineResult,
    critical_path,
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
