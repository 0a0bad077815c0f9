"""twinklr-pipeline run: progress, summary, cache, outputs, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.commands import (
    FIXTURES,
    TESTS,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
    installed,
    one_line_usage_error,
    run_cli,
)
from twinklr.core.pipeline.cli import main


def test_run_prints_progress_and_a_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    trace = tmp_path / "trace.json"
    gantt = tmp_path / "gantt.mmd"
    code = main(
        ["run", f"{FIXTURES}:numbers", "--input", "5", "--trace", str(trace), "--gantt", str(gantt)]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "a: started" in err
    assert "c: done" in err
    assert "pipeline numbers" in out
    assert "succeeded" in out
    events = json.loads(trace.read_text())["traceEvents"]
    assert {e["name"] for e in events if e["ph"] == "X"} == {"a", "b", "c"}
    assert gantt.read_text().startswith("gantt")


def test_run_takes_input_from_a_file_and_a_factory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "input.json"
    source.write_text("1")
    assert main(["run", f"{FIXTURES}:make_numbers", "--input", f"@{source}", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""


def test_a_failed_run_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", f"{FIXTURES}:failing"]) == 1
    err = capsys.readouterr().err
    assert "b: FAILED (this stage always fails)" in err
    assert "run failed at b" in err


def test_a_cached_rerun_serves_stages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert main(["run", f"{FIXTURES}:numbers", "--cache", cache, "--quiet"]) == 0
    assert main(["run", f"{FIXTURES}:numbers", "--cache", cache]) == 0
    out, err = capsys.readouterr()
    assert "a: cached" in err
    # The table and the critical path count from the first stage, not the run's set-up.
    first_row = next(line for line in out.splitlines() if line.startswith("a "))
    assert first_row.split()[2] == "0.0"  # queued
    line = next(line for line in out.splitlines() if line.startswith("critical path ("))
    total = float(re.match(r"critical path \(([\d.]+) ms\)", line)[1])  # type: ignore[index]
    shares = [float(ms) for ms in re.findall(r"\S+ ([\d.]+) ms \(\d+%\)", line)]
    assert re.findall(r"(\S+) [\d.]+ ms \(", line) == ["a", "b", "c"]
    assert total == pytest.approx(sum(shares), abs=0.2)  # the path is all the stages' time
    assert main(["cache", "stats", "--cache", cache]) == 0
    stats = capsys.readouterr().out.splitlines()
    assert stats[0].startswith("3 entries, ")
    assert stats[0].endswith(" bytes, pipelines: numbers")
    assert stats[1].startswith("  numbers: 3 entries, ")
    assert stats[0].split(", ")[1] == stats[1].split(", ")[1]  # the same byte count
    assert main(["cache", "list", "--cache", cache]) == 0
    assert capsys.readouterr().out.count("numbers") == 3
    assert main(["cache", "clear", "--cache", cache, "--stage", "a"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert main(["cache", "prune", "--cache", cache, "--older-than", "7d"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("2 entries, ")  # all recent
    assert main(["cache", "prune", "--cache", cache, "--max-bytes", "0"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"removed 2 entries from {Path(cache) / 'twinklr-cache.sqlite3'}",
        "0 entries, 0 bytes left",
    ]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_cancels_the_run_and_names_the_cancelled_stages(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twinklr.core.pipeline.cli",
            "run",
            f"{FIXTURES}:slow",
            "--cache",
            str(cache),
        ],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "long_b: started" not in seen or "long_a: started" not in seen:
        assert time.monotonic() < deadline, seen
        seen += child.stderr.readline()
    child.send_signal(signal.SIGINT)
    _out, err = child.communicate(timeout=30)
    assert child.returncode == 130
    assert "interrupted: cancelled long_a, long_b" in err
    stats = run_cli("cache", "list", "--cache", str(cache))
    assert "quick" in stats.stdout
    assert "long_a" not in stats.stdout
    assert "long_b" not in stats.stdout


TYPED = """
import numpy, pydantic
from twinklr.core.pipeline import PipelineDefinition, StageDefinition

class Plan(pydantic.BaseModel):
    group: str

async def analyse(value):
    return numpy.linspace(0, 1, 3)

async def plan(samples):
    return Plan(group=f"roof {samples.max()}")

