"""The stage protocol is structural: no base class needed."""

from __future__ import annotations

from typing import Any

from conftest import stub
from twinklr.core.pipeline import PipelineStage
from twinklr.core.pipeline._kinds._protocol import stage_problem


class NoExecute:
    name = "x"


class NotCallable:
    name = "x"
    execute = 3


def test_any_object_with_name_and_execute_is_a_stage() -> None:
    assert isinstance(stub(), PipelineStage)
    assert not isinstance(NoExecute(), PipelineStage)
    assert stage_problem(stub()) is None


def test_problems_name_what_is_missing() -> None:
    assert stage_problem(NoExecute()) == (
        "NoExecute instance has no execute() method (a PipelineStage needs one)"
    )
    assert (
        stage_problem(NoExecute) == "got the class NoExecute, not an instance (write NoExecute())"
    )
    assert stage_problem(NotCallable()) == (
        "NotCallable instance has no execute() method (a PipelineStage needs one)"
    )


def test_async_generator_stages_are_stages() -> None:
    class Streams:
        name = "streams"

        async def execute(self, input: Any, context: Any) -> Any:
            yield 1

    assert stage_problem(Streams()) is None
