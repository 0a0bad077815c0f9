"""The judge/refine loop: a planner proposes, a judge scores, the planner revises.

It ends when the judge accepts (success), or with a *soft failure* carrying the best
candidate so far when the iteration ceiling or the token budget is reached: the one case
where a stage that did not succeed lets the run go on (downstream stages get the best
candidate; the cache never stores it). A planner or judge that raises is an ordinary
failure, and fails the run fast like any other.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import attrs

from .._base._loops import call_user
from .._values._context import work_metrics
from .._values._results import StageResult

if TYPE_CHECKING:
    from .._values._context import PipelineContext

T = TypeVar("T")


@attrs.frozen
class Proposal(Generic[T]):
    """A planner's candidate and what it cost."""

    output: T
    """The candidate."""
    tokens_used: int = 0
    """Tokens spent producing it."""


@attrs.frozen
class Verdict:
    """A judge's view of one candidate."""

    accepted: bool
    """Good enough: the loop ends with this candidate."""
    score: float
    """Higher is better; the best-scoring candidate is kept for a soft failure."""
    feedback: str = ""
    """What to improve, handed to the planner's next proposal."""
    tokens_used: int = 0
    """Tokens spent judging."""


@runtime_checkable
class Planner(Protocol):
    """Proposes a candidate for ``input``; ``feedback`` is None on the first iteration."""

    async def propose(
        self, input: Any, feedback: str | None, context: PipelineContext
    ) -> Proposal[Any]:
        """A new (or revised) candidate."""
        ...


@runtime_checkable
class Judge(Protocol):
    """Scores a candidate and says whether it is good enough."""

    async def evaluate(self, candidate: Any, context: PipelineContext) -> Verdict:
        """The verdict on ``candidate``."""
        ...


class RefineStage:
    """A stage that alternates ``planner`` and ``judge`` until the judge accepts.

    The token budget is checked before each iteration against the most any iteration
    has cost so far, so the loop stops *before* an iteration that could overspend (only
    a first iteration costlier than the whole budget can exceed it). When no proposal
    is accepted, the stage soft-fails carrying the best-scored one. Metrics
    ``<name>_iterations``, ``<name>_tokens`` and ``<name>_best_score`` are added to the
    run's; the result's metadata has the verdict history.

    Args:
        planner: Proposes a candidate, given the input and the judge's last feedback.
        judge: Scores a candidate and accepts it or not.
        max_iterations: The most proposals made.
        token_budget: The most tokens spent, planner's and judge's together; None: no
            budget.
        name: The stage's name, and the prefix of its metrics.

    Raises:
        TypeError: ``planner`` has no ``propose`` or ``judge`` no ``evaluate``.
        ValueError: ``max_iterations`` below 1, or a budget that is not positive.
    """

    __twinklr_loop__ = "trio"  # Trio code, on any host loop

    def __init__(
        self,
        planner: Planner,
        judge: Judge,
        *,
        max_iterations: int = 3,
        token_budget: int | None = None,
        name: str = "refine",
    ) -> None:
        if not callable(getattr(planner, "propose", None)):
            msg = f"RefineStage planner must have propose(), got {type(planner).__name__}"
            raise TypeError(msg)
        if not callable(getattr(judge, "evaluate", None)):
            msg = f"RefineStage judge must have evaluate(), got {type(judge).__name__}"
            raise TypeError(msg)
        given: object = max_iterations
        if not isinstance(given, int) or isinstance(given, bool) or given < 1:
            msg = f"RefineStage max_iterations must be an int >= 1, got {max_iterations!r}"
            raise ValueError(msg)
        if token_budget is not None and not token_budget > 0:
            msg = f"RefineStage token_budget must be > 0 or None, got {token_budget!r}"
            raise ValueError(msg)
        self.planner = planner
        self.judge = judge
        self.max_iterations = max_iterations
        self.token_budget = token_budget
        self._name = name

    def cache_code(self) -> tuple[object, ...]:
        """The code behind this stage's output, for cache keys: its planner and judge."""
        return (self.planner, self.judge)

    @property
    def name(self) -> str:
        """The stage's name (also the prefix of its metrics)."""
        return self._name

    def __repr__(self) -> str:
        return (
            f"RefineStage({type(self.planner).__name__}, {type(self.judge).__name__}, "
            f"max_iterations={self.max_iterations}, token_budget={self.token_budget})"
        )

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        """Propose, judge, revise; succeed on acceptance, soft-fail at a limit."""
        loop = _Loop(self.max_iterations, self.token_budget)
        feedback: str | None = None
        while (stop := loop.why_stop()) is None:
            proposal = _expect(
                await call_user(self.planner.propose, input, feedback, context),
                Proposal,
                self.planner,
            )
            verdict = _expect(
                await call_user(self.judge.evaluate, proposal.output, context), Verdict, self.judge
            )
            loop.record(proposal, verdict)
            if verdict.accepted:
                self._add_metrics(context, loop)
                return StageResult.success(
                    proposal.output, stage_name=self.name, metadata=loop.metadata("accepted")
                )
            feedback = verdict.feedback
        self._add_metrics(context, loop)
        return StageResult.soft_failure(
            loop.best_output,
            loop.explain(stop),
            stage_name=self.name,
            metadata=loop.metadata(stop),
        )

    def _add_metrics(self, context: PipelineContext, loop: _Loop) -> None:
        with work_metrics():  # the work of this run: a cache hit does none of it
            context.increment_metric(f"{self.name}_iterations", len(loop.history))
            context.increment_metric(f"{self.name}_tokens", loop.tokens)
        context.add_metric(f"{self.name}_best_score", loop.best_score)  # of the output


