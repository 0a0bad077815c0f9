"""Plain async functions as stages: under every pattern, retried, timed out, cached."""

from __future__ import annotations

import enum
import importlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from twinklr.core.pipeline import (
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineValidationError,
    RetryConfig,
    StageDefinition,
    StageResult,
    StageStatus,
    SyncStage,
    stage,
)
from twinklr.core.pipeline._kinds._function import (
    UNREADABLE,
    FunctionStage,
    StreamingFunctionStage,
    arguments,
    signature_text,
)
from twinklr.core.pipeline.testing import record_run, run_virtual


async def double(input: int) -> int:
    return input * 2


async def note(input: Any, context: PipelineContext) -> str:
    context.set_state("noted", input)
    return f"noted {input}"


async def explode(input: Any) -> Any:
    msg = f"cannot take {input!r}"
    raise ValueError(msg)


class Mood(enum.Enum):
    CALM = "calm"
    WILD = "wild"


async def mood(input: int) -> Mood:
    return Mood.WILD if input > 1 else Mood.CALM


def run(*stages: StageDefinition[Any], initial: Any = 1) -> Any:
    return run_virtual(PipelineDefinition("fn", list(stages)), initial).result


def test_a_function_of_the_input_and_one_of_the_input_and_context() -> None:
    result = run(
        StageDefinition("a", double),
        StageDefinition("b", note, inputs=["a"]),
        StageDefinition("c", double, inputs=["a"], pattern=ExecutionPattern.PARALLEL),
    )
    assert result.success
    assert dict(result.outputs) == {"a": 2, "b": "noted 2", "c": 4}
    assert result.context is not None
    assert result.context.state["noted"] == 2
    assert result.stage_results["a"].stage_name == "a"
    assert result.stage_results["a"].metadata["attempts"] == 1


def test_a_plain_async_function_is_wrapped_as_a_stage() -> None:
    definition = StageDefinition("a", double)
    assert isinstance(definition.stage, FunctionStage)
    assert definition.stage.name == "double"
    assert definition == StageDefinition("a", double)  # same function, equal definitions
    assert hash(definition.stage) == hash(StageDefinition("a", double).stage)


def test_raising_fails_the_stage_with_its_error() -> None:
    result = run(StageDefinition("a", explode))
    assert not result.success
    assert result.failed_stages == ("a",)
    assert result.error == "stage 'a' failed: ValueError: cannot take 1"
    assert isinstance(result.stage_results["a"].exception, ValueError)


def test_a_returned_stage_result_is_used_as_it_is() -> None:
    async def refuses(input: Any) -> StageResult[Any]:
        return StageResult.failure("not today", metadata={"why": "tired"})

    async def settles(input: Any) -> StageResult[str]:
        return StageResult.soft_failure("draft", "budget spent")

    async def annotated(input: Any) -> StageResult[int]:
        return StageResult.success(7, metadata={"tokens": 3})

    result = run(StageDefinition("a", annotated), StageDefinition("b", settles, inputs=["a"]))
    assert result.success
    assert result.outputs["a"] == 7
    assert result.stage_results["a"].metadata["tokens"] == 3
    assert result.soft_failed_stages == ("b",)
    assert result.outputs["b"] == "draft"
    failed = run(StageDefinition("a", refuses))
    assert failed.error == "stage 'a' failed: not today"
    assert failed.stage_results["a"].metadata["why"] == "tired"


def test_the_decorator_names_and_versions_a_stage_and_keeps_it_callable() -> None:
    @stage
    async def plain(input: int) -> int:
        return input + 1

    @stage(name="audio", version="2")
    async def analyze(input: int, context: PipelineContext) -> int:
        return input * 10

    assert isinstance(plain, FunctionStage)
    assert (plain.name, plain.version) == ("plain", "1")
    assert (analyze.name, analyze.version) == ("audio", "2")
    assert repr(analyze) == "FunctionStage(audio)"
    assert trio.run(plain, 1) == 2  # still the function
    result = run(StageDefinition("a", plain), StageDefinition("b", analyze, inputs=["a"]))
    assert dict(result.outputs) == {"a": 2, "b": 20}


def test_the_decorator_refuses_what_cannot_be_a_stage() -> None:
    def sync(input: int) -> int:
        return input

    async def three(input: int, context: Any, extra: Any) -> int:
        return input

    with pytest.raises(TypeError, match=r"got the plain function sync: write 'async def sync'"):
        stage(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"or run it off the Trio thread with SyncStage\(sync\)"):
        stage(name="x")(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"function three\(input, context, extra\) must take"):
        stage(three)
    with pytest.raises(TypeError, match="@stage decorates an async function, got int"):
        stage(3)  # type: ignore[call-overload]


