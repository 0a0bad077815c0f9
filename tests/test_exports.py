"""The public API is pinned: these names, importable from these places."""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path

from twinklr.core import pipeline
from twinklr.core.pipeline import cli, definition, errors

PUBLIC = {
    "ClusterRunner",
    "DaskRunner",
    "RayRunner",
    "on_run_end",
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
    "CacheWarning",
    "BudgetExceededError",
    "IndexedCacheStore",
    "MemoryCacheStore",
    "NoOutputError",
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
    "PostgresCacheStore",
    "PostgresRunStore",
    "RetryConfig",
    "RunEvents",
    "RunHandle",
    "RunStatus",
    "RunStore",
    "RunStoreProtocol",
    "RecordedRun",
    "InputRequest",
    "WaitForInput",
    "RecordedStage",
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
    "stage",
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
        "numpy",  # handled when a program uses it, never imported by the package
        "pydantic",
        "dask",
        "distributed",
        "opentelemetry",
        "twinklr.core.pipeline.cli",
        "twinklr.core.pipeline._cli",
        "twinklr.core.pipeline._cli._live",
        "twinklr.core.pipeline.ui",
        "twinklr.core.pipeline._ui",
        "starlette",
        "hypercorn",
        # asyncio hosting: loaded when an asyncio program runs a pipeline
        "twinklr.core.pipeline.aio",
        "twinklr.core.pipeline._engine._hosts",
        "twinklr.core.pipeline._engine._guest",
        "twinklr.core.pipeline._engine._hosted",
        "trio_asyncio",
        # the LLM providers' SDKs: loaded by a provider's first call
        "openai",
        "anthropic",
    )
    for heavy in optional:
        assert f"'{heavy}'" not in loaded


def test_the_package_imports_only_what_every_run_needs() -> None:
    # structlog (when the application configured it, it has imported it), tenacity (the
    # first retried stage), cattrs (the first cached value) and asyncio (an asyncio
    # program has it) load when they are used.
    code = "import sys, twinklr.core.pipeline; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    for later in ("structlog", "tenacity", "cattrs", "asyncio"):
        assert f"'{later}'" not in loaded


def test_the_testing_kit_exports_the_store_conformance_checks() -> None:
    from twinklr.core.pipeline import testing  # noqa: PLC0415

    assert {"cache_store_conformance", "run_store_conformance"} <= set(testing.__all__)
    assert testing.cache_store_conformance.__module__.startswith("twinklr.core.pipeline.")


def test_the_api_reference_documents_every_public_name() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "reference" / "api.md"
    documented = set(
        re.findall(r"^::: twinklr\.core\.pipeline\.(\w+)$", page.read_text(), re.MULTILINE)
    )
    assert documented == set(pipeline.__all__)


def _public_docstrings() -> dict[str, str]:
    """The docstrings the API reference renders: each public name's and its members'."""
    from twinklr.core.pipeline import testing  # noqa: PLC0415 (the testing page's)

    found: dict[str, str] = {}
    for module, names in ((pipeline, pipeline.__all__), (testing, testing.__all__)):
        found[module.__name__] = module.__doc__ or ""
        for name in names:
            obj = getattr(module, name)
            found[name] = getattr(obj, "__doc__", None) or ""
            for member, value in vars(obj).items() if isinstance(obj, type) else ():
                doc = getattr(value, "__doc__", None)
                if not member.startswith("_") and isinstance(doc, str):
                    found[f"{name}.{member}"] = doc
    return found


def test_docstrings_are_markdown_in_words_for_users() -> None:
    # Google-style sections and Markdown: no reStructuredText roles, no internal
    # modules or project-history words in what the reference shows.
    unfit = re.compile(r":(class|func|meth|attr|mod|exc|data):|``_[a-z]|\bseed's\b|\bissue \d")
    bad = {
        name: [m.group(0) for m in unfit.finditer(doc)]
        for name, doc in _public_docstrings().items()
    }
    assert {name: found for name, found in bad.items() if found} == {}


def test_docstrings_with_parameters_use_google_sections() -> None:
    docs = _public_docstrings()
    for name in (
        "PipelineExecutor",
        "PipelineExecutor.execute",
        "PipelineExecutor.start",
        "run_pipeline",
        "stage",
        "render_graph",
        "RateLimiter",
        "RefineStage",
        "SQLiteCacheStore",
        "PostgresCacheStore",
        "PostgresRunStore",
        "MemoryCacheStore",
        "SyncStage",
        "DaskRunner",
        "RayRunner",
    ):
        assert "\n    Args:\n" in docs[name] or "\n        Args:\n" in docs[name], name


def test_public_values_pickle_by_their_public_path() -> None:
    # (A StageResult does not pickle: its metadata is a read-only mappingproxy.)
    values = [
        pipeline.StageTiming(
            stage="a",
            status=pipeline.StageStatus.SUCCEEDED,
            queued_ms=0,
            started_ms=0,
            finished_ms=1,
            attempts=1,
        ),
        pipeline.RetryConfig(3),
        pipeline.ExecutionPattern.FAN_OUT,
        pipeline.PipelineEvent(
            kind=pipeline.EventKind.RUN_STARTED, pipeline="p", run_id="r", time_ms=0
        ),
        pipeline.Completion(text="hi"),
    ]
    for value in values:
        data = pickle.dumps(value)
        assert b"twinklr.core.pipeline._" not in data, value
        assert pickle.loads(data) == value  # noqa: S301 (our own bytes)


def test_the_command_module_keeps_its_names() -> None:
    for name in cli.__all__:
        module = getattr(getattr(cli, name), "__module__", cli.__name__)
        assert module == "twinklr.core.pipeline.cli", (name, module)
    assert cli.main.__module__ == "twinklr.core.pipeline.cli"


def test_the_llm_module_exports_its_names_and_loads_no_sdk() -> None:
    from twinklr.core.pipeline import llm  # noqa: PLC0415

    assert sorted(llm.__all__) == [
        "AnthropicProvider",
        "Budget",
        "BudgetExceededError",
        "Completion",
        "FakeLLMProvider",
        "FallbackProvider",
        "LLMProvider",
        "OpenAIProvider",
        "Prices",
        "ProviderError",
        "RateLimiter",
        "Usage",
    ]
    assert llm.OpenAIProvider.__module__ == "twinklr.core.pipeline.llm"
    assert llm.Completion is pipeline.Completion  # the names exported before stay
    code = "import sys, twinklr.core.pipeline.llm; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert "'openai'" not in loaded