def _expect(value: object, kind: type[T], source: object) -> T:
    """``value`` if it is a ``kind``; else a TypeError naming who returned what."""
    if not isinstance(value, kind):
        msg = f"{type(source).__name__} returned {type(value).__name__}, expected a {kind.__name__}"
        raise TypeError(msg)
    return value


def _rank(score: float) -> float:
    """A score as ranked: NaN is the lowest."""
    return -math.inf if math.isnan(score) else score


class _Loop:
    """The bookkeeping of one refine loop: history, best candidate, tokens, limits."""

    def __init__(self, max_iterations: int, token_budget: int | None) -> None:
        self.max_iterations = max_iterations
        self.token_budget = token_budget
        self.history: list[dict[str, Any]] = []
        self.tokens = 0
        self.costliest = 0
        self.best_output: Any = None
        self.best_score = float("-inf")
        self.best_iteration = 0

    def why_stop(self) -> str | None:
        """``max_iterations`` or ``token_budget`` when the next iteration must not start."""
        if len(self.history) >= self.max_iterations:
            return "max_iterations"
        budget = self.token_budget
        if budget is not None and self.history and self.tokens + self.costliest > budget:
            return "token_budget"
        return None

    def record(self, proposal: Proposal[Any], verdict: Verdict) -> None:
        cost = proposal.tokens_used + verdict.tokens_used
        self.tokens += cost
        self.costliest = max(self.costliest, cost)
        iteration = len(self.history) + 1
        # NaN ranks lowest, and the first candidate is kept whatever its score: the
        # loop never ends with no best candidate.
        if not self.history or _rank(verdict.score) > _rank(self.best_score):
            self.best_output, self.best_score, self.best_iteration = (
                proposal.output,
                verdict.score,
                iteration,
            )
        self.history.append(
            {
                "iteration": iteration,
                "score": verdict.score,
                "accepted": verdict.accepted,
                "feedback": verdict.feedback,
                "tokens_used": cost,
            }
        )

    def explain(self, stop: str) -> str:
        best = f"best score {self.best_score:g} from iteration {self.best_iteration}"
        if stop == "max_iterations":
            return f"not accepted after {self.max_iterations} iterations (max_iterations); {best}"
        return (
            f"token budget {self.token_budget} would be exceeded: {self.tokens} used, the next "
            f"iteration may need {self.costliest}; {best}"
        )

    def metadata(self, reason: str) -> dict[str, Any]:
        return {
            "reason": reason,
            "iterations": len(self.history),
            "tokens_used": self.tokens,
            "token_budget": self.token_budget,
            "best_score": self.best_score,
            "best_iteration": self.best_iteration,
            "history": tuple(self.history),
        }
