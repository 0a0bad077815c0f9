"""A resumed run's history: the parts before its last, kept with its row."""

from __future__ import annotations

from pathlib import Path

from conftest import stub
from twinklr.core.pipeline import (
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    RunStore,
    StageDefinition,
    WaitForInput,
)


def gated() -> PipelineDefinition:
    return PipelineDefinition(
        "gated",
        [
            StageDefinition("plan", stub("the plan")),
            StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
            StageDefinition(
                "render", stub(lambda answer: f"rendered {answer}"), inputs=["approve"]
            ),
        ],
    )


async def test_a_resumed_run_keeps_the_part_before_with_its_gate_and_answer(
    tmp_path: Path,
) -> None:
    runs = RunStore(tmp_path)
    executor = PipelineExecutor(cache=MemoryCacheStore(), runs=runs, suspend_on_wait=True)
    suspended = await executor.execute(gated())
    assert suspended.waiting_stages == ("approve",)
    assert runs.segments(suspended.run_id) == []  # (never resumed: no parts before)
    runs.respond(suspended.run_id, "approve", "yes")
    resumed = await executor.resume(suspended.run_id, pipeline=gated())
    assert resumed.outputs["render"] == "rendered yes"
    (before,) = runs.segments(suspended.run_id)
    assert before["status"] == "waiting"
    assert [stage["id"] for stage in before["stages"]] == ["plan"]  # not the cached ones
    (gate,) = before["waiting"]
    assert (gate["stage_id"], gate["prompt"]) == ("approve", "Render?")
    assert before["answers"]["approve"] >= gate["since"]  # (ISO times in UTC: in order)
    assert before["finished_at"] >= before["started_at"]
    # The row now holds the last part; its history stays as it was written first.
    assert runs.get(suspended.run_id).status == "succeeded"  # type: ignore[union-attr]
    assert runs.segments(suspended.run_id) == [before]
    runs.close()
