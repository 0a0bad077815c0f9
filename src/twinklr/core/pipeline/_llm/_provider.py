"""The LLM provider protocol for ``context.provider``, and a deterministic fake.

A provider takes a prompt and returns a `Completion` that says how many tokens it
used. Providers pace themselves with the context's rate limiter:
``async with context.rate_limiter.acquire(tokens=n): ...``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import sniffio
import trio

from .._base._loops import run_in_trio
from .._values._context import current_context, work_metrics
from .._values._usage import Prices, Usage, check_budget, cost_of, record_usage
from ..errors import ProviderError

if TYPE_CHECKING:
    from .._values._context import PipelineContext

_WORDS = (
    "sparkle", "chase", "wave", "twinkle", "fade", "strobe", "shimmer", "pulse",
    "ripple", "glow", "burst", "sweep", "flicker", "bloom", "cascade", "spin",
)  # fmt: skip


@attrs.frozen(init=False)
class Completion:
    """A provider's answer: its text, the model that gave it, and what it used."""

    text: str
    """The completion."""
    model: str | None
    """The model that answered (a fallback's, when the first could not)."""
    input_tokens: int
    """Tokens the prompt used (``prompt_tokens`` too)."""
    output_tokens: int
    """Tokens the completion used (``completion_tokens`` too)."""
    cached_input_tokens: int
    """Of ``input_tokens``, those served from the provider's prompt cache."""
    cost_usd: float | None
    """What the call cost in US dollars; None when the price is not known."""
    parsed: Any
    """The answer as the ``output_type`` asked for (a validated pydantic model), or None."""

    def __init__(
        self,
        *,
        text: str,
        model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cached_input_tokens: int = 0,
        cost_usd: float | None = None,
        parsed: Any = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
    ) -> None:
        self.__attrs_init__(
            text=text,
            model=model,
            input_tokens=_either(input_tokens, prompt_tokens, "input_tokens", "prompt_tokens"),
            output_tokens=_either(
                output_tokens, completion_tokens, "output_tokens", "completion_tokens"
            ),
            cached_input_tokens=cached_input_tokens,
            cost_usd=cost_usd,
            parsed=parsed,
        )

    @property
    def prompt_tokens(self) -> int:
        """``input_tokens``, by its older name."""
        return self.input_tokens

    @property
    def completion_tokens(self) -> int:
        """``output_tokens``, by its older name."""
        return self.output_tokens

    @property
    def tokens_used(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens

    @property
    def usage(self) -> Usage:
        """What this call used, as a `Usage` of one request."""
        return Usage(
            requests=1,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_input_tokens,
            cost_usd=self.cost_usd,
        )


def within_budget(context: PipelineContext | None) -> None:
    """Raise `BudgetExceededError` when the run has spent the budget of ``context``
    (else of the run's own context): before a request is sent."""
    given = context if context is not None else current_context.get()
    check_budget(getattr(given, "budget", None))


def counted(completion: Completion, context: PipelineContext | None) -> Completion:
    """``completion``, once its usage is counted for the stage the call was made in (and
    in the context's ``llm_requests`` and ``llm_tokens`` metrics)."""
    record_usage(completion.usage, completion.model)
    if context is not None:
        with work_metrics():  # a cache hit calls no provider: never replayed
            context.increment_metric("llm_requests")
            context.increment_metric("llm_tokens", completion.tokens_used)
    return completion


def _either(value: int | None, older: int | None, name: str, older_name: str) -> int:
    if value is not None and older is not None and value != older:
        msg = f"Completion got {name}={value} and {older_name}={older}: give one"
        raise ValueError(msg)
    return value if value is not None else (older or 0)


@runtime_checkable
class LLMProvider(Protocol):
    """What stages expect of ``context.provider``."""

    async def complete(self, prompt: str, context: PipelineContext | None = None) -> Completion:
        """Answer ``prompt``; pace with ``context``'s rate limiter when it has one."""
        ...


@attrs.define(kw_only=True)
class FakeLLMProvider:
    """A deterministic provider for tests and demos: the same seed and prompt always give
    the same completion. Tokens are words.

    It waits for the context's rate limiter (``limiter`` names one of
    ``context.rate_limiters``; None: the default), sleeps ``latency_s``, and raises
    `ProviderError` for its first ``fail_times`` calls, for prompts containing any
    of ``fail_on``, and once for each of ``fail_once_on``. ``calls`` records every prompt.
    """

    seed: int = 0
    """Changes every answer."""
    latency_s: float = 0.0
    """How long each call takes (Trio time)."""
    max_words: int = 8
    """Completions have 3 to ``max_words`` words."""
    fail_times: int = 0
    """The first this many calls fail."""
    fail_on: tuple[str, ...] = ()
    """Prompts containing any of these fail, every time."""
    fail_once_on: tuple[str, ...] = ()
    """The first prompt containing each of these fails (a transient error to retry)."""
    error: str = "rate_limit: the fake provider was told to fail"
    """The failures' message."""
    limiter: str | None = None
    """Which of the context's limiters to wait for (None: ``context.rate_limiter``)."""
    model: str = "fake-llm"
    """The model name its completions carry (and price by)."""
    prices: Prices | None = None
    """Prices by model (per million tokens, see `llm.Usage`), for its completions' cost."""
    calls: list[str] = attrs.field(factory=list)
    """Every prompt received, in order."""
    _failed_once: set[str] = attrs.field(factory=set, alias="_failed_once")

    async def complete(self, prompt: str, context: PipelineContext | None = None) -> Completion:
        """A deterministic completion of ``prompt`` (from Trio, or from an asyncio stage
        of an `aio` run: it then waits in the run's Trio loop)."""
        if sniffio.current_async_library() == "asyncio":
            completion: Completion = await run_in_trio(self.complete, prompt, context)
            return completion
        within_budget(context)
        self.calls.append(prompt)
        digest = hashlib.sha256(f"{self.seed}|{prompt}".encode()).digest()
        count = 3 + digest[0] % max(1, self.max_words - 2)
        text = " ".join(_WORDS[digest[1 + i] % len(_WORDS)] for i in range(count))
        used = len(prompt.split())
        completion = Completion(
            text=text,
            model=self.model,
            input_tokens=used,
            output_tokens=count,
            cost_usd=cost_of(self.model, used, count, prices=self.prices),
        )
        limiter = None
        if context is not None:  # a named limiter must exist; the default one may not
            limiter = (
                context.rate_limiter if self.limiter is None else context.limiter(self.limiter)
            )
        if limiter:
            await limiter.wait_for_capacity(completion.tokens_used)
        await trio.sleep(self.latency_s)
        if self._should_fail(prompt):
            raise ProviderError(self.error)
        return counted(completion, context)

    def _should_fail(self, prompt: str) -> bool:
        if len(self.calls) <= self.fail_times or any(bad in prompt for bad in self.fail_on):
            return True
        for transient in self.fail_once_on:
            if transient in prompt and transient not in self._failed_once:
                self._failed_once.add(transient)
                return True
        return False
