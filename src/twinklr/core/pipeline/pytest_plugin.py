"""pytest plugin for testing pipelines, registered on install (``-p no:twinklr`` turns
it off). Fixtures:

- ``twinklr_executor``: the `PipelineExecutor` the other fixtures run with (a
  plain one; override it in your ``conftest.py`` to add a cache store or a runner).
- ``twinklr_run_virtual``: `twinklr.core.pipeline.testing.run_virtual` with that
  executor, for synchronous tests (each call is a Trio run of its own on a virtual
  clock).
- ``twinklr_record``: `twinklr.core.pipeline.testing.record_run` with that
  executor, for pytest-trio tests (request ``autojump_clock`` too for virtual time).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import pytest

from ._engine._executor import PipelineExecutor
from .testing import RunRecord, record_run, run_virtual


@pytest.fixture
def twinklr_executor() -> PipelineExecutor:
    """The executor the kit's fixtures run pipelines with."""
    return PipelineExecutor()


@pytest.fixture
def twinklr_run_virtual(twinklr_executor: PipelineExecutor) -> Callable[..., RunRecord]:
    """``run_virtual(pipeline, initial_input=None, context=None) -> RunRecord``."""
    return partial(run_virtual, executor=twinklr_executor)


@pytest.fixture
def twinklr_record(twinklr_executor: PipelineExecutor) -> Callable[..., Awaitable[RunRecord]]:
    """``await record_run(pipeline, initial_input=None, context=None) -> RunRecord``."""
    run: Callable[..., Any] = partial(record_run, executor=twinklr_executor)
    return run
