"""The Twinklr sequencer demo: every pattern, deterministic, exact on the virtual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
import trio
import trio.testing

from twinklr.core.pipeline import StageStatus
from twinklr.core.pipeline.example_usage import (
    build_pipeline,
    main,
    run_demo,
    summarize,
)


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


async def test_the_demo_runs_every_pattern_on_time(autojump_clock: trio.testing.MockClock) -> None:
    result = await run_demo("Carol of the Bells")
    assert result.success
    timeline = result.timeline
    # audio 50 ms; profile (40) and lyrics (one 20 ms LLM call) in parallel from 50 ms
    assert timeline["profile"].started_ms == timeline["lyrics"].started_ms == 50
    # macro, a refine loop: a rate-limited first call (20), a 20 ms backoff, then
    # propose, judge (rejects the first plan), propose again, judge (accepts): 4 x 20
    assert timeline["macro"].started_ms == 90
    assert timeline["macro"].attempts == 2
    assert timeline["macro"].finished_ms == 210
    macro = result.stage_results["macro"]
    assert macro.metadata["iterations"] == 2
    assert [h["accepted"] for h in macro.metadata["history"]] == [False, True]
    assert result.outputs["macro"].revision == 1
    # six groups, three at a time, 20 ms each; then render 30 ms
    assert timeline["groups"].duration_ms == 40
    assert result.total_duration_ms == 280
    assert len(result.outputs["groups"]) == 6
    assert result.outputs["render"].startswith("sequence with 6 groups and ")
    assert result.metrics["llm_requests"] == 11
    assert result.metrics["rate_limit_requests"] == 12  # the failed call waited its turn too
    assert result.metrics["rate_limit_wait_ms"] == 0
    assert result.metrics["macro_iterations"] == 2


async def test_an_instrumental_skips_lyrics(autojump_clock: trio.testing.MockClock) -> None:
    result = await run_demo("Instrumental", with_lyrics=False)
    assert result.success
    assert result.stage_results["lyrics"].status is StageStatus.SKIPPED


async def test_the_demo_is_deterministic(autojump_clock: trio.testing.MockClock) -> None:
    first, second = await run_demo("Jingle"), await run_demo("Jingle")
    assert first.outputs == second.outputs


def test_the_pipeline_is_valid() -> None:
    assert build_pipeline().validate_pipeline() == []


def test_main_prints_a_summary(capsys: pytest.CaptureFixture[str], restore_structlog: None) -> None:
    assert main(["--song", "Silent Night"]) == 0
    out = capsys.readouterr().out
    assert "pipeline twinklr_sequencer" in out
    assert "succeeded" in out
    for stage in ("audio", "profile", "lyrics", "macro", "group_contexts", "groups", "render"):
        assert f"\n{stage} " in out
    assert "render: sequence with 6 groups" in out
    assert "LLM: 11 requests" in out
    assert "accepted after 2 iterations" in out


async def test_a_failed_run_summary_names_the_error(autojump_clock: trio.testing.MockClock) -> None:
    result = await run_demo("x")
    text = summarize(result)
    assert "succeeded" in text
    failed = result.__class__(
        pipeline_name="p", run_id="r", success=False, outputs={}, stage_results={}, error="bad"
    )
    assert summarize(failed).endswith("error: bad")
