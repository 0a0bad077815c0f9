"""The compiled plan: index form of a validated definition."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from conftest import stub
from twinklr.core.pipeline import ExecutionPattern, PipelineDefinition, StageDefinition
from twinklr.core.pipeline._engine._plan import plan_of


class Streams:
    name = "streams"

    async def execute(self, input: Any, context: Any) -> Any:
        yield input


def test_plan_indexes_the_definition() -> None:
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", stub()),
            StageDefinition("b", Streams(), inputs=["a"]),
            StageDefinition(
                "c",
                stub(),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["a", "b"],
                fan_out_over="b",
            ),
        ],
    )
    plan = plan_of(pipeline)
    assert plan.ids == ("a", "b", "c")
    assert plan.deps == ((), (0,), (0, 1))
    assert plan.edge_start == (0, 0, 1)  # c's inputs are edges 1 (from a) and 2 (from b)
    assert plan.out_edges == ((0, 1), (2,), ())
    assert plan.edge_consumer == (1, 2, 2)
    assert plan.fan_out_slot == (-1, -1, 1)
    assert plan.streaming == (False, True, False)
    assert pipeline.execution_waves() == [["a"], ["b"], ["c"]]


def test_declaration_order_need_not_be_topological() -> None:
    pipeline = PipelineDefinition(
        "p", [StageDefinition("b", stub(), inputs=["a"]), StageDefinition("a", stub())]
    )
    assert plan_of(pipeline).order == (1, 0)


def test_streaming_is_read_from_the_instance_when_it_has_its_own_execute() -> None:
    class Plain:
        name = "plain"

        async def execute(self, input: Any, context: Any) -> Any:
            return None

    async def items(input: Any, context: Any) -> AsyncIterator[int]:
        yield 1

    special = Plain()
    special.execute = items  # type: ignore[method-assign,assignment]
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", Plain()),
            StageDefinition("b", special),
            StageDefinition("c", Plain()),
        ],
    )
    assert plan_of(pipeline).streaming == (False, True, False)
