"""One stage's life: inputs, conditions evaluated when inputs are ready, hand-off."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ConditionError,
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    StageStatus,
)


class SetsState:
    name = "sets_state"

    def __init__(self, key: str, value: Any, delay: float = 0) -> None:
        self.key, self.value, self.delay = key, value, delay

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[str]:
        await trio.sleep(self.delay)
        context.set_state(self.key, self.value)
        return StageResult.success("bundle")


def lyrics_pipeline(has_lyrics: bool, downstream: Any, **lyrics: Any) -> PipelineDefinition:  # noqa: FBT001
    return PipelineDefinition(
        "p",
        [
            StageDefinition("audio", SetsState("has_lyrics", has_lyrics, delay=1)),
            StageDefinition(
                "lyrics",
                stub("words"),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda ctx: ctx.get_state("has_lyrics", False),  # noqa: FBT003
                **lyrics,
            ),
            StageDefinition("macro", downstream, inputs=["audio", "lyrics"]),
        ],
    )


async def test_condition_reads_state_written_upstream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    macro = stub(lambda x: x)
    result = await PipelineExecutor().execute(lyrics_pipeline(True, macro))  # noqa: FBT003
    assert result.outputs["lyrics"] == "words"
    assert macro.calls == [(1, {"audio": "bundle", "lyrics": "words"})]


async def test_a_skipped_stage_counts_as_success_and_passes_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    macro = stub(lambda x: x)
    result = await PipelineExecutor().execute(lyrics_pipeline(False, macro))  # noqa: FBT003
    assert result.success
    assert result.skipped_stages == ("lyrics",)
    lyrics = result.stage_results["lyrics"]
    assert lyrics.status is StageStatus.SKIPPED
    assert lyrics.success
    assert result.outputs["lyrics"] is None
    assert macro.calls[0][1] == {"audio": "bundle", "lyrics": None}


async def test_a_raising_condition_fails_its_stage() -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub()),
            StageDefinition(
                "b",
                stub(),
                inputs=["a"],
                condition=lambda ctx: ctx.config["missing"],
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, context=PipelineContext(config={}))
    failed = result.stage_results["b"]
    assert isinstance(failed.exception, ConditionError)
    assert failed.error == "condition of stage 'b' raised KeyError: 'missing'"
    assert result.error == "stage 'b' failed: condition of stage 'b' raised KeyError: 'missing'"


async def test_a_skipped_fan_out_stage_is_not_run() -> None:
    never = stub()
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub([1, 2])),
            StageDefinition(
                "b",
                never,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["a"],
                condition=lambda _ctx: False,
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.skipped_stages == ("b",)
    assert not never.calls
