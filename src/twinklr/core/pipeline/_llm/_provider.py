"""The LLM provider protocol for ``context.provider``, and a deterministic fake.

A provider takes a prompt and returns a `Completion` that says how many tokens it
used. Providers pace themselves with the context's rate limiter:
``async with context.rate_limiter.acquire(tokens=n): ...``.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs
import sniffio
import trio

from .._base._loops import run_in_trio
from .._values._context import work_metrics
from ..errors import ProviderError

if TYPE_CHECKING:
    from .._values._context import PipelineContext

_WORDS = (
    "sparkle", "chase", "wave", "twinkle", "fade", "strobe", "shimmer", "pulse",
    "ripple", "glow", "burst", "sweep", "flicker", "bloom", "cascade", "spin",
)  # fmt: skip


@attrs.frozen(kw_only=True)
class Completion:
    """A provider's answer."""

    text: str
    """The completion."""
    prompt_tokens: int = 0
    """Tokens the prompt used."""
    completion_tokens: int = 0
    """Tokens the completion used."""

    @property
    def tokens_used(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens


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
    calls: list[str] = attrs.field(factory=list)
    """Every prompt received, in order."""
    _failed_once: set[str] = attrs.field(factory=set, alias="_failed_once")

    async def complete(self, prompt: str, context: PipelineContext | None = None) -> Completion:
        """A deterministic completion of ``prompt`` (from Trio, or from an asyncio stage
        of an `aio` run: it then waits in the run's Trio loop)."""
        if sniffio.current_async_library() == "asyncio":
            completion: Completion = await run_in_trio(self.complete, prompt, context)
            return completion
        self.calls.append(prompt)
        digest = hashlib.sha256(f"{self.seed}|{prompt}".encode()).digest()
        count = 3 + digest[0] % max(1, self.max_words - 2)
        text = " ".join(_WORDS[digest[1 + i] % len(_WORDS)] for i in range(count))
        completion = Completion(
            text=text, prompt_tokens=len(prompt.split()), completion_tokens=count
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
        if context is not None:
            with work_metrics():  # a cache hit calls no provider: never replayed
                context.increment_metric("llm_requests")
                context.increment_metric("llm_tokens", completion.tokens_used)
        return completion

    def _should_fail(self, prompt: str) -> bool:
        if len(self.calls) <= self.fail_times or any(bad in prompt for bad in self.fail_on):
            return True
        for transient in self.fail_once_on:
            if transient in prompt and transient not in self._failed_once:
                self._failed_once.add(transient)
                return True
        return False
