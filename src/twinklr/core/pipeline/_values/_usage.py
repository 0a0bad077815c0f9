"""What LLM calls used, and what they cost: a value per call, added up per stage and per
run, and the run's current stage that a provider's call is attributed to.

A provider reports each call's `Usage` with `record_usage`; the engine sets, for each
stage's task, where that goes (``usage_recorder``), so nothing is passed by hand: a call
made anywhere inside a stage (in a helper, in an asyncio task or a worker thread it
started, both of which copy the context) counts for that stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import attrs

from ..errors import BudgetExceededError

#: Prices by model: (US dollars per million input tokens, per million output tokens),
#: optionally a third, per million cached input tokens (else the input price).
Prices = Mapping[str, tuple[float, float] | tuple[float, float, float]]


def _cost_sum(one: float | None, other: float | None) -> float | None:
    return None if one is None or other is None else one + other


@attrs.frozen(kw_only=True)
class Usage:
    """What one or more LLM calls used: added with ``+`` (a run's is its stages')."""

    requests: int = 0
    """Calls made."""
    input_tokens: int = 0
    """Tokens sent (cached ones included)."""
    output_tokens: int = 0
    """Tokens received."""
    cached_input_tokens: int = 0
    """Input tokens the provider served from its prompt cache (billed lower)."""
    cost_usd: float | None = 0.0
    """What they cost, in US dollars; None when a price was not known (never a guess:
    a sum with an unknown cost is unknown)."""

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            requests=self.requests + other.requests,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cost_usd=_cost_sum(self.cost_usd, other.cost_usd),
        )

    @property
    def tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    def as_list(self) -> list[Any]:
        """``[requests, input, output, cached input, cost]`` (how an entry keeps it)."""
        return [
            self.requests,
            self.input_tokens,
            self.output_tokens,
            self.cached_input_tokens,
            self.cost_usd,
        ]

    @classmethod
    def from_list(cls, kept: Any) -> Usage:
        """The usage `as_list` gave (ValueError for anything else)."""
        requests, used_in, used_out, cached, cost = kept
        counts = (requests, used_in, used_out, cached)
        if not all(type(n) is int and n >= 0 for n in counts) or not (
            cost is None or isinstance(cost, int | float)
        ):
            msg = f"not a kept usage: {kept!r}"
            raise ValueError(msg)
        return cls(
            requests=requests,
            input_tokens=used_in,
            output_tokens=used_out,
            cached_input_tokens=cached,
            cost_usd=None if cost is None else float(cost),
        )


def cost_of(
    model: str | None,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    prices: Prices | None = None,
) -> float | None:
    """What a call cost by ``prices`` (None when the model is not in them)."""
    price = None if prices is None or model is None else prices.get(model)
    if price is None:
        return None
    per_input, per_output = price[0], price[1]
    per_cached = price[2] if len(price) > 2 else per_input  # noqa: PLR2004 (the optional third)
    fresh = input_tokens - cached_input_tokens
    return (fresh * per_input + cached_input_tokens * per_cached + output_tokens * per_output) / 1e6


def _limit(name: str) -> Any:
    def check(_budget: object, _field: object, value: object) -> None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if value is not None and not (number and 0 < value < math.inf):  # type: ignore[operator]
            msg = f"Budget {name} must be a number > 0 or None, got {value!r}"
            raise ValueError(msg)

    return check


@attrs.frozen
class Budget:
    """What a run may spend on LLM calls (``PipelineContext(budget=...)``): once its
    usage reaches a limit, the next provider call raises `BudgetExceededError` before it
    is sent. A cost that is not known (a model without a price) does not count."""

    max_cost_usd: float | None = attrs.field(default=None, validator=_limit("max_cost_usd"))
    """US dollars."""
    max_tokens: int | None = attrs.field(default=None, validator=_limit("max_tokens"))
    """Input and output tokens together."""


class Ledger(Protocol):
    """What a run keeps of its LLM calls' usage (the engine's run)."""

    def pipeline_name(self) -> str:
        """The name of the pipeline the run runs."""

    @property
    def spent(self) -> Usage:
        """The run's usage so far."""

    @property
    def spent_in_all(self) -> Usage:
        """The usage so far of the outermost run this one is part of (a sub-pipeline's
        run is part of the run of the stage it runs in)."""

    def add_usage(self, index: int, usage: Usage, model: str | None = None) -> None:
        """Count ``usage`` (of ``model``) for stage ``index`` (-1: outside any stage)."""

    def stage_name(self, index: int) -> str | None:
        """Stage ``index``'s id (None for -1)."""

    def used_by(self, index: int, item: int) -> Usage | None:
        """What stage ``index`` (its fan-out item ``item``; -1: the stage) used so far."""

    def add_saved(self, usage: Usage) -> None:
        """Count ``usage`` as saved: a cache hit served what it had cost."""

    def streamed(self, index: int, item: int, text: str) -> None:
        """Say that ``text`` was streamed for stage ``index`` (its item ``item``)."""


#: The current run's ledger (set by the engine for the run's tasks; None outside a run).
usage_sink: ContextVar[Ledger | None] = ContextVar("twinklr_usage_sink", default=None)
#: The index of the stage the current task runs (set by the engine in each stage's task).
current_stage: ContextVar[int] = ContextVar("twinklr_current_stage", default=-1)
#: The fan-out item the current task runs, where its usage is kept apart (a cached item).
current_item: ContextVar[int] = ContextVar("twinklr_current_item", default=-1)


def work_name() -> tuple[str, str, int] | None:
    """The current task's pipeline, stage and fan-out item (-1: none), None outside a
    stage (what names the work a stage sends to a cluster)."""
    sink = usage_sink.get()
    index = current_stage.get()
    if sink is None or index < 0:
        return None
    return sink.pipeline_name(), sink.stage_name(index) or "", current_item.get()


def usage_so_far(item: int | None) -> Usage | None:
    """What the current stage (its fan-out ``item``) has used in this run, if anything."""
    sink = usage_sink.get()
    if sink is None:
        return None
    return sink.used_by(current_stage.get(), -1 if item is None else item)


def record_streamed(text: str) -> None:
    """Say that an LLM streamed ``text`` for the current stage (an event; nothing
    outside a run)."""
    sink = usage_sink.get()
    if sink is not None:
        sink.streamed(current_stage.get(), current_item.get(), text)


def record_saved(usage: Usage) -> None:
    """Count ``usage`` as saved by the current run (a cache hit)."""
    sink = usage_sink.get()
    if sink is not None:
        sink.add_saved(usage)


def record_usage(usage: Usage, model: str | None = None) -> bool:
    """Count ``usage`` (of ``model``) for the stage this task runs; False outside any
    run."""
    sink = usage_sink.get()
    if sink is None:
        return False
    sink.add_usage(current_stage.get(), usage, model)
    return True


def check_budget(budget: Budget | None) -> None:
    """Raise `BudgetExceededError` when the current run has spent ``budget`` (a provider
    calls this before each request; nothing to check outside a run)."""
    sink = usage_sink.get()
    if budget is None or sink is None:
        return
    spent = sink.spent_in_all
    if budget.max_tokens is not None and spent.tokens >= budget.max_tokens:
        found, limit = f"{spent.tokens} tokens", f"{budget.max_tokens} tokens"
    elif (
        budget.max_cost_usd is not None
        and spent.cost_usd is not None
        and spent.cost_usd >= budget.max_cost_usd
    ):
        found, limit = f"${spent.cost_usd:.6f}", f"${budget.max_cost_usd:.6f}"
    else:
        return
    raise BudgetExceededError(sink.stage_name(current_stage.get()), found, limit)
