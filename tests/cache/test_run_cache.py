"""A failed run resumes where it stopped: keys, hits, replay, success-only writes."""

from __future__ import annotations

import datetime as dt
import enum
import re
from pathlib import Path
from typing import Any

import attrs
import pytest
import structlog
import structlog.testing
import trio
import trio.testing

from conftest import batch, cache_warnings
from twinklr.core.pipeline import (
    ExecutionPattern,
    MemoryCacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    SQLiteCacheStore,
    StageDefinition,
    StageResult,
    StageStatus,
)
from twinklr.core.pipeline._cache import _run_cache, _serialize, _writing
from twinklr.core.pipeline._cache._store import CacheRecord, CacheStore, Payload


class Mood(enum.Enum):
    CALM = "calm"
    WILD = "wild"


@attrs.frozen
class Bundle:
    song: str
    tempo: int
    mood: Mood
    analysed_at: dt.datetime
    sections: tuple[str, ...]


class Counted:
    """A stage that counts its calls; fails while ``broken`` is set."""

    name = "counted"

    def __init__(self, transform: Any = None) -> None:
        self.calls = 0
        self.broken = False
        self.transform = transform or (lambda value: value)

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Any]:
        self.calls += 1
        if self.broken:
            return StageResult.failure("broken")
        return StageResult.success(self.transform(input))


class Analyse:
    """Writes state a downstream condition reads, and typed output."""

    name = "analyse"

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, input: str, context: PipelineContext) -> StageResult[Bundle]:
        self.calls += 1
        context.set_state("has_lyrics", value=True)
        context.increment_metric("analysed")
        bundle = Bundle(
            song=input,
            tempo=120,
            mood=Mood.WILD,
            analysed_at=dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.UTC),
            sections=("intro", "chorus"),
        )
        return StageResult.success(bundle)


def five_stages(stages: dict[str, Any]) -> PipelineDefinition:
    return PipelineDefinition(
        "five",
        [
            StageDefinition("audio", stages["audio"]),
            StageDefinition(
                "lyrics",
                stages["lyrics"],
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda ctx: ctx.get_state("has_lyrics", False),  # noqa: FBT003
            ),
            StageDefinition("profile", stages["profile"], inputs=["audio"]),
            StageDefinition("macro", stages["macro"], inputs=["lyrics", "profile"]),
            StageDefinition("render", stages["render"], inputs=["macro"]),
        ],
    )


async def test_a_failed_run_resumes_from_the_failed_stage(store: CacheStore) -> None:
    stages: dict[str, Any] = {
        "audio": Analyse(),
        "lyrics": Counted(lambda bundle: f"words of {bundle.song}"),
        "profile": Counted(lambda bundle: {"tempo": bundle.tempo, "mood": bundle.mood.value}),
        "macro": Counted(lambda inputs: f"{inputs['lyrics']} at {inputs['profile']['tempo']}"),
        "render": Counted(lambda plan: f"sequence: {plan}"),
    }
    stages["macro"].broken = True
    pipeline = five_stages(stages)
    executor = PipelineExecutor(cache=store)

    first = await executor.execute(pipeline, "carol", PipelineContext())
    assert not first.success
    assert first.failed_stages == ("macro",)
    assert first.metrics["cache_misses"] == 4  # audio, lyrics, profile, macro

    stages["macro"].broken = False  # the fix
    context = PipelineContext()
    second = await executor.execute(pipeline, "carol", context)
    assert second.success
    # only macro and render ran again; the rest came from the cache
    assert {k: s.calls for k, s in stages.items()} == {
        "audio": 1,
        "lyrics": 1,
        "profile": 1,
        "macro": 2,
        "render": 1,
    }
    assert set(second.cached_stages) == {"audio", "lyrics", "profile"}
    assert second.stage_results["audio"].status is StageStatus.CACHED
    assert second.timeline["audio"].cached
    assert not second.timeline["macro"].cached
    # replayed state kept the condition true, and the typed output came back typed
    assert context.state == {"has_lyrics": True}
    assert context.metrics["analysed"] == 1
    assert second.metrics["cache_hits"] == 3
    assert second.metrics["cache_misses"] == 2
    bundle = second.outputs["audio"]
    assert isinstance(bundle, Bundle)
    assert bundle.mood is Mood.WILD
    assert bundle.sections == ("intro", "chorus")
    assert second.outputs["render"] == "sequence: words of carol at 120"

    third = await executor.execute(pipeline, "carol", PipelineContext())
    assert set(third.cached_stages) == {"audio", "lyrics", "profile", "macro", "render"}
    assert sum(s.calls for s in stages.values()) == 6


