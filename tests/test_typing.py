"""Typed outputs: a definition's output type is inferred (this module is checked by mypy
strict: each ``assert_type`` is a claim about the inference), and ``result.output``
returns it typed, or says why the stage has none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, assert_type

import attrs
import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    NoOutputError,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
    stage,
)


@attrs.frozen
class Bundle:
    song: str
    tempo: int


async def analyze(song: str) -> Bundle:
    return Bundle(song, 120)


async def describe(bundle: Bundle, context: PipelineContext) -> StageResult[str]:
    return StageResult.success(f"{bundle.song} at {bundle.tempo}")


async def beats(bundle: Bundle) -> AsyncIterator[int]:
    for beat in range(3):
        yield beat * bundle.tempo


class Profile:
    name = "profile"

    async def execute(self, input: Bundle, context: PipelineContext) -> StageResult[float]:
        return StageResult.success(input.tempo / 60)


class Chords:
    name = "chords"

    async def execute(self, input: Bundle, context: PipelineContext) -> AsyncIterator[str]:
        for chord in ("C", "G"):
            yield chord


class Untyped:
    name = "untyped"

    async def execute(self, input: Any, context: Any) -> Any:
        return StageResult.success(input)


audio = StageDefinition("audio", analyze)
text = StageDefinition("text", describe, inputs=["audio"])
beat_list = StageDefinition("beats", beats, inputs=["audio"])
profile = StageDefinition("profile", Profile(), inputs=["audio"])
chords = StageDefinition("chords", Chords(), inputs=["audio"])
decorated = StageDefinition("decorated", stage(name="analysis")(analyze))
sub = StageDefinition("sub", PipelineDefinition("inner", [StageDefinition("x", analyze)]))
untyped = StageDefinition("untyped", Untyped(), inputs=["audio"])


def test_mypy_infers_each_definitions_output_type() -> None:
    assert_type(audio, StageDefinition[Bundle])  # a function's return annotation
    assert_type(text, StageDefinition[str])  # a function returning StageResult[str]
    assert_type(beat_list, StageDefinition[list[int]])  # an async generator function
    assert_type(profile, StageDefinition[float])  # a class stage's StageResult[float]
    assert_type(chords, StageDefinition[list[str]])  # a class stage that streams
    assert_type(decorated, StageDefinition[Bundle])  # @stage keeps the type
    assert_type(sub, StageDefinition[dict[str, Any]])  # a sub-pipeline: its outputs
    assert_type(untyped, StageDefinition[Any])  # nothing declared


async def test_result_output_returns_the_typed_output() -> None:
    pipeline = PipelineDefinition("song", [audio, text, beat_list, profile, chords, untyped])
    result = await PipelineExecutor().execute(pipeline, "Carol")
    bundle = result.output(audio)
    assert_type(bundle, Bundle)
    assert bundle == Bundle("Carol", 120)
    assert_type(result.output(text), str)
    assert result.output(text) == "Carol at 120"
    assert result.output(beat_list) == [0, 120, 240]
    assert result.output(profile) == 2.0
    assert result.output(chords) == ["C", "G"]


async def test_a_stage_without_an_output_is_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fails(bundle: Bundle) -> str:
        await trio.sleep(1)
        msg = "no tempo"
        raise ValueError(msg)

    async def slow(bundle: Bundle) -> str:
        await trio.sleep(5)
        return "late"

    async def after(text: str) -> int:
        return len(text)

    failing = StageDefinition("fails", fails, inputs=["audio"])
    slow_one = StageDefinition("slow", slow, inputs=["audio"])
    later = StageDefinition("later", after, inputs=["fails"])
    skipped = StageDefinition(
        "skipped",
        analyze,
        pattern=ExecutionPattern.CONDITIONAL,
        condition=lambda _context: False,
    )
    pipeline = PipelineDefinition("song", [audio, failing, slow_one, later, skipped])
    result = await PipelineExecutor().execute(pipeline, "Carol")
    messages = {}
    without: list[StageDefinition[Any]] = [failing, slow_one, later, skipped, profile]
    for definition in without:
        with pytest.raises(NoOutputError) as caught:
            result.output(definition)
        assert caught.value.stage == definition.id
        messages[definition.id] = str(caught.value)
    assert messages == {
        "fails": "stage 'fails' of pipeline 'song' has no output: it failed (ValueError: no tempo)",
        "slow": "stage 'slow' of pipeline 'song' has no output: it was cancelled",
        "later": "stage 'later' of pipeline 'song' has no output: it never started",
        "skipped": "stage 'skipped' of pipeline 'song' has no output: "
        "it was skipped (its condition was false)",
        "profile": "stage 'profile' of pipeline 'song' has no output: "
        "the pipeline has no such stage",
    }
    assert isinstance(caught.value, LookupError)
    assert result.output(audio).song == "Carol"  # what finished before the failure stays
