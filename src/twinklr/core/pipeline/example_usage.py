"""The Twinklr sequencer pipeline, offline and deterministic.

audio -> profile + lyrics (conditional) -> macro plan (judge/refine loop)
      -> group contexts -> per-group plans (fan-out) -> render

Every stage is a small fake that sleeps a little and derives its output from its input,
and the LLM is `FakeLLMProvider` behind a shared `RateLimiter`, so the run
shows real concurrency and gives the same answer every time. Run it with::

    python -m twinklr.core.pipeline.example_usage [--song NAME] [--no-lyrics]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
from typing import Any

import attrs
import structlog
import trio

from . import (
    ExecutionPattern,
    FakeLLMProvider,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    Proposal,
    RateLimiter,
    RefineStage,
    StageDefinition,
    StageResult,
    Verdict,
    WaitForInput,
    timeline_report,
)
from .definition import RetryConfig

HIGH_ENERGY_BPM = 120
ACCEPT_SCORE = 0.8
GROUPS = ("roofline", "windows", "trees", "arches", "matrix", "yard")


def _seed(*parts: object) -> int:
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


@attrs.frozen
class AudioBundle:
    """What audio analysis found in a song."""

    song: str
    tempo_bpm: int
    duration_ms: int
    sections: tuple[str, ...]
    lyrics: str | None


@attrs.frozen
class MacroPlan:
    """The show's overall plan: a theme and one brief per display group."""

    theme: str
    energy: str
    briefs: tuple[tuple[str, str], ...]
    revision: int = 0


@attrs.frozen
class GroupPlan:
    """Effects planned for one display group."""

    group: str
    effects: tuple[str, ...]


def failure_points() -> dict[str, int | None]:
    """Where ``--fail-at`` can inject a failure: each stage id, with its number of
    fan-out items (None: not a fan-out stage)."""
    return {
        stage.id: len(GROUPS) if stage.id == "groups" else None for stage in build_pipeline().stages
    }


def inject_failure(context: PipelineContext, stage: str, item: int | None = None) -> None:
    """Fail here if the run was told to (``config["fail_at"]`` is ``(stage, item)``), so a
    user can watch fail-fast and then a resume from the cache."""
    config = context.config if isinstance(context.config, dict) else {}
    fail_at = config.get("fail_at")
    if fail_at is not None and fail_at[0] == stage and fail_at[1] in {None, item}:
        where = stage if item is None else f"{stage}[{item}]"
        msg = f"injected failure at {where}"
        raise RuntimeError(msg)


class AudioAnalysisStage:
    """Analyses the song: tempo, duration, sections, lyrics if any."""

    name = "audio_analysis"

    def __init__(self, *, with_lyrics: bool = True) -> None:
        self.with_lyrics = with_lyrics

    async def execute(self, input: str, context: PipelineContext) -> StageResult[AudioBundle]:
        inject_failure(context, "audio")
        await trio.sleep(0.05)
        seed = _seed(input)
        bundle = AudioBundle(
            song=input,
            tempo_bpm=90 + seed % 60,
            duration_ms=150_000 + seed % 90_000,
            sections=("intro", "verse", "chorus", "verse", "chorus", "outro"),
            lyrics=f"lyrics of {input}" if self.with_lyrics else None,
        )
        context.set_state("has_lyrics", bundle.lyrics is not None)
        context.add_metric("duration_ms", bundle.duration_ms)
        return StageResult.success(bundle, stage_name=self.name)


class AudioProfileStage:
    """Summarises the song's energy and mood."""

    name = "audio_profile"

    async def execute(
        self, input: AudioBundle, context: PipelineContext
    ) -> StageResult[dict[str, Any]]:
        inject_failure(context, "profile")
        await trio.sleep(0.04)
        energy = "high" if input.tempo_bpm >= HIGH_ENERGY_BPM else "calm"
        return StageResult.success(
            {"energy": energy, "tempo": input.tempo_bpm}, stage_name=self.name
        )