async def test_a_different_input_misses(store: CacheStore) -> None:
    stage = Counted(lambda x: x * 2)
    pipeline = PipelineDefinition("p", [StageDefinition("double", stage)])
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 1)
    again = await executor.execute(pipeline, 1)
    other = await executor.execute(pipeline, 2)
    assert again.cached_stages == ("double",)
    assert other.cached_stages == ()
    assert other.outputs["double"] == 4
    assert stage.calls == 2


class Groups:
    name = "groups"

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.failing: set[int] = set()

    async def execute(self, input: int, context: PipelineContext) -> StageResult[str]:
        self.calls.append(input)
        if input in self.failing:
            raise RuntimeError(f"group {input} exploded")
        context.increment_metric("planned")
        return StageResult.success(f"plan {input}")


async def test_a_fan_out_rerun_redoes_only_the_failed_item(
    store: CacheStore, autojump_clock: trio.testing.MockClock
) -> None:
    groups = Groups()
    groups.failing = {7}
    pipeline = PipelineDefinition(
        "fan",
        [
            StageDefinition("items", Counted(lambda _: list(range(20)))),
            StageDefinition("plans", groups, pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
        ],
    )
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(pipeline, "show")
    assert not first.success
    assert "item 7" in (first.error or "")
    # Items run to completion at once (they do not checkpoint); those Trio ran after
    # item 7 (it shuffles them) never started.
    succeeded = set(groups.calls) - {7}
    assert groups.calls[-1] == 7

    groups.failing = set()
    groups.calls.clear()
    context = PipelineContext()
    second = await executor.execute(pipeline, "show", context)
    assert second.success
    assert sorted(groups.calls) == sorted(set(range(20)) - succeeded)
    assert second.outputs["plans"] == [f"plan {i}" for i in range(20)]
    assert second.stage_results["plans"].metadata["cached_items"] == len(succeeded)
    assert context.metrics["planned"] == 20  # the cached ones replayed, the rest live

    third = await executor.execute(pipeline, "show")
    assert third.stage_results["plans"].status is StageStatus.CACHED


class Soft:
    name = "soft"

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[str]:
        self.calls += 1
        await trio.sleep(1)
        return StageResult.soft_failure("best", "budget reached")


async def test_only_successes_are_written(
    store: CacheStore, autojump_clock: trio.testing.MockClock
) -> None:
    soft, failing = Soft(), Counted()
    failing.broken = True
    pipeline = PipelineDefinition(
        "mixed",
        [
            StageDefinition("soft", soft),
            StageDefinition("skipped", Counted(), condition=lambda _: False),
            StageDefinition("fails", failing, inputs=["soft"]),
            StageDefinition("timeout", SleepFor(10), timeout_ms=500),
        ],
    )
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, "x")
    assert await store.entries() == []
    await executor.execute(pipeline, "x")
    assert soft.calls == 2


class SleepFor:
    name = "sleep_for"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[str]:
        self.calls += 1
        await trio.sleep(self.seconds)
        return StageResult.success("done")


async def test_outputs_of_stages_cancelled_by_fail_fast_are_not_written(
    store: CacheStore, autojump_clock: trio.testing.MockClock
) -> None:
    slow, boom = SleepFor(10), Counted()
    boom.broken = True
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("done", Counted()),
            StageDefinition("slow", slow),  # running when boom (after done) fails
            StageDefinition("boom", boom, inputs=["done"]),
        ],
    )
    result = await PipelineExecutor(cache=store).execute(pipeline, "x")
    assert result.cancelled_stages == ("slow",)
    assert [entry.stage for entry in await store.entries()] == ["done"]


async def test_cache_false_opts_a_stage_out(store: CacheStore) -> None:
    stage = Counted()
    pipeline = PipelineDefinition("p", [StageDefinition("a", stage, cache=False)])
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 1)
    await executor.execute(pipeline, 1)
    assert stage.calls == 2
    assert await store.entries() == []


