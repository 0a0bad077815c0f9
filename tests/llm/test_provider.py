"""The provider protocol and the deterministic fake provider."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    Completion,
    FakeLLMProvider,
    LLMProvider,
    PipelineContext,
    ProviderError,
    RateLimiter,
)


async def test_the_same_seed_and_prompt_give_the_same_answer() -> None:
    first, second = FakeLLMProvider(seed=1), FakeLLMProvider(seed=1)
    assert isinstance(first, LLMProvider)
    a = await first.complete("theme for a calm song")
    assert a == await second.complete("theme for a calm song")
    assert a.prompt_tokens == 5
    assert 3 <= a.completion_tokens <= 8
    assert a.tokens_used == a.prompt_tokens + a.completion_tokens
    assert len(a.text.split()) == a.completion_tokens
    others = {(await FakeLLMProvider(seed=s).complete("theme")).text for s in range(5)}
    assert len(others) > 1


async def test_it_can_be_told_to_fail_or_be_slow(autojump_clock: trio.testing.MockClock) -> None:
    provider = FakeLLMProvider(latency_s=2, fail_times=1, fail_on=("forbidden",))
    with pytest.raises(ProviderError, match="rate_limit"):
        await provider.complete("hello")
    assert trio.current_time() == 2
    assert isinstance(await provider.complete("hello"), Completion)
    with pytest.raises(ProviderError):
        await provider.complete("a forbidden prompt")
    assert provider.calls == ["hello", "hello", "a forbidden prompt"]


async def test_it_paces_itself_with_the_contexts_limiter_and_reports_usage(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=2)
    named = RateLimiter(requests_per_minute=1, name="gpt")
    context = PipelineContext(rate_limiter=limiter, rate_limiters={"gpt": named})
    provider = FakeLLMProvider()
    for _ in range(3):
        await provider.complete("plan the roofline", context)
    assert trio.current_time() == 60
    assert limiter.statistics().admitted == 3
    answer = await FakeLLMProvider(limiter="gpt").complete("x", context)
    assert named.statistics().tokens_admitted == answer.tokens_used
    assert context.metrics["llm_requests"] == 4
    assert (
        context.metrics["llm_tokens"] == limiter.statistics().tokens_admitted + answer.tokens_used
    )


async def test_fail_once_on_fails_the_first_matching_prompt_only() -> None:
    provider = FakeLLMProvider(fail_once_on=("theme",))
    await provider.complete("plan")
    with pytest.raises(ProviderError):
        await provider.complete("theme for x")
    await provider.complete("theme for x")