class LyricsStage:
    """Extracts themes from the lyrics (only runs when the song has lyrics)."""

    name = "lyrics"

    async def execute(self, input: AudioBundle, context: PipelineContext) -> StageResult[list[str]]:
        inject_failure(context, "lyrics")
        if not context.get_state("has_lyrics"):
            return StageResult.failure("No lyrics available", stage_name=self.name)
        themes = await context.provider.complete(f"themes of {input.lyrics}", context)
        return StageResult.success(themes.text.split(), stage_name=self.name)


class MacroPlanner:
    """Proposes the show's plan from the profile and (maybe) the lyric themes; revises it
    with the judge's feedback (a refine-loop planner)."""

    async def propose(
        self, input: dict[str, Any], feedback: str | None, context: PipelineContext
    ) -> Proposal[MacroPlan]:
        inject_failure(context, "macro")
        profile, themes = input["profile"], input["lyrics"]
        prompt = f"theme for a {profile['energy']} song about {themes}"
        if feedback is not None:
            prompt += f"; revise: {feedback}"
        answer = await context.provider.complete(prompt, context)
        briefs = tuple((group, f"{answer.text} ({profile['energy']})") for group in GROUPS)
        plan = MacroPlan(
            theme=answer.text,
            energy=profile["energy"],
            briefs=briefs,
            revision=0 if feedback is None else 1,
        )
        return Proposal(plan, tokens_used=answer.tokens_used)


class MacroJudge:
    """Critiques a plan; a revised plan is good enough (a refine-loop judge)."""

    async def evaluate(self, candidate: MacroPlan, context: PipelineContext) -> Verdict:
        critique = await context.provider.complete(f"critique {candidate.theme}", context)
        score = 0.6 + 0.25 * candidate.revision
        return Verdict(
            accepted=score >= ACCEPT_SCORE,
            score=score,
            feedback=f"more contrast: {critique.text}",
            tokens_used=critique.tokens_used,
        )


class GroupContextsStage:
    """Turns the macro plan into one planning context per display group."""

    name = "group_contexts"

    async def execute(
        self, input: MacroPlan, context: PipelineContext
    ) -> StageResult[list[dict[str, str]]]:
        inject_failure(context, "group_contexts")
        await trio.lowlevel.checkpoint()
        contexts = [{"group": group, "brief": brief} for group, brief in input.briefs]
        return StageResult.success(contexts, stage_name=self.name)


class GroupPlannerStage:
    """Plans the effects of one display group (run once per group by fan-out)."""

    name = "group_planner"

    async def execute(
        self, input: dict[str, str], context: PipelineContext
    ) -> StageResult[GroupPlan]:
        prompt = f"effects for {input['group']}: {input['brief']}"
        answer = await context.provider.complete(prompt, context)
        inject_failure(context, "groups", GROUPS.index(input["group"]))
        return StageResult.success(
            GroupPlan(group=input["group"], effects=tuple(answer.text.split())),
            stage_name=self.name,
        )


class RenderStage:
    """Renders the group plans into a (pretend) sequence file description."""

    name = "render"

    async def execute(self, input: list[GroupPlan], context: PipelineContext) -> StageResult[str]:
        inject_failure(context, "render")
        await trio.sleep(0.03)
        effects = sum(len(plan.effects) for plan in input)
        return StageResult.success(
            f"sequence with {len(input)} groups and {effects} effects", stage_name=self.name
        )


def approved(answer: Any) -> str | None:
    """The approval gate's router: an answer (the group plans) renders, None does not."""
    return None if answer is None else "approved"


