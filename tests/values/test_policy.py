"""The policy values: how a stage runs (ExecutionPattern) and is retried (RetryConfig)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from twinklr.core.pipeline import ExecutionPattern
from twinklr.core.pipeline.definition import RetryConfig


def test_retry_config_defaults_match_the_seed() -> None:
    config = RetryConfig()
    assert (config.max_attempts, config.initial_delay_ms, config.backoff_multiplier) == (1, 1000, 2)
    assert config.max_delay_ms == 60000
    assert config.retryable_errors is None


def test_delays_grow_exponentially_and_are_capped() -> None:
    config = RetryConfig(
        max_attempts=6, initial_delay_ms=100, backoff_multiplier=3, max_delay_ms=1000
    )
    assert [config.delay_ms(n) for n in range(1, 6)] == [100, 300, 900, 1000, 1000]


def test_retryable_errors_match_substrings() -> None:
    config = RetryConfig(retryable_errors=["timeout", "rate_limit"])
    assert config.retryable_errors == ("timeout", "rate_limit")
    assert config.is_retryable("RuntimeError: rate_limit exceeded")
    assert not config.is_retryable("ValueError: bad input")
    assert RetryConfig().is_retryable("anything")
    assert RetryConfig(retryable_errors="timeout").retryable_errors == ("timeout",)


def test_retryable_errors_match_whatever_the_case_as_the_original_did() -> None:
    config = RetryConfig(retryable_errors=["Rate_Limit", "TIMEOUT"])
    assert config.is_retryable("RuntimeError: rate_limit exceeded")
    assert config.is_retryable("StageTimeoutError: stage 'a' timed out after 5 ms (timeout)")
    assert config.is_retryable("ProviderError: RATE_LIMIT")
    assert not config.is_retryable("ValueError: bad input")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "RetryConfig.max_attempts must be an int >= 1, got 0"),
        ({"max_attempts": 1.5}, "RetryConfig.max_attempts must be an int >= 1, got 1.5"),
        ({"max_attempts": True}, "RetryConfig.max_attempts must be an int >= 1, got True"),
        ({"initial_delay_ms": -1}, "RetryConfig.initial_delay_ms must be a number >= 0, got -1"),
        ({"max_delay_ms": float("nan")}, "RetryConfig.max_delay_ms must be a number >= 0"),
        ({"backoff_multiplier": 0.5}, "RetryConfig.backoff_multiplier must be a number >= 1"),
        ({"backoff_multiplier": "2"}, "RetryConfig.backoff_multiplier must be a number >= 1"),
    ],
)
def test_bad_retry_values_are_refused_naming_the_field(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        RetryConfig(**kwargs)


def test_policy_values_are_the_definition_modules_own() -> None:
    # Defined beside the plan, shown and pickled as definition's, where users import them.
    for kind in (RetryConfig, ExecutionPattern):
        assert kind.__module__ == "twinklr.core.pipeline.definition"
    config = RetryConfig(3, 10, retryable_errors=["timeout"])
    assert b"twinklr.core.pipeline.definition" in pickle.dumps(config)
    assert pickle.loads(pickle.dumps(config)) == config  # noqa: S301 (our own bytes)
    fan_out = pickle.dumps(ExecutionPattern.FAN_OUT)
    assert pickle.loads(fan_out) is ExecutionPattern.FAN_OUT  # noqa: S301 (our own bytes)
