"""Every snippet of the seed document, run as written once stage bodies are filled in.

The snippets are copied from ``shared/seed/pipeline-framework.md``; only the stage bodies
(which the seed leaves out) and the scaffolding around them are ours.
"""

from __future__ import annotations

import logging

import trio
import trio.testing

# -- the seed's stage bodies, filled in ---------------------------------------------------


class Timing:
    def __init__(self, duration_ms):
        self.duration_ms = duration_ms


class Bundle:
    def __init__(self, path, lyrics):
        self.path = path
        self.lyrics = lyrics
        self.timing = Timing(180_000)


async def analyze(path):
    await trio.sleep(1)
    return Bundle(path, lyrics="la la" if "lyrics" in path else None)


logger = logging.getLogger("seed")


# "Context State Management"
from twinklr.core.pipeline import StageResult


class AudioAnalysisStage:
    name = "audio"

    async def execute(self, input, context):
        bundle = await analyze(input)

        # Store state for downstream stages
        context.set_state("has_lyrics", bundle.lyrics is not None)
        context.add_metric("duration_ms", bundle.timing.duration_ms)

        return StageResult.success(bundle)


class LyricsStage:
    name = "lyrics"

    async def execute(self, input, context):
        # Access state from upstream stage
        if not context.get_state("has_lyrics"):
            return StageResult.failure("No lyrics available")
        await trio.sleep(2)
        return StageResult.success(input.lyrics.split())


class AudioProfileStage:
    name = "profile"

    async def execute(self, input, context):
        await trio.sleep(3)
        return StageResult.success({"tempo": 120, "path": input.path})


class MacroPlannerStage:
    name = "macro"

    def __init__(self):
        self.calls = 0

    async def execute(self, input, context):
        self.calls += 1
        await trio.sleep(1)
        if self.calls == 1:
            raise TimeoutError("timeout talking to the LLM")
        return StageResult.success({"plan": sorted(input) if isinstance(input, dict) else input})


class GroupPlannerStage:
    name = "groups"

    async def execute(self, input, context):
        await trio.sleep(1)
        return StageResult.success(f"plan for {input}")


# "Creating Custom Stages"
from twinklr.core.pipeline import PipelineContext, PipelineStage


async def my_logic(input, provider):
    return await provider(input)


MyInputType = str
MyOutputType = str


class MyCustomStage:
    @property
    def name(self) -> str:
        return "my_stage"

    async def execute(
        self,
        input: MyInputType,
        context: PipelineContext,
    ) -> StageResult[MyOutputType]:
        try:
            # Access dependencies
            provider = context.provider
            config = context.job_config

            # Do work
            result = await my_logic(input, provider)

            # Track metrics
            context.add_metric("my_metric", 123)

            # Return success
            return StageResult.success(result, stage_name=self.name)

        except Exception as e:
            logger.exception("Stage failed", exc_info=e)
            return StageResult.failure(str(e), stage_name=self.name)


# -- the snippets -------------------------------------------------------------------------


async def test_basic_sequential_pipeline(autojump_clock: trio.testing.MockClock) -> None:
    from twinklr.core.pipeline import (
        PipelineContext,
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
    )

    audio_path = "song-with-lyrics.mp3"
    context = PipelineContext()

    # Define stages
    pipeline = PipelineDefinition(
        name="my_pipeline",
        stages=[
            StageDefinition("audio", AudioAnalysisStage()),
            StageDefinition("profile", AudioProfileStage(), inputs=["audio"]),
        ],
    )

    # Execute
    executor = PipelineExecutor()
    result = await executor.execute(pipeline, audio_path, context)

    if result.success:
        profile = result.outputs["profile"]
    assert profile == {"tempo": 120, "path": "song-with-lyrics.mp3"}
    assert result.metrics == {"duration_ms": 180_000}


