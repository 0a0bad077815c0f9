"""The run-store protocol: what the rest of the package needs of a run store."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinklr.core.pipeline import PipelineExecutor, RunStore, RunStoreProtocol


def test_the_sqlite_store_is_a_run_store_named_by_its_file(tmp_path: Path) -> None:
    store: RunStoreProtocol = RunStore(tmp_path)  # (checked by mypy, too)
    assert isinstance(store, RunStoreProtocol)
    assert store.location == str(tmp_path / "twinklr-runs.sqlite3")


class Notes:
    """Not a run store: a few of the methods only."""

    location = "nowhere"

    def write(self) -> None: ...


def test_the_executor_takes_any_run_store_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert PipelineExecutor(runs=store).runs is store
    with pytest.raises(TypeError, match=r"runs must be a run store, got Notes"):
        PipelineExecutor(runs=Notes())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"runs=RunStore\('runs'\)"):
        PipelineExecutor(runs="runs")
