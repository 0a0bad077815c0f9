"""The form a cached output takes, the copies streamed items are cached from, and what
a stage's functions capture, which goes into its key."""

from __future__ import annotations

from typing import Any

import structlog
import structlog.testing

from conftest import batch, cache_warnings
from twinklr.core.pipeline import (
    CacheStore,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)


async def test_a_streamed_item_is_cached_as_yielded_not_as_a_consumer_changed_it(
    store: CacheStore,
) -> None:
    mutate = [True]

    async def produce(count: int) -> Any:
        for item in range(count):
            yield {"item": item, "seen_by": []}

    async def consume(item: dict[str, Any]) -> int:
        if mutate[0]:
            item["seen_by"].append("consumer")  # changes the producer's own item
        return int(item["item"])

    pipeline = batch(consume, produce, name="mutating")
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(pipeline, 3)
    assert first.outputs["items"][0]["seen_by"] == ["consumer"]  # shared, as in Python
    mutate[0] = False
    second = await executor.execute(pipeline, 3)
    assert second.cached_stages == ("items", "sq")
    assert second.outputs["items"] == [{"item": i, "seen_by": []} for i in range(3)]


async def test_an_uncopyable_streamed_item_is_not_cached(store: CacheStore) -> None:
    class Handle:
        def __deepcopy__(self, memo: Any) -> Any:
            msg = "a live handle"
            raise TypeError(msg)

    async def produce(count: int) -> Any:
        for _ in range(count):
            yield Handle()

    async def consume(item: Handle) -> int:
        return 1

    pipeline = batch(consume, produce, name="handles")
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        result = await PipelineExecutor(cache=store).execute(pipeline, 2)
    assert result.success
    assert result.uncached_stages == ("items", "sq")  # sq's input: a Handle too
    assert "a yielded Handle cannot be copied: TypeError: a live handle" in said[0]
    warned = [log for log in logs if log["event"] == "cache_output_not_serializable"]
    assert [log["stage"] for log in warned] == ["items"]
    assert "cannot be copied" in warned[0]["error"]


async def test_a_declared_type_that_would_change_the_value_falls_back_to_exact() -> None:
    import numpy as np  # noqa: PLC0415 (this test's own library)

    async def tempo(song: str) -> float:  # numpy's float64 is a float, but not *the* float
        return np.float64(120.5)

    async def waveform(song: str) -> np.ndarray:  # cattrs cannot build an array
        return np.linspace(0, 1, 5, dtype=np.float32)

    store = MemoryCacheStore()
    pipeline = PipelineDefinition(
        "audio", [StageDefinition("tempo", tempo), StageDefinition("wave", waveform)]
    )
    await PipelineExecutor(cache=store).execute(pipeline, "carol")
    again = await PipelineExecutor(cache=store).execute(pipeline, "carol")
    assert again.cached_stages == ("tempo", "wave")
    assert type(again.outputs["tempo"]) is np.float64
    assert again.outputs["wave"].dtype == np.float32
    assert np.array_equal(again.outputs["wave"], np.linspace(0, 1, 5, dtype=np.float32))


def scaled(factor: float) -> Any:
    async def scale(value: float) -> float:
        return value * factor

    return scale


async def test_closures_of_one_function_with_other_captured_values_have_other_keys(
    store: CacheStore,
) -> None:
    executor = PipelineExecutor(cache=store)

    def pipeline(factor: float) -> PipelineDefinition:
        return PipelineDefinition("scale", [StageDefinition("s", scaled(factor))])

    assert (await executor.execute(pipeline(2), 5)).outputs["s"] == 10
    triple = await executor.execute(pipeline(3), 5)
    assert (triple.outputs["s"], triple.cached_stages) == (15, ())  # not the double's 10
    again = await executor.execute(pipeline(2), 5)  # a new closure, an equal value
    assert (again.outputs["s"], again.cached_stages) == (10, ("s",))


async def test_functions_with_other_defaults_have_other_keys(store: CacheStore) -> None:
    made = []
    for k in (2, 3):

        async def scale(value: float, *, k: int = k) -> float:
            return value * k

        made.append(scale)
    executor = PipelineExecutor(cache=store)
    outputs = [
        (await executor.execute(PipelineDefinition("p", [StageDefinition("s", f)]), 5)).outputs
        for f in made
    ]
    assert outputs == [{"s": 10}, {"s": 15}]


class Client:
    """A live connection: no value to fingerprint."""

    def __init__(self) -> None:
        self.calls = 0


async def test_a_captured_value_without_a_fingerprint_runs_uncached_with_one_warning(
    store: CacheStore,
) -> None:
    client = Client()

    async def ask(prompt: str) -> str:
        client.calls += 1
        return prompt.upper()

    pipeline = PipelineDefinition("ask", [StageDefinition("ask", ask)])
    executor = PipelineExecutor(cache=store)
    with cache_warnings() as said:
        await executor.execute(pipeline, "hi")
        result = await executor.execute(pipeline, "hi")
    assert client.calls == 2
    assert result.uncached_stages == ("ask",)
    assert len(said) == 2  # once a run
    assert said[0].startswith(
        "stage 'ask' of pipeline 'ask' was not cached: 'client' it closes over has no "
        "fingerprint (Client value has no fingerprint"
    )
    assert "pass that value as input or through the context, or set cache=False" in said[0]


async def test_a_captured_list_a_stage_appends_to_keeps_its_key(store: CacheStore) -> None:
    # Captured values are read the first time the process keys the function: counting
    # calls in a list it closes over does not make every run a miss.
    calls: list[int] = []

    async def count(value: int) -> int:
        calls.append(value)
        return value

    pipeline = PipelineDefinition("count", [StageDefinition("c", count)])
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 1)
    again = await executor.execute(pipeline, 1)
    assert (calls, again.cached_stages) == ([1], ("c",))