def test_validation_points_sync_functions_to_sync_stage() -> None:
    def sync(input: int) -> int:
        return input

    async def nothing() -> None:
        return None

    async def needs_keyword(input: int, *, key: str) -> int:
        return input

    problems = PipelineDefinition(
        "p",
        [
            StageDefinition("a", sync),  # type: ignore[arg-type]
            StageDefinition("b", nothing),
            StageDefinition("c", needs_keyword),
            StageDefinition("d", SyncStage(sync)),
        ],
    ).validate_pipeline()
    assert problems == [
        (
            "stage 'a': sync is a plain (synchronous) function: write 'async def sync', "
            "or run it off the Trio thread with SyncStage(sync)"
        ),
        (
            "stage 'b': function nothing() must take (input) or (input, context) "
            "as its positional parameters"
        ),
        (
            "stage 'c': function needs_keyword(input, *, key) must take (input) or "
            "(input, context) as its positional parameters"
        ),
    ]


def test_optional_and_variadic_parameters() -> None:
    async def optional(input: int, context: Any = None, scale: int = 3) -> int:
        assert context is not None
        return input * scale

    async def variadic(*args: Any) -> int:
        return len(args)

    result = run(StageDefinition("a", optional), StageDefinition("b", variadic, inputs=["a"]))
    assert dict(result.outputs) == {"a": 3, "b": 2}


async def test_retries_and_timeouts_apply(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[float] = []

    async def flaky(input: Any) -> str:
        calls.append(trio.current_time())
        if len(calls) < 3:
            msg = "rate_limit"
            raise RuntimeError(msg)
        return "ok"

    async def slow(input: Any) -> str:
        await trio.sleep(10)
        return "late"

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition(
                "flaky", flaky, retry_config=RetryConfig(max_attempts=3, initial_delay_ms=100)
            ),
            StageDefinition("slow", slow, inputs=["flaky"], timeout_ms=50),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert [round(at, 9) for at in calls] == [0, 0.1, 0.3]  # backoff 100 ms, then 200
    assert result.stage_results["flaky"].metadata["attempts"] == 3
    assert result.failed_stages == ("slow",)
    assert "timeout" in (result.error or "")
    assert result.timeline["slow"].finished_ms == 350.0


async def test_fan_out_calls_the_function_per_item(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def paint(item: dict[str, Any]) -> str:
        await trio.sleep(item["groups"])
        return f"{item['palette']}:{item['groups']}"

    async def groups(input: Any) -> list[int]:
        return [3, 1, 2]

    async def palette(input: Any) -> str:
        return "warm"

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("groups", groups),
            StageDefinition("palette", palette),
            StageDefinition(
                "paint",
                paint,
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["groups", "palette"],
                fan_out_over="groups",
                max_concurrent_fan_out=2,
            ),
        ],
    )
    result = await PipelineExecutor().execute(pipeline)
    assert result.outputs["paint"] == ["warm:3", "warm:1", "warm:2"]
    assert trio.current_time() == 3  # 3 and 1 at once, then 2 in 1's slot


async def test_a_generator_function_streams_into_a_fan_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def produce(input: int) -> AsyncIterator[int]:
        for item in range(input):
            await trio.sleep(1)
            yield item

    async def work(item: int) -> int:
        await trio.sleep(10)
        return item * 100

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("produce", produce),
            StageDefinition("work", work, pattern=ExecutionPattern.FAN_OUT, inputs=["produce"]),
        ],
    )
    assert isinstance(pipeline.stages[0].stage, StreamingFunctionStage)
    result = await PipelineExecutor().execute(pipeline, 3)
    assert result.outputs == {"produce": [0, 1, 2], "work": [0, 100, 200]}
    assert trio.current_time() == 13  # pipelined: the last item starts at 3


def test_conditions_skip_a_function_stage() -> None:
    result = run(
        StageDefinition("a", double),
        StageDefinition(
            "b",
            note,
            inputs=["a"],
            pattern=ExecutionPattern.CONDITIONAL,
            condition=lambda _context: False,
        ),
    )
    assert result.skipped_stages == ("b",)
    assert result.outputs["b"] is None


async def test_functions_in_a_sub_pipeline() -> None:
    inner = PipelineDefinition("inner", [StageDefinition("x", double)])
    outer = PipelineDefinition(
        "outer", [StageDefinition("a", double), StageDefinition("sub", inner, inputs=["a"])]
    )
    result = await PipelineExecutor().execute(outer, 2)
    assert result.outputs["sub"] == {"x": 8}


async def test_the_testing_kit_records_function_stages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def slow(input: int) -> int:
        await trio.sleep(1)
        return input

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", slow),
            StageDefinition("b", slow, inputs=["a"]),
            StageDefinition("c", slow, inputs=["a"]),
        ],
    )
    record = await record_run(pipeline, 1)
    record.assert_succeeded("a", "b", "c")
    record.assert_ran_before("a", "b")
    record.assert_ran_concurrently("b", "c")
    record.assert_no_task_left_running()


