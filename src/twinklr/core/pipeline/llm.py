"""LLM providers and what their calls use and cost.

``OpenAIProvider`` (the ``openai`` extra) speaks to OpenAI and every server with its chat
completions API; ``FakeLLMProvider`` answers deterministically, offline. Every call a
provider makes inside a stage is counted for that stage, with nothing passed by hand:
``PipelineResult.usage`` and ``usage_by_stage`` (a `Usage` each); a stage calling a client
of its own says what it used with ``context.record_usage(...)``.
"""

from __future__ import annotations

from ._llm._anthropic import AnthropicProvider
from ._llm._fallback import FallbackProvider
from ._llm._openai import OpenAIProvider
from ._llm._provider import Completion, FakeLLMProvider, LLMProvider
from ._llm._ratelimit import RateLimiter
from ._values._usage import Budget, Prices, Usage
from .errors import BudgetExceededError, ProviderError

__all__ = [
    "AnthropicProvider",
    "Budget",
    "BudgetExceededError",
    "Completion",
    "FakeLLMProvider",
    "FallbackProvider",
    "LLMProvider",
    "OpenAIProvider",
    "Prices",
    "ProviderError",
    "RateLimiter",
    "Usage",
]

for _name in __all__:  # shown as living here, as the package's own names are
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("twinklr.core.pipeline._"):
        _obj.__module__ = __name__
del _name, _obj
