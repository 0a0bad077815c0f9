"""Gates: a `WaitForInput` stage waits for an answer given through the run's handle,
while the rest of the run goes on."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    EventKind,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageStatus,
    WaitForInput,
)


def approval_pipeline(gate: WaitForInput) -> PipelineDefinition:
    """plan -> approve (the gate) -> render; lights runs beside them."""
    return PipelineDefinition(
        "show",
        [
            StageDefinition("plan", stub("the plan")),
            StageDefinition("approve", gate, inputs=["plan"]),
            StageDefinition(
                "render", stub(lambda answer: f"rendered {answer}"), inputs=["approve"]
            ),
            StageDefinition("lights", stub("lights ready", delay=1)),
        ],
    )


async def test_an_answer_after_5_s_lets_the_dependents_start_then(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, approval_pipeline(WaitForInput("OK?")))
        await trio.sleep(5)
        (request,) = handle.waiting()
        assert (request.stage_id, request.prompt, request.input) == ("approve", "OK?", "the plan")
        assert isinstance(request.since, dt.datetime)
        assert request.since.tzinfo is dt.UTC
        handle.respond("approve", "approved")
        result = await handle.wait()
    assert result.success
    assert result.outputs["render"] == "rendered approved"
    timeline = result.timeline
    assert timeline["lights"].finished_ms == 1000.0  # the rest of the run went on
    assert timeline["approve"].finished_ms == 5000.0
    assert timeline["render"].started_ms == 5000.0
    assert handle.waiting() == []
    kinds = [(e.kind, e.stage) async for e in handle.events() if e.kind.value.startswith("input")]
    assert kinds == [
        (EventKind.INPUT_REQUESTED, "approve"),
        (EventKind.INPUT_RECEIVED, "approve"),
    ]


async def test_responding_to_what_does_not_wait_says_what_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, approval_pipeline(WaitForInput("OK?")))
        with pytest.raises(LookupError, match=r"stage 'approve' is not waiting for input"):
            handle.respond("approve", "too early")  # its input has not arrived yet
        await trio.sleep(1)
        with pytest.raises(LookupError, match=r"no stage 'ghost' \(waiting for input: 'approve'\)"):
            handle.respond("ghost", 1)
        with pytest.raises(LookupError, match=r"stage 'lights' is not waiting"):
            handle.respond("lights", 1)
        handle.respond("approve", "yes")
        with pytest.raises(LookupError, match=r"stage 'approve' has already been answered"):
            handle.respond("approve", "again")
        assert (await handle.wait()).success


async def test_a_timeout_fails_the_gate_or_gives_its_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failed = await PipelineExecutor().execute(
        approval_pipeline(WaitForInput("OK?", timeout_ms=3000))
    )
    assert not failed.success
    gate = failed.stage_results["approve"]
    assert gate.status is StageStatus.FAILED
    assert gate.error == "TimeoutError: stage 'approve' got no input within 3000 ms (timeout)"
    assert failed.timeline["approve"].finished_ms == 3000.0
    assert failed.not_started_stages == ("render",)

    defaulted = await PipelineExecutor().execute(
        approval_pipeline(WaitForInput("OK?", timeout_ms=3000, default="auto-approved"))
    )
    assert defaulted.success
    assert defaulted.outputs["render"] == "rendered auto-approved"
    assert defaulted.stage_results["approve"].metadata["defaulted"] is True
    assert defaulted.timeline["render"].started_ms == 3000.0


async def test_a_run_cancelled_while_a_gate_waits_leaves_nothing_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, approval_pipeline(WaitForInput("OK?")))
        await trio.sleep(2)
        assert [r.stage_id for r in handle.waiting()] == ["approve"]
        handle.cancel()
        result = await handle.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert nursery.child_tasks == frozenset()  # the run's task, and all of its, ended
    assert result.cancelled
    assert result.cancelled_stages == ("approve",)
    assert handle.waiting() == []


async def test_a_gate_outside_a_run_says_so() -> None:
    with pytest.raises(RuntimeError, match="inside a pipeline run"):
        await WaitForInput("OK?").execute(None, PipelineContext())


def test_a_gate_refuses_a_timeout_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="timeout_ms must be a number > 0, got 0"):
        WaitForInput("OK?", timeout_ms=0)


def test_a_gate_cannot_be_a_fan_out_stage() -> None:
    from twinklr.core.pipeline import ExecutionPattern, PipelineValidationError  # noqa: PLC0415

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", stub([1, 2])),
            StageDefinition(
                "ask", WaitForInput("?"), inputs=["items"], pattern=ExecutionPattern.FAN_OUT
            ),
        ],
    )
    with pytest.raises(PipelineValidationError, match="a WaitForInput gate cannot be a fan-out"):
        pipeline.validate()


@pytest.mark.parametrize("kind", ["pydantic", "dataclass", "attrs"])
async def test_a_typed_gate_refuses_a_wrong_answer_and_waits_for_a_right_one(
    kind: str, autojump_clock: trio.testing.MockClock
) -> None:
    import dataclasses  # noqa: PLC0415

    import attrs  # noqa: PLC0415
    import pydantic  # noqa: PLC0415

    class Model(pydantic.BaseModel):
        lights: int

    @dataclasses.dataclass
    class Data:
        lights: int

    @attrs.define
    class Attrs:
        lights: int

    answer_type = {"pydantic": Model, "dataclass": Data, "attrs": Attrs}[kind]
    gate = WaitForInput("How many lights?", answer_type=answer_type)
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor().start(nursery, approval_pipeline(gate))
        await trio.sleep(1)
        (request,) = handle.waiting()
        assert request.answer_type is answer_type
        name = answer_type.__name__
        with pytest.raises(ValueError, match=rf"gate 'approve' is not a valid {name}: field 'lig"):
            handle.respond("approve", {"lights": "many"})
        assert [r.stage_id for r in handle.waiting()] == ["approve"]  # it waits on
        handle.respond("approve", {"lights": "4"} if kind != "attrs" else {"lights": 4})
        result = await handle.wait()
    assert result.outputs["approve"] == answer_type(lights=4)  # converted to the type
    assert result.outputs["render"] == f"rendered {answer_type(lights=4)}"


async def test_an_answer_given_before_a_resumed_gate_opened_is_checked_too() -> None:
    from twinklr.core.pipeline._kinds._gate import Gates  # noqa: PLC0415

    seen: list[str] = []
    gates = Gates({"approve"}, seen.append, seen.append, answers={"approve": {"lights": "x"}})
    opened = gates.open("approve", "How many?", None, dict[str, int])
    assert not opened.answered.is_set()  # refused: it waits for a right one
    assert "is not a valid dict[str, int]: field 'lights'" in gates.refused["approve"]
    (shown,) = gates.described(lambda request: {"stage_id": request.stage_id})
    assert shown == {"stage_id": "approve", "refused": gates.refused["approve"]}
    gates.respond("approve", {"lights": 2})
    assert opened.value == {"lights": 2}
    assert gates.refused == {}
