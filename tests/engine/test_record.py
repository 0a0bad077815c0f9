"""What a recorder writes about a definition and a failure: the definition's fingerprint
and graph, and a traceback that shows the stage's code, not the executor's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import stub
from twinklr.core.pipeline import PipelineDefinition, StageDefinition
from twinklr.core.pipeline._engine._plan import compile_plan
from twinklr.core.pipeline._engine._record import definition_of, user_traceback


def fingerprint(pipeline: PipelineDefinition) -> str:
    return definition_of(compile_plan(pipeline))[0]


async def double(value: int) -> int:
    return 2 * value


async def triple(value: int) -> int:
    return 3 * value


def test_the_fingerprint_follows_the_name_the_wiring_and_the_code() -> None:
    def build(name: str = "p", stage: Any = double, inputs: tuple[str, ...] = ("a",)) -> Any:
        return PipelineDefinition(
            name, [StageDefinition("a", stub(1)), StageDefinition("b", stage, inputs=list(inputs))]
        )

    base = fingerprint(build())
    assert len(base) == 16
    assert fingerprint(build()) == base  # rebuilt: the same definition
    assert fingerprint(build(name="q")) != base
    assert fingerprint(build(stage=triple)) != base
    assert fingerprint(build(inputs=())) != base


def test_the_graph_names_each_stages_wiring_and_code() -> None:
    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", stub(1)), StageDefinition("b", double, inputs=["a"])]
    )
    _, graph = definition_of(compile_plan(pipeline))
    stages = json.loads(graph)["stages"]
    assert [(s["id"], s["inputs"]) for s in stages] == [("a", []), ("b", ["a"])]
    assert stages[1]["code"].endswith("double")


def test_a_traceback_keeps_the_stages_frames_and_drops_the_machinerys() -> None:
    import tenacity  # noqa: PLC0415

    def stage_code() -> None:
        raise ValueError("bad value 7")

    def retried() -> None:
        for attempt in tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True):
            with attempt:
                stage_code()

    with pytest.raises(ValueError, match="bad value 7") as caught:
        retried()
    text = user_traceback(caught.value)
    assert "in stage_code" in text
    assert "/tenacity/" not in text
    assert text.endswith("ValueError: bad value 7\n")


def test_a_traceback_with_only_machinery_is_kept_whole() -> None:
    import tenacity  # noqa: PLC0415

    error = ValueError("no frames of its own")
    try:
        tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True)(_raise, error)
    except ValueError as exc:
        text = user_traceback(exc)
    assert "Traceback" in text
    assert text.endswith("ValueError: no frames of its own\n")


def _raise(error: Exception) -> None:
    raise error


def test_a_tracebacks_files_under_the_working_directory_are_named_relative_to_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    here = Path(__file__)
    monkeypatch.chdir(here.parents[2])  # the project's root

    def stage_code() -> None:
        raise ValueError("bad value 8")

    with pytest.raises(ValueError, match="bad value 8") as caught:
        stage_code()
    text = user_traceback(caught.value)
    assert 'File "tests/engine/test_record.py", line ' in text
    assert 'raise ValueError("bad value 8")' in text  # its line, read before the path changed
    assert str(here.parents[2]) not in text
    monkeypatch.chdir(here.parents[2].parent)  # outside it: the path as it is
    assert f'File "{here.parents[2].name}/tests/engine/test_record.py"' in user_traceback(
        caught.value
    )
