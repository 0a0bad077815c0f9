"""twinklr-pipeline demo: failure injection and resume, the approval gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.commands import (
    TESTS,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
)
from twinklr.core.pipeline.cli import main


def test_the_demo_fails_then_resumes_running_only_what_is_missing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trace = tmp_path / "demo.json"
    assert main(["demo", "--fail-at", "groups:2", "--trace", str(trace)]) == 0
    out, err = capsys.readouterr()
    assert "== run 1: with a failure injected at groups:2" in out
    assert "groups: FAILED" in err
    assert "== run 2: resuming" in out
    # (how many of the groups' items made it into the cache before item 2 failed depends on
    # real-time scheduling: the exact resume is checked in test_cache_run)
    assert "cached: audio, profile, lyrics, macro, group_contexts" in out
    assert "render: sequence with 6 groups" not in out  # the summary is the timeline
    assert json.loads(trace.read_text())["traceEvents"]


@pytest.mark.parametrize(("answer", "rendered"), [("y\n", True), ("n\n", False), ("", False)])
def test_demo_approve_asks_before_rendering(answer: str, *, rendered: bool) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twinklr.core.pipeline.cli", "demo", "--approve"],
        cwd=TESTS,
        input=answer,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "approve: Render the show from these group plans?" in done.stderr
    assert "approve: waiting for input" in done.stderr
    assert ("render: done" in done.stderr) is rendered
    assert ("render: skipped" in done.stderr) is not rendered