pipeline = PipelineDefinition(
    "typed",
    [StageDefinition("analyse", analyse), StageDefinition("plan", plan, inputs=["analyse"])],
)
"""


def test_run_writes_its_outputs_as_json(tmp_path: Path) -> None:
    (tmp_path / "typed.py").write_text(TYPED)
    outputs = tmp_path / "outputs.json"
    done = installed("run", "typed:pipeline", "--outputs", str(outputs), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"outputs written to {outputs}" in done.stdout
    assert json.loads(outputs.read_text()) == {
        "analyse": [0.0, 0.5, 1.0],
        "plan": {"group": "roof 1.0"},
    }
    missing = str(tmp_path / "no" / "outputs.json")
    one_line_usage_error(
        installed("run", "typed:pipeline", "--outputs", missing, cwd=tmp_path),
        "--outputs",
        "cannot be written",
    )


def test_a_run_on_a_terminal_previews_what_the_terminal_stages_produced(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["run", f"{FIXTURES}:numbers"]) == 0
    out = capsys.readouterr().out
    preview = out[out.index("outputs:") :].splitlines()
    assert preview[0] == "outputs:"
    assert all(line.startswith("  ") for line in preview[1:])
    assert len(preview) >= 2


def test_with_quiet_the_run_still_says_the_cache_was_unusable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "cache"
    broken.mkdir()
    (broken / "twinklr-cache.sqlite3").write_bytes(b"not a database" * 100)
    assert main(["run", f"{FIXTURES}:numbers", "--cache", str(broken), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert (
        "cache: pipeline 'numbers': the cache could not be read (DatabaseError: file is" in (err[0])
    )
    assert any(
        line.startswith("cache: pipeline 'numbers': the cache could not be written") for line in err
    )


def test_a_cache_or_run_store_that_could_never_work_is_one_line_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for option in ("--cache", "--runs"):
        assert main(["run", f"{FIXTURES}:numbers", option, str(blocker / "store")]) == 2
        out, err = capsys.readouterr()
        assert (out, err.count("\n")) == ("", 1)
        assert f"{blocker} is a file, not a directory" in err


def test_context_gives_the_stages_a_limiter_and_without_it_the_error_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["run", f"{FIXTURES}:limited", "--input", "1"]) == 1
    err = capsys.readouterr().err
    assert "no rate limiter is configured" in err
    assert "from the command line, name a context that has one: --context MODULE:ATTR" in err
    for context in ("make_context", "shared_context"):  # a factory, or the context itself
        args = ["run", f"{FIXTURES}:limited", "--input", "1", "--context", f"{FIXTURES}:{context}"]
        assert main([*args, "--outputs", str(tmp_path / "out.json")]) == 0
        assert json.loads((tmp_path / "out.json").read_text())["paced"] == 2


@pytest.mark.parametrize(
    ("context", "said"),
    [
        ("not_a_pipeline", "--context: fixtures.cli_pipelines:not_a_pipeline is a int, not a "),
        ("make_contxt", "has no attribute 'make_contxt'; its PipelineContexts: make_context, "),
        ("numbers", "is a PipelineDefinition, not a PipelineContext"),
    ],
)
def test_a_context_that_is_not_one_is_a_usage_error(
    context: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{FIXTURES}:limited", "--context", f"{FIXTURES}:{context}"]) == 2
    assert said in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")
def test_run_on_a_terminal_asks_for_a_gate_and_asks_again_for_a_wrong_answer() -> None:
    import pty  # noqa: PLC0415

    leader, follower = pty.openpty()
    # Typed before it asks: the terminal keeps the lines until the gate reads them.
    os.write(leader, b'"many"\nnot json\n4\n')
    with subprocess.Popen(
        [sys.executable, "-m", "twinklr.core.pipeline.cli", "run", f"{FIXTURES}:typed_gate"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=TESTS,
        text=True,
    ) as child:
        os.close(follower)
        out, err = child.communicate(timeout=120)
    os.close(leader)
    assert child.returncode == 0, err
    assert "approve: How many more?\n  1\n  the answer must be a int" in err
    assert "refused: the answer to gate 'approve' is not a valid int" in err
    assert "not JSON: " in err
    assert "pipeline typed_gate, run " in out
    assert re.search(r"^b\s+succeeded", out, re.MULTILINE)


def test_a_gate_nobody_here_answers_says_how_to_answer_it(tmp_path: Path) -> None:
    store = str(tmp_path)
    child = subprocess.Popen(
        [
            *(sys.executable, "-m", "twinklr.core.pipeline.cli", "run", f"{FIXTURES}:typed_gate"),
            *("--runs", store, "--outputs", str(tmp_path / "out.json")),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=TESTS,
        text=True,
    )
    try:
        assert child.stderr is not None
        line = ""
        while "waiting for input" not in line:
            line = child.stderr.readline()
            assert line, "the run ended without saying its gate waits"
        run_id = line.split("runs respond ")[1].split()[0]
        assert line.rstrip().endswith(
            f"approve: waiting for input (answer: twinklr-pipeline runs respond {run_id} "
            f"approve --store {store} --approve | --reject | --value JSON)"
        )
        answer = ["runs", "respond", run_id, "approve", "--value", "4", "--store", store]
        for _ in range(200):  # (the run's first batch is written 50 ms after it starts)
            if main(answer) == 0:
                break
            time.sleep(0.05)
        assert child.wait(timeout=60) == 0
    finally:
        child.kill()
        child.wait()
        if child.stderr is not None:
            child.stderr.close()
    assert json.loads((tmp_path / "out.json").read_text())["b"] == 14


def test_log_lines_come_in_order_with_the_progress_and_a_failure_is_said_once() -> None:
    done = run_cli("run", f"{FIXTURES}:chatter")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    said = [
        "a: started" if "a: started" in line
        else "b: started" if "b: started" in line
        else "log" if "lights_dim" in line
        else None
        for line in lines
    ]  # fmt: skip
    assert [s for s in said if s] == ["a: started", "log", "b: started", "log"]
    failed = run_cli("run", f"{FIXTURES}:failing")
    assert failed.returncode == 1
    assert "stage_failed" not in failed.stderr  # the progress line says it, and the summary
    assert failed.stderr.count("this stage always fails") == 1
    assert "run failed at b" in failed.stderr
    assert re.search(r"^b\s+failed", failed.stdout, re.MULTILINE)  # and the table says so
