"""aio: pipelines run from asyncio programs, stages written for asyncio.

These run under ``asyncio.run`` with real (short) times: Trio's virtual clock cannot
drive the asyncio loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import sniffio
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fixtures.http import served
from twinklr.core.pipeline import (
    EventKind,
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    PipelineValidationError,
    Proposal,
    RateLimiter,
    RefineStage,
    RetryConfig,
    RunStatus,
    RunStore,
    StageDefinition,
    StageResult,
    Verdict,
    WaitForInput,
    aio,
)
from twinklr.core.pipeline._engine import _guest
from twinklr.core.pipeline._engine._hosts import load_trio_asyncio


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    """``asyncio.run(main())``, then check that nothing was left behind."""

    async def checked() -> Any:
        before = asyncio.all_tasks()
        result = await main()
        assert asyncio.all_tasks() == before, "asyncio tasks left running"
        assert not _guest.guests, "the Trio guest run did not end"
        return result

    return asyncio.run(checked())


async def double(value: int) -> int:
    await asyncio.sleep(0.001)
    assert sniffio.current_async_library() == "asyncio"
    return value * 2


async def count_to(value: int) -> list[int]:
    await asyncio.sleep(0)
    return list(range(value))


async def square(value: int) -> int:
    await asyncio.sleep(0.001)
    return value * value


async def total(values: dict[str, Any]) -> int:
    await asyncio.sleep(0)
    return sum(values.values())


class Add:
    """A class stage written for asyncio."""

    name = "add"

    def __init__(self, amount: int) -> None:
        self.amount = amount

    async def execute(self, value: int, context: PipelineContext) -> StageResult[int]:
        lock = asyncio.Lock()
        async with lock:
            await asyncio.sleep(0)
        return StageResult.success(value + self.amount)


def test_every_pattern_runs_asyncio_stages_unchanged() -> None:
    async def stream(value: int) -> AsyncIterator[int]:
        for item in range(value):
            await asyncio.sleep(0)
            yield item

    async def gathered(value: int) -> list[int]:
        return list(await asyncio.gather(*(square(item) for item in range(value))))

    inner = PipelineDefinition("inner", [StageDefinition("twice", double)])
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("start", double),
            StageDefinition("add", Add(1), inputs=["start"]),
            StageDefinition(
                "squares", gathered, inputs=["start"], pattern=ExecutionPattern.PARALLEL
            ),
            StageDefinition("items", count_to, inputs=["add"]),
            StageDefinition("each", square, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
            StageDefinition("streamed", stream, inputs=["start"]),
            StageDefinition(
                "per_item", square, inputs=["streamed"], pattern=ExecutionPattern.FAN_OUT
            ),
            StageDefinition(
                "big_only",
                double,
                inputs=["start"],
                pattern=ExecutionPattern.CONDITIONAL,
                condition=lambda _context, value: value > 100,
            ),
            StageDefinition("sub", inner, inputs=["start"]),
            StageDefinition("sum", total, inputs=["start", "add"]),
        ],
    )
    result = run(lambda: aio.execute(pipeline, 2))
    assert result.success, result.error
    assert result.outputs["start"] == 4
    assert result.outputs["add"] == 5
    assert result.outputs["squares"] == [0, 1, 4, 9]
    assert result.outputs["each"] == [0, 1, 4, 9, 16]
    assert result.outputs["streamed"] == [0, 1, 2, 3]
    assert result.outputs["per_item"] == [0, 1, 4, 9]
    assert result.skipped_stages == ("big_only",)
    assert result.outputs["sub"] == {"twice": 8}
    assert result.outputs["sum"] == 9


def test_asyncio_stages_fail_retry_and_time_out_like_any_other() -> None:
    attempts: list[int] = []
    saw: list[str] = []

    async def flaky(value: int) -> int:
        attempts.append(value)
        await asyncio.sleep(0)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return value

    async def hangs(value: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append("cancelled")
            raise
        return value

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition(
                "flaky",
                flaky,
                retry_config=RetryConfig(max_attempts=3, initial_delay_ms=1),
            ),
            StageDefinition("hangs", hangs, timeout_ms=20, critical=False),
        ],
    )
    started = time.monotonic()
    result = run(lambda: aio.execute(pipeline, 7))
    assert time.monotonic() - started < 5
    assert result.outputs["flaky"] == 7
    assert result.stage_results["flaky"].metadata["attempts"] == 3
    assert result.failed_stages == ("hangs",)
    assert "timed out" in str(result.stage_results["hangs"].error)
    assert saw == ["cancelled"]


@pytest.mark.parametrize("failing_loop", ["asyncio", "trio"])
def test_fail_fast_cancels_running_asyncio_stages_and_starts_no_more(failing_loop: str) -> None:
    saw: list[str] = []

    async def slow(value: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append("slow cancelled")
            raise
        return value

    async def fails_asyncio(value: int) -> int:
        await asyncio.sleep(0.01)
        raise ValueError("broken")

    @aio.trio_native
    async def fails_trio(value: int) -> int:
        await trio.sleep(0.01)
        raise ValueError("broken")

    async def after(value: int) -> int:
        saw.append("after ran")
        return value

    fails = fails_asyncio if failing_loop == "asyncio" else fails_trio
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("slow", slow),
            StageDefinition("fails", fails),
            StageDefinition("after", after, inputs=["fails"]),
        ],
    )
    started = time.monotonic()
    result = run(lambda: aio.execute(pipeline, 1))
    assert time.monotonic() - started < 5
    assert not result.success
    assert result.failed_stages == ("fails",)
    assert result.cancelled_stages == ("slow",)
    assert saw == ["slow cancelled"]


def test_an_outer_timeout_cancels_the_whole_run_and_raises_to_the_caller() -> None:
    saw: list[str] = []

    async def slow(value: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append(f"cancelled {value}")
            raise
        return value

    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", slow), StageDefinition("b", slow, inputs=["a"])]
    )

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await aio.execute(pipeline, 1)
        return time.monotonic() - started

    took = run(main)
    assert took < 5
    assert saw == ["cancelled 1"]


def test_cancelling_the_awaiting_task_raises_cancelled_error_after_the_run_ends() -> None:
    ended: list[str] = []

    async def slow(value: int) -> int:
        try:
            await asyncio.sleep(30)
        finally:
            ended.append("stage ended")
        return value

    pipeline = PipelineDefinition("p", [StageDefinition("a", slow)])

    async def main() -> None:
        task = asyncio.create_task(aio.execute(pipeline, 1))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ended == ["stage ended"]  # before the caller saw CancelledError

    run(main)


def test_concurrent_runs_share_one_trio_run_and_one_rate_limiter() -> None:
    # Two requests per 0.2 s window: of six requests (two runs, three stages each),
    # two go at once, two after one window, two after two.
    limiter = RateLimiter(requests_per_minute=2, window_s=0.2)
    admitted: list[float] = []
    tokens: set[object] = set()

    async def call(value: int, context: PipelineContext) -> int:
        async with context.rate_limiter.acquire():
            admitted.append(time.monotonic())
        return value

    @aio.trio_native
    async def note_the_run(value: int) -> int:
        tokens.add(trio.lowlevel.current_trio_token())
        return value

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("run", note_the_run),
            StageDefinition("a", call, inputs=["run"]),
            StageDefinition("b", call, inputs=["a"]),
            StageDefinition("c", call, inputs=["b"]),
        ],
    )

    async def main() -> list[Any]:
        contexts = [PipelineContext(rate_limiter=limiter) for _ in range(2)]
        return list(
            await asyncio.gather(*(aio.execute(pipeline, i, contexts[i]) for i in range(2)))
        )

    started = time.monotonic()
    results = run(main)
    assert all(result.success for result in results)
    assert len(tokens) == 1  # one Trio run served both
    offsets = sorted(at - started for at in admitted)
    assert len(offsets) == 6
    assert offsets[1] < 0.15
    assert 0.19 <= offsets[2] < 0.35
    assert offsets[4] >= 0.39
    for result in results:
        assert result.metrics["rate_limit_requests"] == 3  # each run's own waits


def test_the_limiter_keeps_its_window_across_runs_one_after_another() -> None:
    limiter = RateLimiter(requests_per_minute=1, window_s=0.2)

    async def call(value: int, context: PipelineContext) -> float:
        return await context.rate_limiter.wait_for_capacity()

    pipeline = PipelineDefinition("p", [StageDefinition("a", call)])

    async def main() -> list[Any]:
        first = await aio.execute(pipeline, 1, PipelineContext(rate_limiter=limiter))
        second = await aio.execute(pipeline, 2, PipelineContext(rate_limiter=limiter))
        return [first.outputs["a"], second.outputs["a"]]

    waits = run(main)
    assert waits[0] < 0.05
    assert 0.1 < waits[1] <= 0.25  # the first run's request still counted


def test_a_refine_loop_takes_an_asyncio_planner_and_judge() -> None:
    class Planner:
        async def propose(
            self, value: str, feedback: str | None, context: PipelineContext
        ) -> Proposal[str]:
            await asyncio.sleep(0)
            return Proposal(output=f"{value}{'!' if feedback else ''}", tokens_used=3)

    class Judge:
        async def evaluate(self, candidate: str, context: PipelineContext) -> Verdict:
            await asyncio.sleep(0)
            accepted = candidate.endswith("!")
            return Verdict(accepted=accepted, score=1.0 if accepted else 0.0, feedback="more")

    pipeline = PipelineDefinition(
        "p", [StageDefinition("plan", RefineStage(Planner(), Judge(), name="plan"))]
    )
    result = run(lambda: aio.execute(pipeline, "go"))
    assert result.success, result.error
    assert result.outputs["plan"] == "go!"
    assert result.metrics["plan_iterations"] == 2


def test_trio_stages_run_from_asyncio_with_stage_loop_trio() -> None:
    async def trio_stage(value: int) -> int:
        await trio.sleep(0.001)
        return value + 1

    async def asyncio_stage(value: int) -> int:
        await asyncio.sleep(0.001)
        return value * 10

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("trio", trio_stage),
            StageDefinition("asyncio", aio.asyncio_native(asyncio_stage), inputs=["trio"]),
        ],
    )
    result = run(lambda: aio.execute(pipeline, 1, stage_loop="trio"))
    assert result.success, result.error
    assert result.outputs["asyncio"] == 20
    # The default: unmarked stages are asyncio code, so a Trio stage fails clearly.
    failed = run(lambda: aio.execute(pipeline, 1))
    assert failed.failed_stages == ("trio",)
    assert failed.stage_results["trio"].error == (
        "stage 'trio' awaited Trio code as an asyncio task: under aio.execute a stage runs "
        "on asyncio unless it is marked as Trio code; mark it with aio.trio_native, or run "
        'unmarked stages in Trio with stage_loop="trio"'
    )


def test_aio_awaited_from_trio_says_to_use_the_executor() -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("a", double)])
    with pytest.raises(RuntimeError, match=r"in a Trio program, call PipelineExecutor\(\)\.ex"):
        trio.run(aio.execute, pipeline)

    async def starts() -> None:
        await aio.start(pipeline)

    with pytest.raises(RuntimeError, match=r"call PipelineExecutor\(\)\.start\(\.\.\.\)"):
        trio.run(starts)


def test_context_writes_of_asyncio_stages_are_cached_and_replayed() -> None:
    calls: list[int] = []

    async def remember(value: int, context: PipelineContext) -> int:
        calls.append(value)
        await asyncio.sleep(0)
        context.set_state("seen", value)
        return value

    pipeline = PipelineDefinition("p", [StageDefinition("a", remember)])
    executor = PipelineExecutor(cache=MemoryCacheStore())

    async def main() -> list[Any]:
        first_context, second_context = PipelineContext(), PipelineContext()
        first = await aio.execute(pipeline, 5, first_context, executor=executor)
        second = await aio.execute(pipeline, 5, second_context, executor=executor)
        return [first, second, second_context.state]

    first, second, state = run(main)
    assert calls == [5]
    assert second.cached_stages == ("a",)
    assert state == {"seen": 5}
    assert first.outputs == second.outputs


def test_start_gives_a_handle_to_watch_cancel_and_wait_for_from_asyncio() -> None:
    async def slow(value: int) -> int:
        await asyncio.sleep(30)
        return value

    pipeline = PipelineDefinition(
        "p", [StageDefinition("quick", double), StageDefinition("slow", slow, inputs=["quick"])]
    )
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def main() -> None:
        handle = await aio.start(pipeline, 1, events=queue)
        assert handle.status is RunStatus.RUNNING
        assert handle.result is None
        kinds = []
        async for event in handle.events():
            kinds.append((event.kind, event.stage))
            if event.kind is EventKind.STAGE_STARTED and event.stage == "slow":
                handle.cancel()
        result = await handle.wait()
        assert handle.status.value == "cancelled"
        assert result.cancelled
        assert result.outputs == {"quick": 2}
        assert kinds[0] == (EventKind.RUN_STARTED, None)
        assert kinds[-1] == (EventKind.RUN_FINISHED, None)
        assert (EventKind.STAGE_CANCELLED, "slow") in kinds
        queued = [queue.get_nowait() for _ in range(queue.qsize())]
        assert [(event.kind, event.stage) for event in queued] == kinds
        # A reader that comes after the end gets every event too.
        late = [event.kind async for event in handle.events()]
        assert late == [kind for kind, _ in kinds]

    run(main)


def test_a_handle_read_only_after_the_run_still_has_every_event() -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("a", double)])

    async def main() -> list[EventKind]:
        handle = await aio.start(pipeline, 1)
        await handle.wait()
        return [event.kind async for event in handle.events()]

    kinds = run(main)
    assert kinds[0] is EventKind.RUN_STARTED
    assert kinds[-1] is EventKind.RUN_FINISHED
    assert EventKind.STAGE_SUCCEEDED in kinds


def test_an_invalid_definition_raises_before_anything_starts() -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("a", double, inputs=["nope"])])

    async def main() -> None:
        with pytest.raises(PipelineValidationError, match="nope"):
            await aio.execute(pipeline, 1)
        with pytest.raises(ValueError, match="stage_loop must be"):
            await aio.execute(pipeline, 1, stage_loop="curio")  # type: ignore[arg-type]

    run(main)


def test_a_keyboard_interrupt_inside_a_run_propagates() -> None:
    async def interrupted(value: int) -> int:
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    pipeline = PipelineDefinition("p", [StageDefinition("a", interrupted)])
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(aio.execute(pipeline, 1))
    _guest.guests.clear()


def test_an_asyncio_task_cancelled_from_outside_fails_its_stage() -> None:
    async def cancels_itself(value: int) -> int:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)
        return value

    pipeline = PipelineDefinition("p", [StageDefinition("a", cancels_itself)])
    result = run(lambda: aio.execute(pipeline, 1))
    assert result.failed_stages == ("a",)
    assert "cancelled from outside the pipeline run" in str(result.error)


def test_trio_code_called_from_asyncio_outside_a_run_says_what_to_do() -> None:
    limiter = RateLimiter(requests_per_minute=5)

    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"aio\.execute"):
            await limiter.wait_for_capacity()

    asyncio.run(main())


def test_marking_an_object_that_takes_no_attributes_says_so() -> None:
    with pytest.raises(TypeError, match="cannot mark 3 as trio code"):
        aio.trio_native(3)


def lookup_service(hits: list[str], hung_up: list[str]) -> Starlette:
    """A local HTTP service the stages call: ``/word/<w>`` answers its length;
    ``/slow`` answers after 30 s (unless the caller hangs up first)."""

    async def word(request: Request) -> Response:
        hits.append(request.path_params["word"])
        await asyncio.sleep(0.002)
        return JSONResponse({"length": len(request.path_params["word"])})

    async def slow(request: Request) -> Response:
        for _ in range(3000):  # 30 s, unless the caller hangs up first
            if await request.is_disconnected():
                hung_up.append("slow")
                break
            await asyncio.sleep(0.01)
        return JSONResponse({})

    return Starlette(
        routes=[Route("/word/{word}", word), Route("/slow", slow)],
    )


def test_stages_call_an_http_service_through_an_asyncio_client() -> None:
    hits: list[str] = []
    hung_up: list[str] = []
    words = ["deck", "the", "halls", "with", "boughs", "of", "holly"]

    async def main() -> tuple[Any, Any]:
        async with (
            served(lookup_service(hits, hung_up)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):

            async def split(text: str) -> list[str]:
                return text.split()

            async def length(word: str) -> int:
                answer = await client.get(f"/word/{word}")
                answer.raise_for_status()
                return int(answer.json()["length"])

            async def stalls(value: str) -> None:
                await client.get("/slow")

            async def fails(value: str) -> None:
                await asyncio.sleep(0.05)
                raise ValueError("the planner gave up")

            lengths = PipelineDefinition(
                "lengths",
                [
                    StageDefinition("words", split),
                    StageDefinition(
                        "lengths",
                        length,
                        inputs=["words"],
                        pattern=ExecutionPattern.FAN_OUT,
                        max_concurrent_fan_out=3,
                    ),
                ],
            )
            broken = PipelineDefinition(
                "broken", [StageDefinition("stalls", stalls), StageDefinition("fails", fails)]
            )
            done = await aio.execute(lengths, " ".join(words))
            failed = await aio.execute(broken, "x")
            # the hung-up request ends on the server's side too
            for _ in range(500):
                if hung_up:
                    break
                await asyncio.sleep(0.01)
        return done, failed

    done, failed = run(main)
    assert done.success, done.error
    assert done.outputs["lengths"] == [len(word) for word in words]
    assert sorted(hits) == sorted(words)
    assert failed.failed_stages == ("fails",)
    assert failed.cancelled_stages == ("stalls",)
    assert hung_up == ["slow"]


def test_an_executor_awaited_from_asyncio_runs_its_pipeline_on_that_loop() -> None:
    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", double), StageDefinition("b", Add(1), inputs=["a"])]
    )
    executor = PipelineExecutor()
    result = run(lambda: executor.execute(pipeline, 20))
    assert result.outputs == {"a": 40, "b": 41}

    async def with_a_trio_channel() -> None:
        send, _ = trio.open_memory_channel[Any](1)
        with pytest.raises(TypeError, match=r"aio\.execute\(pipeline, \.\.\., events=asyncio"):
            await executor.execute(pipeline, 1, events=send)

    run(with_a_trio_channel)


def test_setting_the_contexts_cancel_token_cancels_the_run() -> None:
    saw: list[str] = []

    async def slow(value: int, context: PipelineContext) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append(f"cancelled, is_cancelled={context.is_cancelled()}")
            raise
        return value

    pipeline = PipelineDefinition("p", [StageDefinition("a", slow)])

    async def main() -> Any:
        token = asyncio.Event()
        context = PipelineContext(cancel_token=token)
        asyncio.get_running_loop().call_later(0.02, token.set)
        return await aio.execute(pipeline, 1, context)

    result = run(main)
    assert result.cancelled
    assert result.cancelled_stages == ("a",)
    assert result.metadata is result.metrics
    assert saw == ["cancelled, is_cancelled=True"]


def on_trio_asyncio(main: Callable[[], Awaitable[Any]]) -> Any:
    """``main()`` as the asyncio code of a Trio program, on a trio-asyncio loop."""
    trio_asyncio = load_trio_asyncio()

    async def checked() -> Any:
        before = asyncio.all_tasks()
        result = await main()
        assert asyncio.all_tasks() == before, "asyncio tasks left running"
        assert not _guest.guests, "the pipeline's Trio side did not end"
        return result

    return trio_asyncio.run(trio_asyncio.aio_as_trio(checked))


def test_on_a_trio_asyncio_loop_runs_go_in_the_trio_run_already_there() -> None:
    hosts: list[str] = []

    @aio.trio_native
    async def on_trio(value: int) -> int:
        await trio.sleep(0.001)
        hosts.append(sniffio.current_async_library())
        return value + 1

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", count_to),
            StageDefinition("each", square, inputs=["items"], pattern=ExecutionPattern.FAN_OUT),
            StageDefinition("start", double),
            StageDefinition("after", on_trio, inputs=["start"]),
        ],
    )

    async def main() -> tuple[PipelineResult, PipelineResult]:
        return await asyncio.gather(aio.execute(pipeline, 3), aio.execute(pipeline, 4))

    first, second = on_trio_asyncio(main)
    assert first.outputs == {"items": [0, 1, 2], "each": [0, 1, 4], "start": 6, "after": 7}
    assert second.outputs["after"] == 9
    assert hosts == ["trio", "trio"]


def test_on_a_trio_asyncio_loop_fail_fast_and_the_callers_timeout_cancel_stages() -> None:
    saw: list[str] = []

    async def slow(value: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            saw.append(f"cancelled {value}")
            raise
        return value

    async def fails(value: int) -> int:
        await asyncio.sleep(0.01)
        raise ValueError("broken")

    failing = PipelineDefinition(
        "p", [StageDefinition("slow", slow), StageDefinition("fails", fails)]
    )
    waiting = PipelineDefinition("w", [StageDefinition("slow", slow)])

    async def main() -> PipelineResult:
        result = await aio.execute(failing, 1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await aio.execute(waiting, 2)
        return result

    started = time.monotonic()
    result = on_trio_asyncio(main)
    assert time.monotonic() - started < 5
    assert result.failed_stages == ("fails",)
    assert result.cancelled_stages == ("slow",)
    assert saw == ["cancelled 1", "cancelled 2"]


async def asked(handle: aio.AsyncioRunHandle) -> None:
    """Until the run's gate asks for input."""
    async for event in handle.events():
        if event.kind is EventKind.INPUT_REQUESTED:
            return


