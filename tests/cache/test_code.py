"""Cache keys follow the code that produces an output: inherited, wrapped or declared."""

from __future__ import annotations

import functools
from typing import Any

from twinklr.core.pipeline import (
    PipelineContext,
    Proposal,
    RefineStage,
    StageResult,
    SyncStage,
    Verdict,
)
from twinklr.core.pipeline._cache._code import code_identity, code_parts
from twinklr.core.pipeline._kinds._function import FunctionStage


def code_name(stage: object) -> str:
    return code_identity(stage)[0]


def code_hash(stage: object) -> str:
    return code_identity(stage)[1]


class Shouts:
    name = "shouts"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[str]:
        return StageResult.success(str(input).upper())


class Whispers:
    name = "whispers"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[str]:
        return StageResult.success(str(input).lower())


def make_child(base: type) -> type:
    class Child(base):  # type: ignore[misc]
        name = "child"

    return Child


def loud(text: str) -> str:
    return text.upper()


def quiet(text: str) -> str:
    return text.lower()


class Planner:
    async def propose(self, input: Any, feedback: str | None, context: Any) -> Proposal[str]:
        return Proposal(output="plan")


class OtherPlanner:
    async def propose(self, input: Any, feedback: str | None, context: Any) -> Proposal[str]:
        return Proposal(output="another plan")


class Judge:
    async def evaluate(self, candidate: Any, context: Any) -> Verdict:
        return Verdict(accepted=True, score=1.0)


def test_an_inherited_execute_is_part_of_the_code() -> None:
    # The same class body on two different bases: only the inherited code differs.
    on_shouts, on_whispers = make_child(Shouts)(), make_child(Whispers)()
    assert code_name(on_shouts) == code_name(on_whispers)
    assert code_hash(on_shouts) != code_hash(on_whispers)
    assert code_hash(make_child(Shouts)()) == code_hash(on_shouts)


def test_a_sync_stage_is_keyed_by_its_function() -> None:
    assert code_hash(SyncStage(loud)) != code_hash(SyncStage(quiet))
    assert code_hash(SyncStage(loud)) == code_hash(SyncStage(loud, name="other"))
    wrapper, function = code_name(SyncStage(loud)).split(",")
    assert wrapper.endswith("SyncStage")
    assert function.endswith(".loud")
    assert code_hash(SyncStage(len)) != code_hash(SyncStage(abs))  # builtins: by name
    # A partial's arguments decide its output too.
    shout_a = SyncStage(functools.partial(loud, "a"))
    assert code_hash(shout_a) == code_hash(SyncStage(functools.partial(loud, "a")))
    assert code_hash(shout_a) != code_hash(SyncStage(functools.partial(loud, "b")))
    assert code_hash(shout_a) != code_hash(SyncStage(loud))


def test_a_refine_loop_is_keyed_by_its_planner_and_judge() -> None:
    first = RefineStage(Planner(), Judge(), max_iterations=2)
    assert code_parts(first)[1:] == (Planner, Judge)
    assert code_hash(first) == code_hash(RefineStage(Planner(), Judge(), max_iterations=2))
    assert code_hash(first) != code_hash(RefineStage(OtherPlanner(), Judge(), max_iterations=2))


def test_a_function_stage_is_its_function() -> None:
    async def analyze(input: Any) -> str:
        return "a"

    stage = FunctionStage(analyze)
    assert code_parts(stage) == (analyze,)
    assert code_name(stage).endswith("test_a_function_stage_is_its_function.<locals>.analyze")


def test_a_stage_may_declare_the_code_it_runs() -> None:
    class Model:
        def predict(self, x: Any) -> Any:
            return x

    class Serves:
        name = "serves"

        def __init__(self) -> None:
            self.model = Model()

        def cache_code(self) -> tuple[object, ...]:
            return (self.model, self.model.predict)

        async def execute(self, input: Any, context: Any) -> StageResult[Any]:
            return StageResult.success(self.model.predict(input))

    assert code_parts(Serves()) == (Serves, Model, Model.predict)


def test_captured_values_are_named_and_code_among_them_stands_for_its_source() -> None:
    import functools  # noqa: PLC0415

    from twinklr.core.pipeline._cache._code import captured  # noqa: PLC0415

    def helper(value: int) -> int:
        return value

    limit = 3

    async def stage(value: int, scale: float = 2.0, *, label: str = "x") -> int:
        return helper(value) + limit

    named = dict(captured(stage))
    assert named["'limit' it closes over"] == 3
    assert named["the default of 'scale'"] == 2.0
    assert named["the default of 'label'"] == "x"
    kind, name, digest, inner = named["'helper' it closes over"]
    assert (kind, name.endswith("helper"), len(digest), inner) == ("code", True, 64, [])
    assert captured(functools.partial(stage, 1)) == captured(stage)
    assert captured(len) == []
    assert captured(int) == []  # a class: its source is its identity
