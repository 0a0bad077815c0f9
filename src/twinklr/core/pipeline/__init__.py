"""Declarative pipeline (DAG) orchestration for Trio, built as an actor model.

Declare stages and their inputs with `PipelineDefinition` and
`StageDefinition`; `PipelineExecutor` runs each stage as its own Trio task
the moment its inputs arrive.
"""

from ._cache._postgres import PostgresCacheStore as PostgresCacheStore
from ._cache._sqlite import SQLiteCacheStore as SQLiteCacheStore
from ._cache._store import CacheEntry as CacheEntry
from ._cache._store import CacheRecord as CacheRecord
from ._cache._store import CacheStore as CacheStore
from ._cache._store import IndexedCacheStore as IndexedCacheStore
from ._cache._store import MemoryCacheStore as MemoryCacheStore
from ._engine._executor import PipelineExecutor as PipelineExecutor
from ._engine._executor import run_pipeline as run_pipeline
from ._engine._handle import RunEvents as RunEvents
from ._engine._handle import RunHandle as RunHandle
from ._engine._handle import RunStatus as RunStatus
from ._kinds._function import stage as stage
from ._kinds._gate import InputRequest as InputRequest
from ._kinds._gate import WaitForInput as WaitForInput
from ._kinds._protocol import PipelineStage as PipelineStage
from ._kinds._subpipeline import SubPipelineStage as SubPipelineStage
from ._llm._provider import Completion as Completion
from ._llm._provider import FakeLLMProvider as FakeLLMProvider
from ._llm._provider import LLMProvider as LLMProvider
from ._llm._ratelimit import RateLimiter as RateLimiter
from ._llm._ratelimit import RateLimiterStatistics as RateLimiterStatistics
from ._llm._refine import Judge as Judge
from ._llm._refine import Planner as Planner
from ._llm._refine import Proposal as Proposal
from ._llm._refine import RefineStage as RefineStage
from ._llm._refine import Verdict as Verdict
from ._observe._contract import RunStoreProtocol as RunStoreProtocol
from ._observe._events import EventKind as EventKind
from ._observe._events import PipelineEvent as PipelineEvent
from ._observe._postgres_runs import PostgresRunStore as PostgresRunStore
from ._observe._records import RecordedRun as RecordedRun
from ._observe._records import RecordedStage as RecordedStage
from ._observe._report import timeline_report as timeline_report
from ._observe._runs import RunStore as RunStore
from ._observe._trace import critical_path as critical_path
from ._observe._trace import to_chrome_trace as to_chrome_trace
from ._observe._trace import to_mermaid_gantt as to_mermaid_gantt
from ._observe._viz import render_graph as render_graph
from ._observe._viz import to_dot as to_dot
from ._observe._viz import to_mermaid as to_mermaid
from ._offload._cluster import ClusterRunner as ClusterRunner
from ._offload._dask import DaskRunner as DaskRunner
from ._offload._ray import RayRunner as RayRunner
from ._offload._runners import ProcessRunner as ProcessRunner
from ._offload._runners import Runner as Runner
from ._offload._runners import SyncStage as SyncStage
from ._offload._runners import ThreadRunner as ThreadRunner
from ._values._context import ContextSnapshot as ContextSnapshot
from ._values._context import PipelineContext as PipelineContext
from ._values._current import on_run_end as on_run_end
from ._values._results import PipelineResult as PipelineResult
from ._values._results import StageResult as StageResult
from ._values._results import failure_result as failure_result
from ._values._results import skipped_result as skipped_result
from ._values._results import success_result as success_result
from ._values._status import StageStatus as StageStatus
from ._values._timing import CriticalStep as CriticalStep
from ._values._timing import ItemTiming as ItemTiming
from ._values._timing import StageTiming as StageTiming
from .definition import ExecutionPattern as ExecutionPattern
from .definition import PipelineDefinition as PipelineDefinition
from .definition import RetryConfig as RetryConfig
from .definition import StageDefinition as StageDefinition
from .errors import BudgetExceededError as BudgetExceededError
from .errors import CacheWarning as CacheWarning
from .errors import ConditionError as ConditionError
from .errors import FanOutInputError as FanOutInputError
from .errors import FanOutItemError as FanOutItemError
from .errors import GraphvizNotFoundError as GraphvizNotFoundError
from .errors import NoOutputError as NoOutputError
from .errors import PipelineError as PipelineError
from .errors import PipelineValidationError as PipelineValidationError
from .errors import ProviderError as ProviderError
from .errors import StageExecutionError as StageExecutionError
from .errors import StageFailedError as StageFailedError
from .errors import StageOutputError as StageOutputError
from .errors import StageTimeoutError as StageTimeoutError

__all__ = [
    "BudgetExceededError",
    "CacheEntry",
    "CacheRecord",
    "CacheStore",
    "CacheWarning",
    "ClusterRunner",
    "Completion",
    "ConditionError",
    "ContextSnapshot",
    "CriticalStep",
    "DaskRunner",
    "EventKind",
    "ExecutionPattern",
    "FakeLLMProvider",
    "FanOutInputError",
    "FanOutItemError",
    "GraphvizNotFoundError",
    "IndexedCacheStore",
    "InputRequest",
    "ItemTiming",
    "Judge",
    "LLMProvider",
    "MemoryCacheStore",
    "NoOutputError",
    "PipelineContext",
    "PipelineDefinition",
    "PipelineError",
    "PipelineEvent",
    "PipelineExecutor",
    "PipelineResult",
    "PipelineStage",
    "PipelineValidationError",
    "Planner",
    "PostgresCacheStore",
    "PostgresRunStore",
    "ProcessRunner",
    "Proposal",
    "ProviderError",
    "RateLimiter",
    "RateLimiterStatistics",
    "RayRunner",
    "RecordedRun",
    "RecordedStage",
    "RefineStage",
    "RetryConfig",
    "RunEvents",
    "RunHandle",
    "RunStatus",
    "RunStore",
    "RunStoreProtocol",
    "Runner",
    "SQLiteCacheStore",
    "StageDefinition",
    "StageExecutionError",
    "StageFailedError",
    "StageOutputError",
    "StageResult",
    "StageStatus",
    "StageTimeoutError",
    "StageTiming",
    "SubPipelineStage",
    "SyncStage",
    "ThreadRunner",
    "Verdict",
    "WaitForInput",
    "critical_path",
    "failure_result",
    "on_run_end",
    "render_graph",
    "run_pipeline",
    "skipped_result",
    "stage",
    "success_result",
    "timeline_report",
    "to_chrome_trace",
    "to_dot",
    "to_mermaid",
    "to_mermaid_gantt",
]

# Present public names as living here (as trio does), so reprs and docs show the
# import path users write rather than private module names.
for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(f"{__name__}._"):
        _obj.__module__ = __name__
del _name, _obj