async def test_bumping_the_version_invalidates(store: CacheStore) -> None:
    stage = Counted()
    executor = PipelineExecutor(cache=store)
    await executor.execute(PipelineDefinition("p", [StageDefinition("a", stage)]), 1)
    await executor.execute(PipelineDefinition("p", [StageDefinition("a", stage)]), 1)
    assert stage.calls == 1
    bumped = PipelineDefinition("p", [StageDefinition("a", stage, version="2")])
    await executor.execute(bumped, 1)
    assert stage.calls == 2


async def test_entries_expire_after_their_ttl(tmp_path: Path) -> None:
    now = [1000.0]
    clock = now.__getitem__
    for store in (
        MemoryCacheStore(clock=lambda: clock(0)),
        SQLiteCacheStore(tmp_path, clock=lambda: clock(0)),
    ):
        stage = Counted()
        pipeline = PipelineDefinition(
            "p", [StageDefinition("a", stage, cache_ttl=dt.timedelta(minutes=1))]
        )
        executor = PipelineExecutor(cache=store)
        await executor.execute(pipeline, 1)
        (entry,) = await store.entries()
        assert entry.expires_at is not None
        assert entry.expires_at - entry.created_at == 60
        now[0] = entry.expires_at + 1
        await executor.execute(pipeline, 1)
        assert stage.calls == 2
        now[0] = 0


class Opaque:
    """No value equality: cannot come back from JSON equal."""

    def __init__(self, value: int) -> None:
        self.value = value


async def test_an_output_that_cannot_be_serialized_runs_and_warns_once(
    store: CacheStore,
) -> None:
    stage = Counted(Opaque)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("items", Counted(lambda _: [1, 2, 3])),
            StageDefinition("opaque", stage, pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
        ],
    )
    executor = PipelineExecutor(cache=store)
    with cache_warnings() as said:
        result = await executor.execute(pipeline, 1)
    assert result.success
    assert result.uncached_stages == ("opaque",)
    # once for the stage (not for each of its three items), saying what and why
    assert [re.sub(r"output\[\d\]", "output[i]", text) for text in said] == [
        (
            "stage 'opaque' of pipeline 'p' was not cached: output[i]: a Opaque cannot be "
            "stored without a declared type. It ran as usual; declare its output type (a "
            "return annotation, or StageDefinition(output_type=...)), return a supported "
            "type, or set cache=False on the stage to run it uncached without this warning"
        )
    ]
    assert [entry.stage for entry in await store.entries()] == ["items"]


async def test_an_input_without_a_fingerprint_runs_uncached(store: CacheStore) -> None:
    stage = Counted()
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("make", Counted(lambda _: Opaque(1)), cache=False),
            StageDefinition("use", stage, inputs=["make"]),
        ],
    )
    executor = PipelineExecutor(cache=store)
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        await executor.execute(pipeline, 1)
        result = await executor.execute(pipeline, 1)
    assert stage.calls == 2
    assert result.uncached_stages == ("use",)  # not "make": it has cache=False
    assert [log["event"] for log in logs if log["log_level"] == "warning"].count(
        "cache_input_not_serializable"
    ) == 2  # once per run
    assert len(said) == 2
    assert "stage 'use' of pipeline 'p' was not cached: its input has no fingerprint" in said[0]


async def test_a_corrupt_entry_is_a_miss_with_a_warning(store: CacheStore) -> None:
    stage = Analyse()
    pipeline = PipelineDefinition("p", [StageDefinition("audio", stage)])
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, "song")
    (entry,) = await store.entries()
    group = _serialize.fingerprint(["p", "song"])
    assert entry.key in await store.load("p", group)
    for payload in ('{"output": {"song": 1}, "writes": []}', "not json at all", "[]"):
        tampered = CacheRecord(
            key=entry.key, pipeline="p", stage="audio", group=group, payload=payload, created_at=0
        )
        await store.save([tampered])
        with structlog.testing.capture_logs() as logs, cache_warnings() as said:
            result = await executor.execute(pipeline, "song")
        assert result.success
        assert result.cached_stages == ()
        assert any(log["event"] == "cache_entry_unreadable" for log in logs)
        assert "a cached output of stage 'audio' could not be read" in said[0]
    assert stage.calls == 4