# -- the cache ------------------------------------------------------------------------------


async def test_a_failed_run_resumes_from_the_cache_typed() -> None:
    store = MemoryCacheStore()
    fail = [True]

    async def render(input: Mood) -> str:
        if fail[0]:
            msg = "renderer crashed"
            raise RuntimeError(msg)
        return f"rendered {input.value}"

    pipeline = PipelineDefinition(
        "p", [StageDefinition("mood", mood), StageDefinition("render", render, inputs=["mood"])]
    )
    first = await PipelineExecutor(cache=store).execute(pipeline, 2)
    assert first.failed_stages == ("render",)
    fail[0] = False
    second = await PipelineExecutor(cache=store).execute(pipeline, 2)
    assert second.success
    assert second.cached_stages == ("mood",)
    assert second.outputs["mood"] is Mood.WILD  # read back as its annotated type
    assert second.stage_results["mood"].status is StageStatus.CACHED
    assert second.outputs["render"] == "rendered wild"


async def test_a_new_version_misses_the_cache() -> None:
    store = MemoryCacheStore()

    async def compute(input: int) -> int:
        return input * 3

    def pipeline(version: str) -> PipelineDefinition:
        return PipelineDefinition("p", [StageDefinition("a", stage(version=version)(compute))])

    assert (await PipelineExecutor(cache=store).execute(pipeline("1"), 1)).cached_stages == ()
    assert (await PipelineExecutor(cache=store).execute(pipeline("1"), 1)).cached_stages == ("a",)
    assert (await PipelineExecutor(cache=store).execute(pipeline("2"), 1)).cached_stages == ()


async def test_an_edited_function_misses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "edited_stage.py"
    module.write_text("async def compute(input):\n    return input + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    imported = importlib.import_module("edited_stage")
    store = MemoryCacheStore()

    async def once() -> Any:
        stages = [StageDefinition("a", imported.compute)]
        return await PipelineExecutor(cache=store).execute(PipelineDefinition("p", stages), 1)

    assert (await once()).outputs["a"] == 2
    hit = await once()
    assert (hit.cached_stages, hit.outputs["a"]) == (("a",), 2)
    module.write_text("async def compute(input):\n    return input + 100\n")
    imported = importlib.reload(imported)
    edited = await once()
    assert (edited.cached_stages, edited.outputs["a"]) == ((), 101)
    sys.modules.pop("edited_stage", None)


async def test_fan_out_items_of_a_function_are_cached_one_by_one() -> None:
    store = MemoryCacheStore()
    calls: list[int] = []
    failures = [3]

    async def square(item: int) -> int:
        calls.append(item)
        if item in failures:
            failures.remove(item)
            msg = "item 3 failed once"
            raise RuntimeError(msg)
        return item * item

    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", lambda_free_items),
            StageDefinition("sq", square, pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
        ],
    )
    first = await PipelineExecutor(cache=store).execute(pipeline, 5)
    assert not first.success
    done = set(calls)
    calls.clear()
    second = await PipelineExecutor(cache=store).execute(pipeline, 5)
    assert second.outputs["sq"] == [0, 1, 4, 9, 16]
    assert 3 in calls
    assert set(calls) <= set(range(5)) - (done - {3})  # only what had not succeeded


async def lambda_free_items(input: int) -> list[int]:
    return list(range(input))


def test_reading_what_a_function_takes() -> None:
    class Slotted:
        __slots__ = ()

        def __call__(self, context: Any, input: Any) -> bool:
            return True

    assert arguments(Slotted()) == 2  # not weakly referenceable: read every time
    assert arguments(len) == 1
    assert arguments(getattr) == UNREADABLE  # no signature to read: given both
    assert signature_text(getattr) == "(...)"
    assert arguments(double) == 1
    assert arguments(note) == 2
    assert signature_text(note) == "(input, context)"
    assert signature_text(3) == "(...)"  # type: ignore[arg-type]
    assert FunctionStage(double) != 3
    assert FunctionStage(double) != FunctionStage(double, version="2")


@pytest.mark.parametrize("version", [2, "", None])
def test_a_version_that_is_no_string_is_a_validation_problem(version: Any) -> None:
    @stage(version=version)
    async def analyse(song: str) -> str:
        return song

    pipeline = PipelineDefinition("p", [StageDefinition("analyse", analyse)])
    (problem,) = pipeline.validate_pipeline()
    assert problem == (
        f"stage 'analyse': @stage version must be a non-empty string, got {version!r}"
    )
    with pytest.raises(PipelineValidationError, match="version must be a non-empty string"):
        trio.run(PipelineExecutor(cache=MemoryCacheStore()).execute, pipeline, "carol")
