"""What one run's cache tells the user: which stages were not cached and why, and what
went wrong with the store. Each is logged when it happens and said once, through
`warnings` (a `CacheWarning`), when the run ends: a program with ``-W error`` (or a test
suite with ``filterwarnings = error``) gets it from ``execute`` after everything the run
did is saved, never as the failure of a stage."""

from __future__ import annotations

import warnings
from typing import Any

from ..errors import CacheWarning

#: What every "not cached" warning ends with.
OPT_OUT = "set cache=False on the stage to run it uncached without this warning"


class Notices:
    """The run's cache notices, at most one per stage and one per kind of problem."""

    def __init__(self, pipeline: str, log: Any) -> None:
        self.pipeline = pipeline
        self.log = log
        #: Stage id -> why it was not cached (None: said by a problem of the run's).
        self.uncached: dict[str, str | None] = {}
        self._problems: dict[tuple[str, str], str] = {}
        self._told = False

    def stage_uncached(self, stage: str, event: str, why: str, *, advice: str = "") -> None:
        """``stage`` ran but its output was not cached, because ``why`` (said once)."""
        if stage in self.uncached:
            return
        self.uncached[stage] = (
            f"stage {stage!r} of pipeline {self.pipeline!r} was not cached: {why}. "
            f"It ran as usual; {advice}{OPT_OUT}"
        )
        self.log.warning(event, stage=stage, error=why)

    def mark_uncached(self, stages: list[str]) -> None:
        """``stages`` were not cached for a reason a problem of the run's says."""
        for stage in stages:
            self.uncached.setdefault(stage, None)

    def problem(self, event: str, text: str, *, stage: str = "", **fields: Any) -> None:
        """Something about the cache as a whole (or one entry of ``stage``)."""
        if (stage, event) in self._problems:
            return
        self._problems[stage, event] = f"pipeline {self.pipeline!r}: {text}"
        self.log.warning(event, stage=stage or None, **fields)

    def tell(self) -> None:
        """Say everything noticed, once (a `CacheWarning` each)."""
        if self._told:
            return
        self._told = True
        for text in [*self._problems.values(), *self.uncached.values()]:
            if text is not None:
                warnings.warn(CacheWarning(text), stacklevel=3)