async def test_sub_pipelines_cache_their_own_stages(store: CacheStore) -> None:
    inner_stage = Counted(lambda group: f"plan {group}")
    inner = PipelineDefinition("per_group", [StageDefinition("plan", inner_stage)])
    outer = PipelineDefinition(
        "outer",
        [
            StageDefinition("groups", Counted(lambda _: ["a", "b"])),
            StageDefinition("plans", inner, pattern=ExecutionPattern.FAN_OUT, inputs=["groups"]),
        ],
    )
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(outer, "show")
    second = await executor.execute(outer, "show")
    assert first.outputs == second.outputs
    assert inner_stage.calls == 2  # once per group, then served from the cache


class SlowStore(MemoryCacheStore):
    """Saves take a second (of virtual time), like a busy disk."""

    async def save(self, records: Any) -> None:
        await trio.sleep(1)
        await super().save(records)


async def test_outer_cancellation_lets_queued_writes_reach_the_store(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = SlowStore()
    slow = SleepFor(10)
    pipeline = PipelineDefinition(
        "p",
        [
            StageDefinition("a", SleepFor(1)),
            StageDefinition("b", SleepFor(1.2)),
            StageDefinition("c", slow, inputs=["a"]),
        ],
    )
    with trio.move_on_after(1.5) as scope:
        await PipelineExecutor(cache=store).execute(pipeline, "x")
    assert scope.cancelled_caught
    # "a" was being saved (t=1..2) and "b" queued (t=1.2) when the caller cancelled at 1.5
    assert sorted(entry.stage for entry in await store.entries()) == ["a", "b"]
    assert trio.current_time() == 3
    assert slow.calls == 1


async def test_an_input_with_no_fingerprint_turns_the_cache_off_for_the_run(
    store: CacheStore,
) -> None:
    stage = Counted()
    pipeline = PipelineDefinition("p", [StageDefinition("a", stage)])
    executor = PipelineExecutor(cache=store)
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        await executor.execute(pipeline, Opaque(1))
        result = await executor.execute(pipeline, Opaque(1))
    assert stage.calls == 2
    assert result.uncached_stages == ("a",)
    assert [log["event"] for log in logs].count("cache_disabled") == 2
    assert len(said) == 2
    assert "no stage was cached: the initial input has no fingerprint" in said[0]
    assert await store.entries() == []


async def test_an_explicit_output_type_reads_outputs_back(store: CacheStore) -> None:
    make = Counted(lambda _: (1, 2, 3))  # a tuple: needs a type to come back a tuple
    pipeline = PipelineDefinition("p", [StageDefinition("a", make, output_type=tuple[int, ...])])
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 0)
    again = await executor.execute(pipeline, 0)
    assert again.outputs["a"] == (1, 2, 3)
    assert again.cached_stages == ("a",)


class Metrics:
    name = "metrics"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[int]:
        context.add_metric("duration_ms", 1234)
        context.increment_metric("calls", 2)
        context.set_state("ready", value=True)
        return StageResult.success(1)


async def test_every_kind_of_write_is_replayed(store: CacheStore) -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("a", Metrics())])
    executor = PipelineExecutor(cache=store)
    first_context, second_context = PipelineContext(), PipelineContext()
    await executor.execute(pipeline, 0, first_context)
    await executor.execute(pipeline, 0, second_context)
    written = {"duration_ms": 1234, "calls": 2}
    assert first_context.metrics == {**written, "cache_misses": 1}
    assert second_context.metrics == {**written, "cache_hits": 1}
    assert second_context.state == first_context.state == {"ready": True}


class HangingStore(MemoryCacheStore):
    """A store whose saves never finish (a wedged network disk)."""

    async def save(self, records: Any) -> None:
        await trio.sleep_forever()


async def test_a_wedged_store_cannot_hang_the_run(autojump_clock: trio.testing.MockClock) -> None:
    pipeline = PipelineDefinition("p", [StageDefinition("a", Counted())])
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        result = await PipelineExecutor(cache=HangingStore()).execute(pipeline, 0)
    assert result.success
    assert result.uncached_stages == ("a",)
    (text,) = said
    assert text.endswith(
        "took over 30 s to write: outputs of the run were not saved (see uncached_stages)"
    )
    assert trio.current_time() == _writing.SAVE_TIMEOUT_S
    assert any(log["event"] == "cache_write_timed_out" for log in logs)


