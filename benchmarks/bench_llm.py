"""What OpenAIProvider costs over the bare ``openai`` SDK, and what usage accounting costs.

A local OpenAI-compatible server (Starlette on hypercorn, 127.0.0.1, in the same Trio
run) answers every call with usage. Timed, interleaved, best of --repeat: --calls
sequential calls made (a) with the bare SDK (``AsyncOpenAI.chat.completions.create``,
retries off) and (b) through ``OpenAIProvider.complete`` inside a pipeline stage (the
call counted for the stage, priced, the metrics written). Reported: microseconds per
call and (b)/(a). Then --load concurrent calls from a fan-out through one limiter, the
server refusing one in ten with a 429 (every call answered, usage equal to what the
server billed, the pause shared). Then usage accounting alone: a completion's usage counted for the
current stage of a run (``record_usage`` through the run's ledger), per call.

    python benchmarks/bench_llm.py [--calls 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import logging
import time
from typing import Any

import structlog
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from twinklr.core.pipeline import (
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    llm,
)
from twinklr.core.pipeline._llm._provider import Completion, counted
from twinklr.core.pipeline._values._usage import record_usage

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1_765_000_000,
    "model": "local-model",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class Counter:
    """What the server saw: requests, refusals, tokens billed."""

    requests = refused = billed = 0
    refuse_every = 0  # 0: never


async def chat(_request: Request) -> JSONResponse:
    Counter.requests += 1
    if Counter.refuse_every and Counter.requests % Counter.refuse_every == 0:
        Counter.refused += 1
        error = {"error": {"message": "slow down", "type": "rate_limit"}}
        return JSONResponse(error, status_code=429, headers={"retry-after-ms": "20"})
    Counter.billed += 4
    return JSONResponse(ANSWER)


APP: Any = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


async def bare(url: str, calls: int) -> float:
    import openai  # noqa: PLC0415

    async with openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client:
        await client.chat.completions.create(model="local-model", messages=[])  # warm
        start = time.perf_counter()
        for _ in range(calls):
            await client.chat.completions.create(
                model="local-model", messages=[{"role": "user", "content": "hello there"}]
            )
        return time.perf_counter() - start


async def through_provider(url: str, calls: int) -> float:
    provider = llm.OpenAIProvider("local-model", base_url=url, prices={"local-model": (1, 2)})
    elapsed = 0.0

    async def stage(_value: Any, context: PipelineContext) -> int:
        nonlocal elapsed
        await provider.complete("warm", context)
        start = time.perf_counter()
        for _ in range(calls):
            await provider.complete("hello there", context)
        elapsed = time.perf_counter() - start
        return calls

    async with provider:
        pipeline = PipelineDefinition("calls", [StageDefinition("calls", stage)])
        context = PipelineContext(provider=provider)
        result = await PipelineExecutor().execute(pipeline, None, context)
    assert result.usage.requests == calls + 1  # noqa: S101
    return elapsed


async def load(url: str, calls: int) -> None:
    """``calls`` concurrent calls from a fan-out through one limiter, the server refusing
    one in ten (429, retry-after-ms 20): all answered, usage exact, the pause shared."""
    from twinklr.core.pipeline import ExecutionPattern, RateLimiter  # noqa: PLC0415

    limiter = RateLimiter(requests_per_minute=1_000_000)
    provider = llm.OpenAIProvider("local-model", base_url=url, max_retries=5)

    async def ask(item: int, context: PipelineContext) -> str:
        return str((await provider.complete(f"call {item}", context)).text)

    async def items(count: int) -> list[int]:
        return list(range(count))

    pipeline = PipelineDefinition(
        "load",
        [
            StageDefinition("items", items),
            StageDefinition("ask", ask, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
        ],
    )
    Counter.requests = Counter.refused = Counter.billed = 0
    Counter.refuse_every = 10
    start = time.perf_counter()
    async with provider:
        context = PipelineContext(provider=provider, rate_limiter=limiter)
        result = await PipelineExecutor().execute(pipeline, calls, context)
    elapsed = time.perf_counter() - start
    Counter.refuse_every = 0
    usage = result.usage
    outcome = "all answered" if result.success else result.error
    print(
        f"{calls} concurrent calls, one in ten refused: {outcome}"
        f" in {elapsed:.2f} s; server saw {Counter.requests} requests ({Counter.refused} refused);"
        f" usage {usage.requests} requests, {usage.tokens} tokens against {Counter.billed} billed"
        f" ({'exact' if usage.tokens == Counter.billed else 'NOT exact'}); limiter admitted"
        f" {limiter.statistics().admitted} (calls and retries, each after the shared pause)"
    )


def accounting(calls: int, *, metrics: bool) -> float:
    """Seconds a call for counting a completion's usage for the current stage (and, with
    ``metrics``, in the context's request and token metrics, as providers always did)."""
    completion = Completion(text="ok", model="m", input_tokens=3, output_tokens=1, cost_usd=0.0)
    elapsed = 0.0

    async def stage(_value: Any, context: PipelineContext) -> int:
        nonlocal elapsed
        start = time.perf_counter()
        if metrics:
            for _ in range(calls):
                counted(completion, context)
        else:
            for _ in range(calls):
                record_usage(completion.usage)
        elapsed = time.perf_counter() - start
        return calls

    pipeline = PipelineDefinition("count", [StageDefinition("count", stage)])
    trio.run(PipelineExecutor().execute, pipeline)
    return elapsed / calls


async def main(calls: int, repeat: int, loaded: int) -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.loglevel = "WARNING"
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(serve, APP, config, mode="asgi"))
        url = f"{binds[0]}/v1"
        best = {"bare SDK": float("inf"), "provider": float("inf")}
        for _ in range(repeat):
            best["bare SDK"] = min(best["bare SDK"], await bare(url, calls))
            best["provider"] = min(best["provider"], await through_provider(url, calls))
        await load(url, loaded)
        nursery.cancel_scope.cancel()
    for name, seconds in best.items():
        print(f"{name:<10} {seconds / calls * 1e6:8.1f} µs a call")
    print(f"provider / bare SDK: {best['provider'] / best['bare SDK']:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--load", type=int, default=2000, help="concurrent calls, 1 in 10 refused")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    trio.run(main, args.calls, args.repeat, args.load)
    alone = min(accounting(100_000, metrics=False) for _ in range(args.repeat))
    print(f"usage accounting: {alone * 1e6:.2f} µs a call")
    with_metrics = min(accounting(100_000, metrics=True) for _ in range(args.repeat))
    print(f"with the llm_requests/llm_tokens metrics too: {with_metrics * 1e6:.2f} µs a call")
