"""The pytest plugin's fixtures, used as a user would (the plugin loads on install)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio.testing

from twinklr.core.pipeline import (
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from twinklr.core.pipeline.testing import RunRecord, fixed, recording

SHARED_STORE = MemoryCacheStore()


def two_stages(name: str) -> PipelineDefinition:
    return PipelineDefinition(
        name=name,
        stages=[
            StageDefinition("a", fixed(2, delay=1.0)),
            StageDefinition("b", recording(lambda x: x + 1, delay=0.5), inputs=["a"]),
        ],
    )


def test_run_virtual_fixture(twinklr_run_virtual: Callable[..., RunRecord]) -> None:
    record = twinklr_run_virtual(two_stages("virtual"))
    record.assert_ran_before("a", "b")
    assert record.result.outputs == {"a": 2, "b": 3}
    assert record.result.total_duration_ms == 1500


async def test_record_fixture(
    twinklr_record: Callable[..., Awaitable[RunRecord]], autojump_clock: trio.testing.MockClock
) -> None:
    record = await twinklr_record(two_stages("recorded"), None)
    record.assert_no_task_left_running()
    assert record.result.timeline["b"].started_ms == 1000


class TestAnOverriddenExecutor:
    @pytest.fixture
    def twinklr_executor(self) -> PipelineExecutor:
        return PipelineExecutor(cache=SHARED_STORE)

    def test_the_fixtures_use_it(self, twinklr_run_virtual: Callable[..., RunRecord]) -> None:
        first = twinklr_run_virtual(two_stages("cached"))
        second = twinklr_run_virtual(two_stages("cached"))
        assert first.result.cached_stages == ()
        assert second.result.cached_stages == ("a", "b")


def test_installing_the_package_registers_the_plugin(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "from twinklr.core.pipeline import PipelineDefinition, StageDefinition\n"
        "from twinklr.core.pipeline.testing import fixed\n"
        "def test_it(twinklr_run_virtual):\n"
        "    p = PipelineDefinition(name='p', stages=[StageDefinition('a', fixed(1, delay=9))])\n"
        "    record = twinklr_run_virtual(p)\n"
        "    assert record.result.total_duration_ms == 9000\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