async def test_parallel_stages(autojump_clock: trio.testing.MockClock) -> None:
    from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition

    pipeline = PipelineDefinition(
        name="parallel",
        stages=[
            StageDefinition("audio", AudioAnalysisStage()),
            # These two run in parallel (both depend only on "audio")
            StageDefinition("profile", AudioProfileStage(), inputs=["audio"]),
            StageDefinition("lyrics", LyricsStage(), inputs=["audio"]),
            # This waits for both profile and lyrics
            StageDefinition("macro", MacroPlannerStage(), inputs=["profile", "lyrics"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, "lyrics.mp3", PipelineContext())
    assert not result.success  # the macro planner's first call times out, with no retry
    assert result.timeline["profile"].started_ms == result.timeline["lyrics"].started_ms == 1000
    assert result.timeline["macro"].started_ms == 4000  # after the slower of the two


async def test_fan_out_pattern(autojump_clock: trio.testing.MockClock) -> None:
    from twinklr.core.pipeline import (
        ExecutionPattern,
        PipelineDefinition,
        PipelineExecutor,
        RetryConfig,
        StageDefinition,
    )

    class GroupContexts:
        name = "group_contexts"

        async def execute(self, input, context):
            return StageResult.success(["roofline", "windows", "trees"])

    groups = StageDefinition(
        id="groups",
        stage=GroupPlannerStage(),
        pattern=ExecutionPattern.FAN_OUT,
        inputs=["group_contexts"],  # Must be list
        retry_config=RetryConfig(max_attempts=2),
    )
    pipeline = PipelineDefinition(
        name="fan", stages=[StageDefinition("group_contexts", GroupContexts()), groups]
    )
    result = await PipelineExecutor().execute(pipeline, None, PipelineContext())
    assert result.outputs["groups"] == ["plan for roofline", "plan for windows", "plan for trees"]
    assert result.total_duration_ms == 1000


async def test_conditional_execution(autojump_clock: trio.testing.MockClock) -> None:
    from twinklr.core.pipeline import (
        ExecutionPattern,
        PipelineDefinition,
        PipelineExecutor,
        StageDefinition,
    )

    lyrics = StageDefinition(
        id="lyrics",
        stage=LyricsStage(),
        pattern=ExecutionPattern.CONDITIONAL,
        inputs=["audio"],
        condition=lambda ctx: ctx.get_state("has_lyrics", False),
        critical=False,  # Non-critical: pipeline continues if skipped
    )
    pipeline = PipelineDefinition(
        name="conditional", stages=[StageDefinition("audio", AudioAnalysisStage()), lyrics]
    )
    instrumental = await PipelineExecutor().execute(pipeline, "instrumental.mp3", PipelineContext())
    assert instrumental.success
    assert instrumental.skipped_stages == ("lyrics",)
    sung = await PipelineExecutor().execute(pipeline, "lyrics.mp3", PipelineContext())
    assert sung.outputs["lyrics"] == ["la", "la"]


async def test_retry_configuration(autojump_clock: trio.testing.MockClock) -> None:
    from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor
    from twinklr.core.pipeline.definition import RetryConfig, StageDefinition

    macro = StageDefinition(
        id="macro",
        stage=MacroPlannerStage(),
        retry_config=RetryConfig(
            max_attempts=3,
            initial_delay_ms=1000,
            backoff_multiplier=2.0,
            max_delay_ms=60000,
            retryable_errors=["timeout", "rate_limit"],  # Only retry these
        ),
    )
    result = await PipelineExecutor().execute(
        PipelineDefinition(name="retry", stages=[macro]), "brief", PipelineContext()
    )
    assert result.success
    assert result.outputs["macro"] == {"plan": "brief"}
    assert result.stage_results["macro"].metadata["attempts"] == 2
    assert result.total_duration_ms == 3000  # 1 s attempt, 1 s backoff, 1 s attempt


async def test_context_state_management(autojump_clock: trio.testing.MockClock) -> None:
    from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition

    pipeline = PipelineDefinition(
        name="state",
        stages=[
            StageDefinition("audio", AudioAnalysisStage()),
            StageDefinition("lyrics", LyricsStage(), inputs=["audio"]),
        ],
    )
    result = await PipelineExecutor().execute(pipeline, "instrumental.mp3", PipelineContext())
    assert not result.success
    assert result.stage_results["lyrics"].error == "No lyrics available"
    assert result.context is not None
    assert result.context.state == {"has_lyrics": False}


async def test_custom_stage_follows_the_protocol() -> None:
    from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition

    async def provider(text):
        if text == "bad":
            raise ValueError("provider refused")
        return text.upper()

    stage = MyCustomStage()
    assert isinstance(stage, PipelineStage)
    pipeline = PipelineDefinition(name="custom", stages=[StageDefinition("mine", stage)])
    good = await PipelineExecutor().execute(pipeline, "hi", PipelineContext(provider=provider))
    assert good.outputs["mine"] == "HI"
    assert good.stage_results["mine"].stage_name == "my_stage"
    assert good.metrics == {"my_metric": 123}
    bad = await PipelineExecutor().execute(pipeline, "bad", PipelineContext(provider=provider))
    assert bad.stage_results["mine"].error == "provider refused"
