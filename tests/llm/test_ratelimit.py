"""The rate limiter: exact windows on the virtual clock, FIFO, cancellation-safe."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RateLimiter,
    StageDefinition,
    StageResult,
)


def windows_hold_at_most(times: list[float], weights: list[float], limit: float) -> bool:
    """No window [t, t + 60) starting at an admission holds more than ``limit``."""
    pairs = sorted(zip(times, weights, strict=True))
    return all(sum(w for u, w in pairs if t <= u < t + 60) <= limit + 1e-9 for t, _ in pairs)


async def test_120_requests_through_60_a_minute_take_one_minute(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=60)
    admitted: list[float] = []

    async def request() -> None:
        async with limiter.acquire():
            admitted.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(120):
            nursery.start_soon(request)
    assert admitted == [0.0] * 60 + [60.0] * 60
    assert trio.current_time() == 60
    assert windows_hold_at_most(admitted, [1] * 120, 60)
    stats = limiter.statistics()
    assert (stats.admitted, stats.waiting, stats.requests_in_window) == (120, 0, 60)
    assert stats.max_wait_s == 60
    assert stats.total_wait_s == 60 * 60


async def test_sequential_requests_are_spaced_by_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=2)
    admitted = []
    for _ in range(5):
        async with limiter.acquire() as waited:
            admitted.append((trio.current_time(), waited))
        await trio.sleep(1)
    assert admitted == [(0, 0), (1, 0), (60, 58), (61, 0), (120, 58)]


async def test_a_token_heavy_request_waits_for_capacity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(tokens_per_minute=1000)
    await limiter.wait_for_capacity(300)
    await trio.sleep(10)
    await limiter.wait_for_capacity(500)
    # 800 used; 500 more must wait until the first 300 leave the window (t=60)
    assert await limiter.wait_for_capacity(500) == 50
    assert trio.current_time() == 60
    assert limiter.statistics().tokens_in_window == 500 + 500
    # 1000 used; 1000 more must wait for both to leave (t=70 and t=120)
    assert await limiter.wait_for_capacity(1000) == 60


async def test_waiting_is_first_come_first_served(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(tokens_per_minute=100)
    await limiter.wait_for_capacity(100)
    order: list[str] = []

    async def request(name: str, tokens: int, delay: float) -> None:
        await trio.sleep(delay)
        await limiter.wait_for_capacity(tokens)
        order.append(f"{name}@{trio.current_time():g}")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(request, "big", 90, 1)
        nursery.start_soon(request, "small", 5, 2)  # would fit earlier, but waits its turn
    assert order == ["big@60", "small@60"]


async def test_a_cancelled_waiter_gives_its_place_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=1)
    await limiter.wait_for_capacity()
    order: list[str] = []

    async def request(name: str, delay: float) -> None:
        await trio.sleep(delay)
        await limiter.wait_for_capacity()
        order.append(f"{name}@{trio.current_time():g}")

    impatient = trio.CancelScope()

    async def first() -> None:
        with impatient:
            await request("first", 1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(request, "second", 2)
        await trio.sleep(30)
        assert limiter.statistics().waiting == 2
        impatient.cancel()
    assert order == ["second@60"]
    stats = limiter.statistics()
    assert (stats.admitted, stats.waiting) == (2, 0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.integers(0, 40)),  # (arrival s, tokens)
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 5),
)
def test_no_window_ever_holds_more_than_the_limits(
    requests: list[tuple[int, int]], rpm: int
) -> None:
    tpm = 60
    limiter = RateLimiter(requests_per_minute=rpm, tokens_per_minute=tpm)
    admitted: list[tuple[float, float]] = []
    arrivals: list[float] = []

    async def request(arrival: int, tokens: int) -> None:
        await trio.sleep(arrival)
        arrivals.append(trio.current_time())
        await limiter.wait_for_capacity(tokens)
        admitted.append((trio.current_time(), tokens))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for arrival, tokens in requests:
                nursery.start_soon(request, arrival, tokens)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    times = [t for t, _ in admitted]
    assert len(admitted) == len(requests)
    assert windows_hold_at_most(times, [1] * len(times), rpm)
    assert windows_hold_at_most(times, [w for _, w in admitted], tpm)


def test_bad_limits_and_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="requests_per_minute must be an int >= 1"):
        RateLimiter(requests_per_minute=0)
    with pytest.raises(ValueError, match="tokens_per_minute must be a finite number > 0"):
        RateLimiter(tokens_per_minute=-5)
    assert "requests_per_minute=3" in repr(RateLimiter(3))


async def test_requests_that_can_never_fit_are_refused() -> None:
    limiter = RateLimiter(tokens_per_minute=100, name="gpt")
    with pytest.raises(ValueError, match="a request of 101 tokens can never fit"):
        await limiter.wait_for_capacity(101)
    with pytest.raises(ValueError, match="tokens must be a finite number >= 0"):
        await limiter.wait_for_capacity(-1)


async def test_waits_appear_in_the_run_metrics(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(requests_per_minute=1)

    class Calls:
        name = "calls"

        async def execute(self, input: object, context: PipelineContext) -> StageResult[int]:
            limiter_ = context.limiter()
            assert limiter_ is not None
            async with limiter_.acquire(tokens=10):
                pass
            return StageResult.success(1)

    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", Calls()), StageDefinition("b", Calls(), inputs=["a"])]
    )
    context = PipelineContext(rate_limiter=limiter, rate_limiters={"gpt": limiter})
    result = await PipelineExecutor().execute(pipeline, None, context)
    assert result.metrics == {"rate_limit_requests": 2, "rate_limit_wait_ms": 60_000}
    assert context.rate_limiter is limiter
    assert context.limiter("gpt") is limiter
    with pytest.raises(LookupError, match=r"no rate limiter named 'other': .* are 'gpt'"):
        context.limiter("other")


def test_asking_for_a_limiter_that_is_not_there_says_what_to_configure() -> None:
    with pytest.raises(LookupError, match=r"no rate limiter is configured: .*rate_limiter="):
        PipelineContext().limiter()
    with pytest.raises(LookupError, match="named limiters are none"):
        PipelineContext().limiter("gpt")


async def test_a_provider_naming_a_missing_limiter_fails_its_stage_clearly() -> None:
    from twinklr.core.pipeline import FakeLLMProvider  # noqa: PLC0415 (this test's own)

    provider = FakeLLMProvider(limiter="gpt")

    async def ask(value: object, context: PipelineContext) -> str:
        return (await provider.complete("hi", context)).text

    result = await PipelineExecutor().execute(
        PipelineDefinition("p", [StageDefinition("a", ask)]), None, PipelineContext()
    )
    assert result.failed_stages == ("a",)
    assert "no rate limiter named 'gpt'" in str(result.error)


@pytest.mark.parametrize("tokens", [math.nan, math.inf, -math.inf, -1])
async def test_nan_infinite_or_negative_tokens_are_refused(tokens: float) -> None:
    limiter = RateLimiter(tokens_per_minute=100)
    with pytest.raises(ValueError, match="tokens must be a finite number >= 0"):
        await limiter.wait_for_capacity(tokens)
    assert limiter.statistics().admitted == 0
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        RateLimiter(tokens_per_minute=tokens)


def test_statistics_can_be_read_outside_trio() -> None:
    limiter = RateLimiter(requests_per_minute=5)
    trio.run(limiter.wait_for_capacity)
    stats = limiter.statistics()
    assert (stats.admitted, stats.requests_in_window) == (1, 1)


async def test_one_limiter_paces_several_concurrent_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=2)
    admitted: list[tuple[str, float]] = []

    class Call:
        name = "call"

        async def execute(self, input: str, context: PipelineContext) -> StageResult[str]:
            async with context.rate_limiter.acquire():
                admitted.append((input, trio.current_time()))
            return StageResult.success(input)

    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", Call()), StageDefinition("b", Call(), inputs=["a"])]
    )
    results = {}

    async def run(name: str) -> None:
        context = PipelineContext(rate_limiter=limiter)
        results[name] = await PipelineExecutor().execute(pipeline, name, context)

    async with trio.open_nursery() as nursery:
        for name in ("x", "y", "z"):
            nursery.start_soon(run, name)
    assert sorted(t for _, t in admitted) == [0, 0, 60, 60, 120, 120]
    assert all(result.success for result in results.values())
    assert windows_hold_at_most([t for _, t in admitted], [1] * 6, 2)
    # two runs start at once; the third's first call waits a minute, and everyone's second
    # call queues behind it, first come, first served
    waits = sorted(result.metrics["rate_limit_wait_ms"] for result in results.values())
    assert waits == [60_000, 120_000, 120_000]


async def test_a_pause_holds_every_waiter_and_newcomer_until_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=600)
    admitted: list[tuple[str, float]] = []

    async def call(name: str, at: float) -> None:
        await trio.sleep(at)
        await limiter.wait_for_capacity(1)
        admitted.append((name, trio.current_time()))

    await limiter.wait_for_capacity(1)  # admitted at 0, before any pause
    limiter.pause(5)
    limiter.pause(2)  # a shorter pause meanwhile keeps the longer one
    until = limiter.paused_until
    assert until == 5
    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "waiting", 0)
        nursery.start_soon(call, "newcomer", 3)
        nursery.start_soon(call, "after", 7)
    assert admitted == [("waiting", 5), ("newcomer", 5), ("after", 7)]
    assert limiter.paused_until is None
    with pytest.raises(ValueError, match="pause needs seconds >= 0, got -1"):
        limiter.pause(-1)


async def test_a_request_is_counted_at_what_it_used_once_settled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(tokens_per_minute=100)
    await limiter.wait_for_capacity(60)  # an estimate
    limiter.settle(60, 10)  # the answer said 10
    await limiter.wait_for_capacity(90)  # fits at once: 10 + 90
    assert trio.current_time() == 0
    limiter.settle(90, 130)  # more than the estimate (and the limit): counted as spent
    assert limiter.statistics().tokens_in_window == 140
    await limiter.wait_for_capacity(1)  # the window must let both go first
    assert trio.current_time() == 60
    limiter.settle(12345, 1)  # no request of that estimate: nothing changes
    with pytest.raises(ValueError, match="settle needs tokens >= 0, got -1"):
        limiter.settle(1, -1)
