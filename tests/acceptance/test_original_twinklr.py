"""The original Twinklr pipeline's code, as it was written: asyncio stage classes that
return ``success_result``/``failure_result``, definitions with the original's options,
its context fields, and ``asyncio.run(main())`` awaiting ``executor.execute``. It runs
unchanged (docs/guides/migrating.md lists what differs by design)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from twinklr.core.pipeline import (
    ExecutionPattern,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    failure_result,
    success_result,
)
from twinklr.core.pipeline.definition import RetryConfig

logger = logging.getLogger(__name__)


class AudioAnalysisStage:
    @property
    def name(self) -> str:
        return "audio_analysis"

    async def execute(self, input: str, context: PipelineContext) -> Any:
        await asyncio.sleep(0.001)  # the analyzer ran in asyncio.to_thread
        bundle = {"path": input, "tempo": 120, "sections": ["intro", "verse", "chorus"]}
        context.state["has_lyrics"] = True
        context.metrics["audio_duration_ms"] = 180_000
        return success_result(bundle, stage_name=self.name)


class AudioProfileStage:
    @property
    def name(self) -> str:
        return "audio_profile"

    async def execute(self, input: dict[str, Any], context: PipelineContext) -> Any:
        await asyncio.sleep(0)
        return success_result({"energy": "high", "tempo": input["tempo"]}, stage_name=self.name)


class LyricsStage:
    @property
    def name(self) -> str:
        return "lyrics"

    async def execute(self, input: dict[str, Any], context: PipelineContext) -> Any:
        await asyncio.sleep(0)
        return success_result({"themes": ["snow", "bells"]}, stage_name=self.name)


class MacroPlannerStage:
    def __init__(self, display_groups: list[dict[str, Any]]) -> None:
        self.display_groups = display_groups
        self.calls = 0

    @property
    def name(self) -> str:
        return "macro_planner"

    async def execute(self, input: dict[str, Any], context: PipelineContext) -> Any:
        self.calls += 1
        if self.calls == 1:
            return failure_result("Rate_Limit exceeded, try again", stage_name=self.name)
        lock = asyncio.Lock()
        async with lock:
            await asyncio.sleep(0)
        plan = {
            "energy": input["profile"]["energy"],
            "themes": input["lyrics"]["themes"],
            "sections": [group["role_key"] for group in self.display_groups],
        }
        return success_result(plan, stage_name=self.name)


class GroupPlannerStage:
    @property
    def name(self) -> str:
        return "group_planner"

    async def execute(self, input: str, context: PipelineContext) -> Any:
        await asyncio.sleep(0.001)
        return success_result(f"plan for {input}", stage_name=self.name)


class LLMLogger:
    def __init__(self) -> None:
        self.calls: list[str] = []


def create_sequencer_pipeline(display_groups: list[dict[str, Any]]) -> PipelineDefinition:
    return PipelineDefinition(
        name="twinklr_sequencer",
        description="Complete Twinklr sequencer pipeline: audio -> planning -> rendering",
        fail_fast=True,
        stages=[
            StageDefinition(
                id="audio",
                stage=AudioAnalysisStage(),
                description="Analyze audio file (tempo, structure, features)",
                critical=True,
                output_type="SongBundle",
            ),
            StageDefinition(
                id="profile",
                stage=AudioProfileStage(),
                inputs=["audio"],
                description="Generate audio profile (energy, guidance)",
                critical=True,
            ),
            StageDefinition(
                id="lyrics",
                stage=LyricsStage(),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda ctx: ctx.get_state("has_lyrics", False),
                description="Generate lyrics context (themes, narrative)",
                critical=False,
            ),
            StageDefinition(
                id="macro",
                stage=MacroPlannerStage(display_groups=display_groups),
                inputs=["profile", "lyrics"],
                description="Generate macro plan (overall strategy)",
                retry_config=RetryConfig(
                    max_attempts=2,
                    initial_delay_ms=10,
                    retryable_errors=["rate_limit"],
                ),
                critical=True,
            ),
            StageDefinition(
                "sections",
                _sections_of,
                ExecutionPattern.SEQUENTIAL,
                ["macro"],
            ),
            StageDefinition(
                "groups",
                GroupPlannerStage(),
                ExecutionPattern.FAN_OUT,
                ["sections"],
                None,
                RetryConfig(max_attempts=2),
                5000,
                True,
                4,
                "Plan each display group",
            ),
        ],
    )


async def _sections_of(plan: dict[str, Any]) -> list[str]:
    return list(plan["sections"])


def test_the_original_pipeline_runs_unchanged_from_asyncio_run(tmp_path: Path) -> None:
    display_groups = [
        {"role_key": "OUTLINE", "model_count": 10, "group_type": "string"},
        {"role_key": "MEGA_TREE", "model_count": 1, "group_type": "tree"},
        {"role_key": "HERO", "model_count": 5, "group_type": "prop"},
    ]
    llm_logger = LLMLogger()

    async def main() -> tuple[Any, PipelineContext, PipelineDefinition]:
        pipeline = create_sequencer_pipeline(display_groups)
        assert pipeline.validate_pipeline() == []
        assert [s.id for s in pipeline.get_entry_points()] == ["audio"]
        context = PipelineContext(
            provider=object(),
            app_config={"app": "config"},
            job_config={"job": "config"},
            llm_logger=llm_logger,
            output_dir=tmp_path / "artifacts",
            cancel_token=asyncio.Event(),
        )
        executor = PipelineExecutor()
        result = await executor.execute(
            pipeline=pipeline,
            initial_input=str(tmp_path / "Need A Favor.mp3"),
            context=context,
        )
        return result, context, pipeline

    result, context, pipeline = asyncio.run(main())
    assert result.success, result.error
    assert result.failed_stages == ()
    assert len(result.outputs) == len(pipeline.stages)
    assert result.outputs["macro"] == {
        "energy": "high",
        "themes": ["snow", "bells"],
        "sections": ["OUTLINE", "MEGA_TREE", "HERO"],
    }
    assert result.outputs["groups"] == [
        "plan for OUTLINE",
        "plan for MEGA_TREE",
        "plan for HERO",
    ]
    assert result.stage_results["macro"].metadata["attempts"] == 2  # "Rate_Limit" retried
    assert result.total_duration_ms > 0
    assert context.metrics["audio_duration_ms"] == 180_000
    assert context.app_config == context.config == {"app": "config"}
    assert not context.is_cancelled()
