"""The public API is pinned: these names, importable from these places."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from twinklr.core import pipeline
from twinklr.core.pipeline import definition, errors

PUBLIC = {
    "DaskRunner",
    "ProcessRunner",
    "Runner",
    "SyncStage",
    "ThreadRunner",
    "EventKind",
    "PipelineEvent",
    "critical_path",
    "timeline_report",
    "to_chrome_trace",
    "to_mermaid_gantt",
    "CriticalStep",
    "ItemTiming",
    "GraphvizNotFoundError",
    "render_graph",
    "to_dot",
    "to_mermaid",
    "Completion",
    "FakeLLMProvider",
    "Judge",
    "LLMProvider",
    "Planner",
    "Proposal",
    "ProviderError",
    "RefineStage",
    "Verdict",
    "RateLimiter",
    "RateLimiterStatistics",
    "CacheEntry",
    "CacheRecord",
    "CacheStore",
    "MemoryCacheStore",
    "SQLiteCacheStore",
    "ConditionError",
    "ContextSnapshot",
    "ExecutionPattern",
    "FanOutInputError",
    "FanOutItemError",
    "PipelineContext",
    "PipelineDefinition",
    "PipelineError",
    "PipelineExecutor",
    "PipelineResult",
    "PipelineStage",
    "PipelineValidationError",
    "RetryConfig",
    "RunEvents",
    "RunHandle",
    "RunStatus",
    "StageDefinition",
    "StageExecutionError",
    "StageFailedError",
    "StageOutputError",
    "StageResult",
    "StageStatus",
    "StageTimeoutError",
    "StageTiming",
    "SubPipelineStage",
    "failure_result",
    "run_pipeline",
    "skipped_result",
    "success_result",
}


def test_all_is_exactly_the_public_names() -> None:
    assert set(pipeline.__all__) == PUBLIC
    assert pipeline.__all__ == sorted(pipeline.__all__)


def test_every_public_name_is_importable_and_claims_the_package() -> None:
    for name in PUBLIC:
        obj = getattr(pipeline, name)
        module = getattr(obj, "__module__", pipeline.__name__)
        assert not module.split(".")[-1].startswith("_"), (name, module)


def test_seed_import_paths() -> None:
    assert definition.RetryConfig is pipeline.RetryConfig
    assert definition.StageDefinition is pipeline.StageDefinition
    assert errors.PipelineValidationError is pipeline.PipelineValidationError
    assert issubclass(pipeline.PipelineValidationError, ValueError)
    assert issubclass(pipeline.PipelineValidationError, pipeline.PipelineError)


def test_optional_parts_are_not_imported() -> None:
    code = "import sys, twinklr.core.pipeline; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    # (rich is not listed: structlog itself imports it when it is installed)
    optional = (
        "dask",
        "distributed",
        "opentelemetry",
        "twinklr.core.pipeline.cli",
        "twinklr.core.pipeline._cli._live",
    )
    for heavy in optional:
        assert f"'{heavy}'" not in loaded


def test_the_api_reference_documents_every_public_name() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "reference" / "api.md"
    documented = set(
        re.findall(r"^::: twinklr\.core\.pipeline\.(\w+)$", page.read_text(), re.MULTILINE)
    )
    assert documented == set(pipeline.__all__)
