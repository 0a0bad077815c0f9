"""The shared, mutable context that stages read and write, and its frozen snapshot."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class ContextSnapshot:
    """A frozen copy of a context's state and metrics at one moment."""

    state: Mapping[str, Any]
    """State keys and values (a shallow copy)."""
    metrics: Mapping[str, Any]
    """Metric names and values (a shallow copy)."""


@attrs.define
class PipelineContext:
    """Services and shared state for one run (or several, if you pass it again).

    Stages get services through it (dependency injection) and talk to each other through
    ``state``; ``metrics`` collects numbers for the run's result. All stages run on one
    Trio thread, so reads and writes need no locking.
    """

    provider: Any = None
    """The LLM (or other) provider stages call."""
    config: Any = None
    """Application configuration."""
    job_config: Any = None
    """Configuration of this job."""
    state: dict[str, Any] = attrs.field(factory=dict)
    """Mutable state shared between stages."""
    metrics: dict[str, Any] = attrs.field(factory=dict)
    """Metrics recorded by stages and by the executor."""

    def get_state(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""
        return self.state.get(key, default)

    def set_state(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` for downstream stages."""
        self.state[key] = value

    def add_metric(self, name: str, value: Any) -> None:
        """Record ``value`` as metric ``name`` (replacing any earlier value)."""
        self.metrics[name] = value

    def increment_metric(self, name: str, amount: float = 1) -> None:
        """Add ``amount`` to metric ``name`` (starting from 0)."""
        self.metrics[name] = self.metrics.get(name, 0) + amount

    def get_metric(self, name: str, default: Any = None) -> Any:
        """The value of metric ``name``, or ``default``."""
        return self.metrics.get(name, default)

    def snapshot(self) -> ContextSnapshot:
        """A frozen copy of state and metrics as they are now."""
        return ContextSnapshot(
            state=MappingProxyType(dict(self.state)),
            metrics=MappingProxyType(dict(self.metrics)),
        )
