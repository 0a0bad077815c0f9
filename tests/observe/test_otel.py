"""OpenTelemetry: a span per run, a child span per stage attempt; a no-op otherwise."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    FakeLLMProvider,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)
from twinklr.core.pipeline._observe._otel import find_tracer


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def finished(exporter: InMemorySpanExporter) -> list[dict[str, Any]]:
    """The finished spans as plain dicts (the SDK's fields are all Optional)."""
    spans: list[Any] = list(exporter.get_finished_spans())
    return [
        {
            "name": span.name,
            "attributes": dict(span.attributes or {}),
            "status": span.status.status_code,
            "description": span.status.description,
            "start": span.start_time,
            "end": span.end_time,
            "id": span.context.span_id,
            "parent": span.parent.span_id if span.parent is not None else None,
            "events": [(event.name, dict(event.attributes or {})) for event in span.events],
        }
        for span in spans
    ]


def tracer_for(exporter: InMemorySpanExporter) -> object:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


async def test_a_run_and_its_stage_attempts_are_spans(
    exporter: InMemorySpanExporter, autojump_clock: trio.testing.MockClock
) -> None:
    pipeline = PipelineDefinition(
        "traced",
        [
            StageDefinition(
                "flaky",
                stub(delay=1, fail_times=1, error="rate_limit"),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=500),
            ),
            StageDefinition("slow", stub(delay=10)),
            StageDefinition("boom", stub(delay=4, fail_times=9, error="kaput"), inputs=["flaky"]),
        ],
    )
    result = await PipelineExecutor(tracer=tracer_for(exporter)).execute(pipeline)
    spans = {(s["name"], s["attributes"].get("twinklr.attempt")): s for s in finished(exporter)}
    run = spans[("pipeline traced", None)]
    assert run["attributes"]["twinklr.run_id"] == result.run_id
    assert run["status"] is StatusCode.ERROR
    for key in [("stage flaky", 1), ("stage flaky", 2), ("stage slow", 1), ("stage boom", 1)]:
        assert spans[key]["parent"] == run["id"]
    first, second = spans[("stage flaky", 1)], spans[("stage flaky", 2)]
    assert first["status"] is StatusCode.ERROR
    assert second["start"] - first["end"] == 500_000_000  # the backoff, in ns
    assert second["end"] - second["start"] == 1_000_000_000
    assert second["attributes"]["twinklr.status"] == "succeeded"
    assert second["status"] is StatusCode.OK
    assert spans[("stage boom", 1)]["description"] == "kaput"
    slow = spans[("stage slow", 1)]
    assert slow["attributes"]["twinklr.status"] == "cancelled"
    assert slow["end"] - slow["start"] == 6_500_000_000  # cancelled when boom failed
    assert run["end"] - run["start"] == 6_500_000_000


async def test_fan_out_items_are_events_on_their_stage_span(
    exporter: InMemorySpanExporter,
) -> None:
    pipeline = PipelineDefinition(
        "fan",
        [
            StageDefinition("items", stub([1, 2])),
            StageDefinition("each", stub(), pattern=ExecutionPattern.FAN_OUT, inputs=["items"]),
        ],
    )
    await PipelineExecutor(tracer=tracer_for(exporter)).execute(pipeline)
    (each,) = [s for s in finished(exporter) if s["name"] == "stage each"]
    assert [name for name, _ in each["events"]] == ["item_finished", "item_finished"]
    assert sorted(attributes["twinklr.done"] for _, attributes in each["events"]) == [1, 2]


def test_without_an_sdk_or_the_extra_nothing_is_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_tracer(None) is None  # the API is imported, but no provider is set up
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    assert find_tracer(None) is None
    sentinel = object()
    assert find_tracer(sentinel) is sentinel


def test_an_application_provider_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = TracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: provider)
    monkeypatch.setattr(trace, "get_tracer", provider.get_tracer)
    assert find_tracer(None) is not None


async def test_a_stage_span_carries_its_llm_usage_with_the_gen_ai_names(
    exporter: InMemorySpanExporter,
) -> None:
    async def plan(song: str, context: PipelineContext) -> str:
        answer = await context.provider.complete(f"plan the lights for {song}", context)
        return str(answer.text)

    pipeline = PipelineDefinition(
        "llm", [StageDefinition("plan", plan), StageDefinition("quiet", stub(1))]
    )
    context = PipelineContext(provider=FakeLLMProvider(prices={"fake-llm": (1.0, 1.0)}))
    result = await PipelineExecutor(tracer=tracer_for(exporter)).execute(pipeline, "carol", context)
    spans = {span["name"]: span["attributes"] for span in finished(exporter)}
    used = result.usage_by_stage["plan"]
    assert spans["stage plan"]["gen_ai.request.model"] == "fake-llm"
    assert spans["stage plan"]["gen_ai.usage.input_tokens"] == used.input_tokens
    assert spans["stage plan"]["gen_ai.usage.output_tokens"] == used.output_tokens
    assert spans["stage plan"]["twinklr.llm.requests"] == 1
    assert spans["stage plan"]["twinklr.llm.cost_usd"] == used.cost_usd
    assert "gen_ai.usage.input_tokens" not in spans["stage quiet"]
