"""What LLM calls used, and what they cost: a value per call, added up per stage and per
run, and the run's current stage that a provider's call is attributed to.

A provider reports each call's `Usage` with `record_usage`; the engine sets, for each
stage's task, where that goes (``usage_recorder``), so nothing is passed by hand: a call
made anywhere inside a stage (in a helper, in an asyncio task or a worker thread it
started, both of which copy the context) counts for that stage.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar

import attrs

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


#: Where the current run adds what its stages' LLM calls used: ``add(stage_index,
#: usage)`` (set by the engine for the run's tasks; None outside a run).
usage_sink: ContextVar[Callable[[int, Usage], None] | None] = ContextVar(
    "twinklr_usage_sink", default=None
)
#: The index of the stage the current task runs (set by the engine in each stage's task).
current_stage: ContextVar[int] = ContextVar("twinklr_current_stage", default=-1)


def record_usage(usage: Usage) -> bool:
    """Count ``usage`` for the stage this task runs; False outside any run."""
    sink = usage_sink.get()
    if sink is None:
        return False
    sink(current_stage.get(), usage)
    return True