def build_pipeline(*, with_lyrics: bool = True, approve: bool = False) -> PipelineDefinition:
    """The sequencer pipeline, using every pattern; with ``approve``, a person approves
    the group plans before the render (a gate whose answer routes to it, or not)."""
    llm_retry = RetryConfig(
        max_attempts=3,
        initial_delay_ms=20,
        backoff_multiplier=2.0,
        max_delay_ms=200,
        retryable_errors=["timeout", "rate_limit"],
    )
    return PipelineDefinition(
        name="twinklr_sequencer",
        description="Audio to light-show sequence",
        stages=[
            StageDefinition("audio", AudioAnalysisStage(with_lyrics=with_lyrics)),
            StageDefinition(
                "profile", AudioProfileStage(), pattern=ExecutionPattern.PARALLEL, inputs=["audio"]
            ),
            StageDefinition(
                "lyrics",
                LyricsStage(),
                pattern=ExecutionPattern.CONDITIONAL,
                inputs=["audio"],
                condition=lambda ctx: ctx.get_state("has_lyrics", default=False),
                critical=False,
            ),
            StageDefinition(
                "macro",
                RefineStage(
                    MacroPlanner(), MacroJudge(), max_iterations=3, token_budget=400, name="macro"
                ),
                inputs=["profile", "lyrics"],
                retry_config=llm_retry,
                timeout_ms=2000,
                output_type=MacroPlan,  # the refine stage's own annotation says Any
            ),
            StageDefinition("group_contexts", GroupContextsStage(), inputs=["macro"]),
            StageDefinition(
                "groups",
                GroupPlannerStage(),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["group_contexts"],
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=10),
                max_concurrent_fan_out=3,
            ),
            *(
                [
                    StageDefinition(
                        "approve",
                        WaitForInput("Render the show from these group plans?"),
                        inputs=["groups"],
                        routes={"approved": ["render"]},
                        router=approved,
                    )
                ]
                if approve
                else []
            ),
            StageDefinition("render", RenderStage(), inputs=["approve" if approve else "groups"]),
        ],
    )


def summarize(result: PipelineResult) -> str:
    """What a person wants to see: the timeline and critical path, the LLM's bill, the
    outcome."""
    metrics = result.metrics
    lines = [
        timeline_report(result),
        (
            f"LLM: {metrics.get('llm_requests', 0)} requests, {metrics.get('llm_tokens', 0)} "
            f"tokens, {metrics.get('rate_limit_wait_ms', 0):.0f} ms waiting for the rate "
            f"limiter; macro plan accepted after {metrics.get('macro_iterations', 0)} iterations"
        ),
    ]
    if result.success and "render" in result.skipped_stages:
        lines.append("render: skipped (not approved)")
    elif result.success:
        lines.append(f"render: {result.outputs['render']}")
    else:
        lines.append(f"error: {result.error}")
    return "\n".join(lines)


#: What the demo's fake model costs: US dollars per million input and output tokens.
DEMO_PRICES = (0.15, 0.60)


def demo_context(song: str, fail_at: tuple[str, int | None] | None = None) -> PipelineContext:
    """A fake LLM (its first macro-planning call fails, so the run shows a retry) behind a
    shared rate limiter, priced as a small hosted model (so the summary shows each
    stage's cost); ``fail_at`` injects a failure at a stage (or one of its items)."""
    llm = FakeLLMProvider(
        latency_s=0.02, fail_once_on=("theme for",), prices={"fake-llm": DEMO_PRICES}
    )
    limiter = RateLimiter(requests_per_minute=600, tokens_per_minute=100_000, name="fake-llm")
    config = {"song": song, "fail_at": fail_at}
    return PipelineContext(provider=llm, config=config, rate_limiter=limiter)


async def run_demo(
    song: str = "Carol of the Bells",
    *,
    with_lyrics: bool = True,
    fail_at: tuple[str, int | None] | None = None,
    executor: PipelineExecutor | None = None,
) -> PipelineResult:
    """Run the sequencer pipeline once."""
    pipeline = build_pipeline(with_lyrics=with_lyrics)
    context = demo_context(song, fail_at)
    return await (executor or PipelineExecutor()).execute(pipeline, song, context)


def main(argv: list[str] | None = None) -> int:
    """Run the demo and print its summary; exit status 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--song", default="Carol of the Bells")
    parser.add_argument("--no-lyrics", action="store_true", help="analyse an instrumental")
    args = parser.parse_args(argv)
    # An application (not the library) decides how logs look: warnings only, here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    result = trio.run(lambda: run_demo(args.song, with_lyrics=not args.no_lyrics))
    print(summarize(result))  # noqa: T201 (the demo's output)
    return 0 if result.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
