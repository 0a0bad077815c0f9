"""Typed outputs: a definition's output type is inferred (this module is checked by mypy
strict: each ``assert_type`` is a claim about the inference), and ``result.output``
returns it typed, or says why the stage has none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final, assert_type

import attrs
import numpy as np
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


async def notes(song: str) -> list[str]:
    return song.split()


async def loudness(note: str) -> dict[str, Any]:
    return {"note": note, "db": len(note)}


async def spectrum(note: str) -> np.ndarray:
    return np.full(2, len(note), dtype=np.float64)


async def syllables(note: str) -> AsyncIterator[str]:
    for letter in note[:2]:
        yield letter


class Weigh:
    name = "weigh"

    async def execute(self, input: str, context: PipelineContext) -> StageResult[float]:
        return StageResult.success(len(input) / 10)


FAN: Final = ExecutionPattern.FAN_OUT  # (Final: its literal type is kept)
note_list = StageDefinition("notes", notes)
loud = StageDefinition("loud", loudness, inputs=["notes"])
spectra = StageDefinition("spectra", spectrum, inputs=["notes"])
per_note = StageDefinition("per_note", loudness, inputs=["notes"], pattern=FAN)
per_spectrum = StageDefinition("per_spectrum", spectrum, inputs=["notes"], pattern=FAN)
per_weight = StageDefinition("per_weight", Weigh(), inputs=["notes"], pattern=FAN)
per_letters = StageDefinition("per_letters", syllables, inputs=["notes"], pattern=FAN)
per_sub = StageDefinition(
    "per_sub", PipelineDefinition("inner", [StageDefinition("n", loudness)]), pattern=FAN
)


def test_mypy_infers_each_definitions_output_type() -> None:
    assert_type(audio, StageDefinition[Bundle])  # a function's return annotation
    assert_type(text, StageDefinition[str])  # a function returning StageResult[str]
    assert_type(beat_list, StageDefinition[list[int]])  # an async generator function
    assert_type(profile, StageDefinition[float])  # a class stage's StageResult[float]
    assert_type(chords, StageDefinition[list[str]])  # a class stage that streams
    assert_type(decorated, StageDefinition[Bundle])  # @stage keeps the type
    assert_type(sub, StageDefinition[dict[str, Any]])  # a sub-pipeline: its outputs
    assert_type(untyped, StageDefinition[Any])  # nothing declared


def test_any_inside_an_output_type_and_fan_out_lists_are_inferred() -> None:
    assert_type(loud, StageDefinition[dict[str, Any]])  # Any inside: still inferred
    assert_type(spectra, StageDefinition[np.ndarray])  # a bare ndarray
    assert_type(per_note, StageDefinition[list[dict[str, Any]]])  # fan-out: a list
    assert_type(per_spectrum, StageDefinition[list[np.ndarray]])
    assert_type(per_weight, StageDefinition[list[float]])
    assert_type(per_letters, StageDefinition[list[list[str]]])  # each item's stream
    assert_type(per_sub, StageDefinition[list[dict[str, Any]]])


async def test_fan_out_outputs_are_the_lists_their_types_say() -> None:
    stages: list[StageDefinition[Any]] = [
        *(note_list, loud, spectra, per_note, per_spectrum, per_weight, per_letters)
    ]
    inner = StageDefinition("per_sub", per_sub.stage, inputs=["notes"], pattern=FAN)
    result = await PipelineExecutor().execute(PipelineDefinition("n", [*stages, inner]), "do re")
    assert result.success, result.error
    assert_type(result.output(per_note), list[dict[str, Any]])
    assert result.output(per_note) == [{"note": "do", "db": 2}, {"note": "re", "db": 2}]
    assert [a.tolist() for a in result.output(per_spectrum)] == [[2.0, 2.0], [2.0, 2.0]]
    assert result.output(per_weight) == [0.2, 0.2]
    assert result.output(per_letters) == [["d", "o"], ["r", "e"]]
    inner_outputs = [{"n": {"note": "do", "db": 2}}, {"n": {"note": "re", "db": 2}}]
    assert result.outputs["per_sub"] == inner_outputs


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
