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


async def test_a_condition_of_two_parameters_sees_the_input_too() -> None:
    seen: list[tuple[object, object]] = []

    def long_enough(context: PipelineContext, input: Any) -> bool:
        seen.append((context.get_state("mode"), input))
        return len(input["words"]) > 2

    def only_context(context: PipelineContext) -> bool:
        return bool(context.get_state("mode") == "full")

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("words", stub(["a", "b", "c"])),
            StageDefinition("count", stub(3)),
            StageDefinition(
                "lyrics",
                stub("sung"),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["words", "count"],
                condition=long_enough,
            ),
            StageDefinition(
                "extras",
                stub("more"),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["words"],
                condition=only_context,
            ),
            StageDefinition(
                "short",
                stub("never"),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["count"],
                condition=lambda _context, count: bool(count > 5),
            ),
        ],
    )
    context = PipelineContext(state={"mode": "full"})
    result = await PipelineExecutor().execute(pipeline, None, context)
    assert seen == [("full", {"words": ["a", "b", "c"], "count": 3})]
    assert result.outputs["lyrics"] == "sung"
    assert result.outputs["extras"] == "more"
    assert result.skipped_stages == ("short",)


def test_a_condition_must_take_the_context_or_the_context_and_the_input() -> None:
    def three(context: Any, input: Any, more: Any) -> bool:
        return True

    problems = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub()),
            StageDefinition("b", stub(), inputs=["a"], condition=lambda: True),  # type: ignore[arg-type]
            StageDefinition("c", stub(), inputs=["a"], condition=three),  # type: ignore[arg-type]
            StageDefinition("d", stub(), inputs=["a"], condition=bool),  # a builtin: (context)
        ],
    ).validate_pipeline()
    assert problems == [
        "stage 'b': condition() must take (context) or (context, input)",
        "stage 'c': condition(context, input, more) must take (context) or (context, input)",
    ]