def test_an_asyncio_service_answers_and_suspends_gates_through_its_handle(
    tmp_path: Any,
) -> None:
    pipeline = PipelineDefinition(
        "gated",
        [
            StageDefinition("approve", WaitForInput("render this?")),
            StageDefinition("render", double, inputs=["approve"]),
        ],
    )
    executor = PipelineExecutor(cache=MemoryCacheStore(), runs=RunStore(tmp_path))

    async def main() -> tuple[PipelineResult, PipelineResult]:
        handle = await aio.start(pipeline, 3, executor=executor)
        await asked(handle)
        (request,) = handle.waiting()  # plain calls, as on a Trio RunHandle
        assert (request.stage_id, request.prompt, request.input) == ("approve", "render this?", 3)
        with pytest.raises(LookupError, match="the run has no stage 'nope'"):
            handle.respond("nope", 1)
        handle.respond("approve", 21)
        answered = await handle.wait()
        with pytest.raises(LookupError, match="already been answered"):
            handle.respond("approve", 1)
        other = await aio.start(pipeline, 4, executor=executor)
        await asked(other)
        other.suspend()
        return answered, await other.wait()

    answered, suspended = run(main)
    assert answered.outputs == {"approve": 21, "render": 42}
    assert suspended.waiting_stages == ("approve",)
    no_store = PipelineExecutor()

    async def unsuspendable() -> None:
        handle = await aio.start(pipeline, 1, executor=no_store)
        with pytest.raises(RuntimeError, match="cannot be suspended"):
            handle.suspend()
        handle.cancel()
        await handle.wait()

    run(unsuspendable)
