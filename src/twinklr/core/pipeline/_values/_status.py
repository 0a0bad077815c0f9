"""How a stage ended: the status every result, timing and record carries."""

from __future__ import annotations

import enum


class StageStatus(enum.Enum):
    """How a stage ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    SOFT_FAILED = "soft_failed"
    CACHED = "cached"
    CANCELLED = "cancelled"

    # Members are singletons compared by identity, so they may hash by identity too:
    # Enum's own __hash__ is Python code, and statuses are looked up once per stage.
    __hash__ = object.__hash__


#: Statuses for which ``StageResult.success`` is True.
SUCCESS_STATUSES = frozenset({StageStatus.SUCCEEDED, StageStatus.SKIPPED, StageStatus.CACHED})
