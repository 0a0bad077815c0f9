"""PipelineContext: services, shared state, metrics, frozen snapshots."""

from __future__ import annotations

import copy

import pytest

from twinklr.core.pipeline import PipelineContext


def test_services_are_injected() -> None:
    provider, config, job = object(), {"a": 1}, {"song": "x"}
    context = PipelineContext(provider=provider, config=config, job_config=job)
    assert context.provider is provider
    assert context.config is config
    assert context.job_config is job


def test_state_and_metrics() -> None:
    context = PipelineContext()
    assert context.get_state("has_lyrics", False) is False  # noqa: FBT003 (the seed's spelling)
    context.set_state("has_lyrics", True)  # noqa: FBT003
    assert context.get_state("has_lyrics") is True
    context.add_metric("duration_ms", 1200)
    context.increment_metric("llm_calls")
    context.increment_metric("llm_calls", 2)
    assert context.metrics == {"duration_ms": 1200, "llm_calls": 3}
    assert context.get_metric("llm_calls") == 3
    assert context.get_metric("nope", 0) == 0
    assert context.state == {"has_lyrics": True}


def test_snapshot_is_a_frozen_copy() -> None:
    context = PipelineContext()
    context.set_state("k", 1)
    context.add_metric("m", 2)
    snapshot = context.snapshot()
    context.set_state("k", 5)
    assert snapshot.state == {"k": 1}
    assert snapshot.metrics == {"m": 2}
    with pytest.raises(TypeError):
        snapshot.state["k"] = 3  # type: ignore[index]


def test_services_may_be_given_positionally() -> None:
    context = PipelineContext("llm", {"c": 1}, {"j": 2})
    assert (context.provider, context.config, context.job_config) == ("llm", {"c": 1}, {"j": 2})


async def test_an_unset_rate_limiter_is_false_and_says_what_to_configure_when_used() -> None:
    for context in (PipelineContext(), PipelineContext(rate_limiter=None)):
        assert not context.rate_limiter
        assert "rate_limiter=None" in repr(context)
        with pytest.raises(LookupError, match=r"no rate limiter is configured: .*rate_limiter="):
            async with context.rate_limiter.acquire(tokens=5):
                pass
        with pytest.raises(LookupError, match="no rate limiter is configured"):
            await context.rate_limiter.wait_for_capacity()
        with pytest.raises(LookupError, match="no rate limiter is configured"):
            context.rate_limiter.statistics()  # type: ignore[attr-defined]
    assert not copy.deepcopy(PipelineContext()).rate_limiter