async def test_a_resumed_run_replays_the_users_metrics_not_the_librarys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from twinklr.core.pipeline import (  # noqa: PLC0415 (this test's own names)
        FakeLLMProvider,
        Proposal,
        RateLimiter,
        RefineStage,
        Verdict,
    )

    class Draft:
        async def propose(
            self, input: Any, feedback: str | None, context: PipelineContext
        ) -> Proposal[str]:
            completion = await context.provider.complete(f"plan {input}", context)
            context.increment_metric("plans_drafted")  # the user's own metric
            return Proposal(output=completion.text, tokens_used=completion.tokens_used)

    class Accept:
        async def evaluate(self, candidate: str, context: PipelineContext) -> Verdict:
            return Verdict(score=1.0, accepted=True)

    store = MemoryCacheStore()
    pipeline = PipelineDefinition(
        "llm", [StageDefinition("macro", RefineStage(Draft(), Accept(), max_iterations=2))]
    )

    async def run() -> Any:
        context = PipelineContext(
            provider=FakeLLMProvider(latency_s=1),
            rate_limiter=RateLimiter(requests_per_minute=1),
        )
        return await PipelineExecutor(cache=store).execute(pipeline, "carol", context)

    first = await run()
    assert first.metrics["llm_requests"] == 1
    assert first.metrics["rate_limit_requests"] == 1
    assert first.metrics["refine_iterations"] == 1
    second = await run()
    assert second.cached_stages == ("macro",)
    assert second.outputs == first.outputs
    # Work the cached run did not do is not reported; what the user wrote is replayed.
    assert dict(second.metrics) == {
        "plans_drafted": 1,
        "refine_best_score": 1.0,
        "cache_hits": 1,
    }


async def test_streamed_items_are_read_one_by_one_and_a_failed_read_is_a_miss() -> None:
    class Flaky(MemoryCacheStore):
        def __init__(self) -> None:
            super().__init__()
            self.broken = False
            self.fetched = 0

        async def fetch(self, pipeline: str, keys: Any) -> dict[str, Payload]:
            self.fetched += 1
            if self.broken:
                msg = "disk went away"
                raise OSError(msg)
            return await super().fetch(pipeline, keys)

    ran: list[int] = []

    async def produce(count: int) -> Any:
        for item in range(count):
            yield item

    async def square(item: int) -> int:
        ran.append(item)
        return item * item

    pipeline = batch(square, produce, name="stream")
    store = Flaky()
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 3)
    ran.clear()
    second = await executor.execute(pipeline, 2)  # pipelined: items read as they come
    assert (second.outputs["sq"], ran, store.fetched) == ([0, 1], [], 2)
    store.broken = True
    ran.clear()
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        third = await executor.execute(pipeline, 1)
    assert "the cache could not be read (OSError: disk went away)" in said[0]
    assert third.outputs["sq"] == [0]
    assert ran == [0]  # the entry could not be read: run again
    assert any(log["event"] == "cache_unreadable" for log in logs)


class HangingLoads(MemoryCacheStore):
    """A store whose reads never finish (a wedged network store), and says nothing of
    bounding them itself."""

    bounds_reads = False

    async def load(self, pipeline: str, group: str) -> Any:
        await trio.sleep_forever()


async def test_a_store_whose_load_never_returns_cannot_hang_the_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stage = Counted()
    pipeline = PipelineDefinition("p", [StageDefinition("a", stage)])
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        result = await PipelineExecutor(cache=HangingLoads()).execute(pipeline, 0)
    assert "reading the cache took over 30 s" in said[0]
    assert result.success
    assert stage.calls == 1
    assert trio.current_time() == _run_cache.LOAD_TIMEOUT_S  # then it went on, uncached
    assert [log["event"] for log in logs if log["log_level"] == "warning"] == [
        "cache_read_timed_out"
    ]


@pytest.fixture(params=["memory", "sqlite"])
def bounded_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A store of either kind bounded to two of the chain's entries."""
    if request.param == "memory":
        return MemoryCacheStore(max_bytes=90)
    return SQLiteCacheStore(tmp_path, max_bytes=90)


def chain_of(stages: list[Counted], name: str = "chain") -> PipelineDefinition:
    return PipelineDefinition(
        name,
        [
            StageDefinition(f"s{n}", stage, inputs=[f"s{n - 1}"] if n else [])
            for n, stage in enumerate(stages)
        ],
    )


