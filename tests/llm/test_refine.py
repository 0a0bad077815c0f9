"""The judge/refine loop: accept, soft-fail at the ceiling or the budget, fail on errors."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    Judge,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    Planner,
    Proposal,
    RefineStage,
    StageDefinition,
    StageStatus,
    Verdict,
)


class Drafts:
    """Proposes draft-1, draft-2, ... (each ``cost`` tokens), remembering the feedback."""

    def __init__(self, cost: int = 10) -> None:
        self.cost = cost
        self.feedback: list[str | None] = []

    async def propose(
        self, input: Any, feedback: str | None, context: PipelineContext
    ) -> Proposal[str]:
        self.feedback.append(feedback)
        await trio.sleep(1)
        return Proposal(f"{input}-draft-{len(self.feedback)}", tokens_used=self.cost)


class Scores:
    """Scores candidates from a list; accepts a score of at least ``accept_at``."""

    def __init__(self, scores: list[float], accept_at: float = 0.9, cost: int = 5) -> None:
        self.scores = scores
        self.accept_at = accept_at
        self.cost = cost
        self.seen: list[Any] = []

    async def evaluate(self, candidate: Any, context: PipelineContext) -> Verdict:
        score = self.scores[len(self.seen)]
        self.seen.append(candidate)
        await trio.sleep(0.5)
        return Verdict(
            accepted=score >= self.accept_at,
            score=score,
            feedback=f"improve {candidate}",
            tokens_used=self.cost,
        )


def pipeline_of(stage: RefineStage, downstream: Any = None) -> PipelineDefinition:
    stages = [StageDefinition("plan", stage)]
    if downstream is not None:
        stages.append(StageDefinition("render", downstream, inputs=["plan"]))
    return PipelineDefinition("refine", stages)


async def test_accepts_on_iteration_two(autojump_clock: trio.testing.MockClock) -> None:
    planner, judge = Drafts(), Scores([0.5, 0.95])
    stage = RefineStage(planner, judge, max_iterations=5)
    assert isinstance(planner, Planner)
    assert isinstance(judge, Judge)
    context = PipelineContext()
    result = await PipelineExecutor().execute(pipeline_of(stage), "show", context)
    plan = result.stage_results["plan"]
    assert plan.status is StageStatus.SUCCEEDED
    assert plan.output == "show-draft-2"
    assert planner.feedback == [None, "improve show-draft-1"]
    assert plan.metadata["iterations"] == 2
    assert plan.metadata["reason"] == "accepted"
    assert [h["score"] for h in plan.metadata["history"]] == [0.5, 0.95]
    assert result.total_duration_ms == 3000
    assert context.metrics == {
        "refine_iterations": 2,
        "refine_tokens": 30,
        "refine_best_score": 0.95,
    }


async def test_soft_fails_at_the_ceiling_with_the_best_candidate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    render = stub(lambda plan: f"rendered {plan}")
    stage = RefineStage(Drafts(), Scores([0.4, 0.8, 0.6]), max_iterations=3, name="macro")
    result = await PipelineExecutor().execute(pipeline_of(stage, render), "show")
    plan = result.stage_results["plan"]
    assert plan.status is StageStatus.SOFT_FAILED
    assert plan.success is False
    assert plan.output == "show-draft-2"  # the best, not the last
    assert plan.error == (
        "not accepted after 3 iterations (max_iterations); best score 0.8 from iteration 2"
    )
    assert plan.metadata["best_iteration"] == 2
    assert plan.metadata["tokens_used"] == 45
    assert [h["accepted"] for h in plan.metadata["history"]] == [False] * 3
    # the run goes on, and downstream gets the best candidate
    assert result.success
    assert result.soft_failed_stages == ("plan",)
    assert render.calls[0][1] == "show-draft-2"
    assert result.outputs["render"] == "rendered show-draft-2"
    assert result.metrics["macro_iterations"] == 3


async def test_soft_fails_on_the_budget_before_overspending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    planner = Drafts(cost=30)
    stage = RefineStage(
        planner, Scores([0.1, 0.7, 0.2, 0.3], cost=10), max_iterations=10, token_budget=130
    )
    result = await PipelineExecutor().execute(pipeline_of(stage), "show")
    plan = result.stage_results["plan"]
    assert plan.status is StageStatus.SOFT_FAILED
    # 40 tokens an iteration: 3 iterations (120) fit, a 4th could reach 160 > 130
    assert plan.metadata["iterations"] == 3
    assert plan.metadata["tokens_used"] == 120
    assert plan.metadata["reason"] == "token_budget"
    assert plan.output == "show-draft-2"
    assert plan.error == (
        "token budget 130 would be exceeded: 120 used, the next iteration may need 40; "
        "best score 0.7 from iteration 2"
    )


async def test_a_first_iteration_costlier_than_the_budget_stops_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = RefineStage(Drafts(cost=500), Scores([0.3, 0.9]), max_iterations=5, token_budget=100)
    result = await PipelineExecutor().execute(pipeline_of(stage), "show")
    plan = result.stage_results["plan"]
    assert plan.metadata["iterations"] == 1
    assert plan.output == "show-draft-1"


class Raises:
    async def evaluate(self, candidate: Any, context: PipelineContext) -> Verdict:
        raise RuntimeError("judge crashed")


class ReturnsScore:
    async def evaluate(self, candidate: Any, context: PipelineContext) -> Any:
        return 0.5


async def test_a_raising_judge_fails_the_run(autojump_clock: trio.testing.MockClock) -> None:
    render = stub()
    stage = RefineStage(Drafts(), Raises(), max_iterations=3)
    result = await PipelineExecutor().execute(pipeline_of(stage, render), "show")
    assert not result.success
    assert result.failed_stages == ("plan",)
    assert result.stage_results["plan"].error == "RuntimeError: judge crashed"
    assert not render.calls


async def test_a_judge_returning_the_wrong_type_fails_naming_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = RefineStage(Drafts(), ReturnsScore())
    result = await PipelineExecutor().execute(pipeline_of(stage), "show")
    assert result.stage_results["plan"].error == (
        "TypeError: ReturnsScore returned float, expected a Verdict"
    )


async def test_soft_failures_are_never_cached(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryCacheStore()
    planner = Drafts()
    stage = RefineStage(planner, Scores([0.1] * 6), max_iterations=2)
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline_of(stage), "show")
    await executor.execute(pipeline_of(stage), "show")
    assert len(planner.feedback) == 4
    assert await store.entries() == []


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="planner must have propose"):
        RefineStage(object(), Scores([]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="judge must have evaluate"):
        RefineStage(Drafts(), object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_iterations must be an int >= 1, got 0"):
        RefineStage(Drafts(), Scores([]), max_iterations=0)
    with pytest.raises(ValueError, match=r"max_iterations must be an int >= 1, got 2\.5"):
        RefineStage(Drafts(), Scores([]), max_iterations=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="token_budget must be > 0"):
        RefineStage(Drafts(), Scores([]), token_budget=0)
    assert "max_iterations=3" in repr(RefineStage(Drafts(), Scores([])))


async def test_nan_scores_rank_lowest_and_a_candidate_is_always_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nan = float("nan")
    for scores, best in (([nan, nan, nan], "show-draft-1"), ([nan, 0.3, nan], "show-draft-2")):
        stage = RefineStage(Drafts(), Scores(scores), max_iterations=3)
        result = await PipelineExecutor().execute(pipeline_of(stage), "show")
        plan = result.stage_results["plan"]
        assert plan.status is StageStatus.SOFT_FAILED
        assert plan.output == best  # never None: the candidates are not lost
        assert len(plan.metadata["history"]) == 3