async def test_eviction_never_takes_what_a_resuming_run_needs(bounded_store: Any) -> None:
    stages = [Counted(lambda value: value + 1) for _ in range(5)]
    stages[3].broken = True
    pipeline = chain_of(stages)
    executor = PipelineExecutor(cache=bounded_store)
    first = await executor.execute(pipeline, 0)
    assert first.failed_stages == ("s3",)
    size = sum(entry.size for entry in await bounded_store.entries())
    assert size > bounded_store.max_bytes  # three entries: over the bound, all held
    second = await executor.execute(pipeline, 0)  # still broken: resumes again
    assert second.cached_stages == ("s0", "s1", "s2")
    stages[3].broken = False
    third = await executor.execute(pipeline, 0)
    assert third.success
    assert third.cached_stages == ("s0", "s1", "s2")
    assert [stage.calls for stage in stages] == [1, 1, 1, 3, 1]
    # Another input's run fills the store: the idle entries are evicted, oldest first,
    # down to the bound (that run's own entries are held while it runs).
    other = await executor.execute(pipeline, 100)
    assert other.success
    await executor.execute(chain_of([Counted()], "tiny"), 0)  # one more save, nothing held
    entries = await bounded_store.entries()
    assert sum(entry.size for entry in entries) <= bounded_store.max_bytes
    assert {entry.pipeline for entry in entries} <= {"chain", "tiny"}


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def looped() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    ("make", "storable"),
    [(lambda: nested(50), True), (lambda: nested(400), False), (looped, False)],
    ids=["50 deep", "400 deep", "looped"],
)
async def test_a_value_too_deep_or_looped_to_store_runs_uncached_with_a_warning(
    store: CacheStore, make: Any, *, storable: bool
) -> None:
    value = make()

    async def produce(_input: Any) -> Any:
        return value

    async def consume(given: Any) -> int:
        return 1

    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        for stages, initial in [
            # as an output, and as the next stage's input
            ([StageDefinition("a", produce), StageDefinition("b", consume, inputs=["a"])], 0),
            ([StageDefinition("b", consume)], value),  # as the run's initial input
        ]:
            pipeline = PipelineDefinition("deep", stages)
            first = await PipelineExecutor(cache=store).execute(pipeline, initial)
            again = await PipelineExecutor(cache=store).execute(pipeline, initial)
            assert first.success
            assert again.success
            assert ("a" in again.cached_stages) is (storable and initial == 0)
    warned = [log for log in logs if log["log_level"] == "warning"]
    assert bool(warned) is not storable
    assert all("too deeply" in log.get("error", log.get("reason", "")) for log in warned)
    assert bool(said) is not storable


class Garbled(MemoryCacheStore):
    """A custom store that answers with the wrong kinds of thing."""

    def __init__(self, **answers: Any) -> None:
        super().__init__()
        self.answers = answers

    async def load(self, pipeline: str, group: str) -> Any:
        return self.answers.get("load", await super().load(pipeline, group))

    async def keys(self, pipeline: str) -> Any:
        return self.answers.get("keys", await super().keys(pipeline))

    async def fetch(self, pipeline: str, keys: Any) -> Any:
        return self.answers.get("fetch", await super().fetch(pipeline, keys))


@pytest.mark.parametrize(
    "answers",
    [
        {"load": None},
        {"load": [1, 2]},
        {"load": {"k": 5}},
        {"keys": 5},
        {"keys": None},
        {"fetch": "x"},
    ],
    ids=repr,
)
async def test_a_store_that_answers_garbage_means_an_uncached_run_with_a_warning(
    answers: dict[str, Any],
) -> None:
    # "b" gets the same input whatever the run's: its entry is fetched by key.
    stages = [Counted(lambda _value: 7), Counted()]
    pipeline = PipelineDefinition(
        "p", [StageDefinition("a", stages[0]), StageDefinition("b", stages[1], inputs=["a"])]
    )
    store = Garbled()
    await PipelineExecutor(cache=store).execute(pipeline, 1)
    store.answers = answers
    with structlog.testing.capture_logs() as logs, cache_warnings() as said:
        result = await PipelineExecutor(cache=store).execute(pipeline, 2)
    assert result.success
    assert result.outputs == {"a": 7, "b": 7}
    assert bool(said) is (answers != {"load": {"k": 5}})
    warned = [log for log in logs if log["log_level"] == "warning"]
    if answers != {"load": {"k": 5}}:  # a garbage payload under a key nobody asks for
        assert warned
        assert warned[0]["event"] == "cache_unreadable"
