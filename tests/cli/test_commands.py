"""The twinklr-pipeline command: in process for the details, as a subprocess for exit
codes, plain output and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twinklr.core.pipeline._cli._common import parse_age, parse_size
from twinklr.core.pipeline.cli import main

TESTS = Path(__file__).parents[1]
FIXTURES = "fixtures.cli_pipelines"


@pytest.fixture(autouse=True)
def in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinklr.core.pipeline.cli", *args],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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
    assert "run failed: stage 'b' failed: this stage always fails" in capsys.readouterr().err


def test_a_cached_rerun_serves_stages(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    assert main(["run", f"{FIXTURES}:numbers", "--cache", cache, "--quiet"]) == 0
    assert main(["run", f"{FIXTURES}:numbers", "--cache", cache]) == 0
    assert "a: cached" in capsys.readouterr().err
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


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1 << 20), ("500M", 500 << 20), ("2G", 2 << 30), ("1.5k", 1536), ("64KiB", 65536)],
)
def test_sizes_take_units_in_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("12h", 43200), ("7d", 604800), ("2w", 1209600)],
)
def test_ages_take_a_unit(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-bytes", "lots"], "expected a size such as 1048576, 500M or 2G, not 'lots'"),
        (["--older-than", "7"], "expected an age such as 30s, 15m, 12h, 7d or 2w, not '7'"),
    ],
)
def test_a_bad_size_or_age_is_a_usage_error(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "prune", *args])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nowhere.module:x"], "cannot import 'nowhere.module'"),
        (["run", f"{FIXTURES}:missing"], "has no attribute 'missing'"),
        (["run", f"{FIXTURES}:not_a_pipeline"], "is a int, not a PipelineDefinition"),
        (["run", "no-colon"], "expected MODULE:ATTR"),
        (["run", f"{FIXTURES}:numbers", "--input", "{bad"], "--input is not valid JSON"),
        (["run", f"{FIXTURES}:numbers", "--input", "@/no/such/file"], "cannot read /no/such/file"),
        (["run", f"{FIXTURES}:invalid"], "depends on unknown stage 'ghost'"),
        (["cache", "list", "--cache", "/no/such/dir"], "no cache at /no/such/dir"),
        (["demo", "--fail-at", "groups:x"], "--fail-at expects STAGE or STAGE:ITEM"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", f"{FIXTURES}:numbers"]) == 0
    assert "is valid: 3 stages" in capsys.readouterr().out
    assert main(["validate", f"{FIXTURES}:invalid"]) == 2
    err = capsys.readouterr().err
    assert "stage 'a' depends on unknown stage 'ghost'" in err


def test_graph(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["graph", f"{FIXTURES}:numbers"]) == 0
    assert capsys.readouterr().out.startswith("flowchart LR")
    dot = tmp_path / "g.dot"
    assert main(["graph", f"{FIXTURES}:numbers", "--format", "dot", "--output", str(dot)]) == 0
    assert dot.read_text().startswith('digraph "numbers"')


@pytest.mark.skipif(not __import__("shutil").which("dot"), reason="Graphviz is not installed")
def test_graph_renders_svg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svg = tmp_path / "g.svg"
    assert main(["graph", f"{FIXTURES}:numbers", "--format", "svg", "--output", str(svg)]) == 0
    assert "<svg" in svg.read_text()


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


def test_subprocess_errors_and_trace(tmp_path: Path) -> None:
    invalid = run_cli("run", f"{FIXTURES}:invalid")
    assert invalid.returncode == 2
    assert "stage 'a' depends on unknown stage 'ghost'" in invalid.stderr
    bad_json = run_cli("run", f"{FIXTURES}:numbers", "--input", "{nope")
    assert bad_json.returncode == 2
    assert "--input is not valid JSON" in bad_json.stderr
    assert "Traceback" not in invalid.stderr + bad_json.stderr
    trace = tmp_path / "trace.json"
    done = run_cli("run", f"{FIXTURES}:numbers", "--trace", str(trace), "--quiet")
    assert done.returncode == 0
    assert json.loads(trace.read_text())["otherData"]["pipeline"] == "numbers"


def test_the_command_is_plain_when_not_a_terminal() -> None:
    done = run_cli("run", f"{FIXTURES}:numbers", "--input", "1")
    assert done.returncode == 0
    assert "\x1b[" not in done.stdout + done.stderr  # no colours, no cursor moves
    assert "c: done" in done.stderr
    bad = run_cli("run", "nowhere:x")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("twinklr-pipeline: cannot import 'nowhere'")
    assert "Traceback" not in bad.stderr


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


# -- a newcomer's mistakes: one line on stderr, exit 2 (the installed command) ---------

COMMAND = Path(sys.executable).parent / "twinklr-pipeline"


def installed(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(COMMAND), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def one_line_usage_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0]


GOOD = """
from twinklr.core.pipeline import PipelineDefinition, StageDefinition

async def double(value):
    return (value or 1) * 2

pipeline = PipelineDefinition("good", [StageDefinition("double", double)])
"""


@pytest.mark.parametrize(
    ("source", "target", "needles"),
    [
        ("def broken(:\n", "broken:pipeline", ["cannot import 'broken'", "broken.py, line 1"]),
        (
            "raise ValueError('no config file')\n",
            "broken:pipeline",
            ["importing 'broken' raised ValueError: no config file", "broken.py, line 1"],
        ),
        (
            GOOD + "def make():\n    raise KeyError('model')\n",
            "broken:make",
            ["calling broken:make() raised KeyError: 'model'", "broken.py, line 9"],
        ),
    ],
    ids=["syntax error", "raises on import", "factory raises"],
)
def test_a_pipeline_file_that_cannot_load_is_a_usage_error(
    tmp_path: Path, source: str, target: str, needles: list[str]
) -> None:
    (tmp_path / "broken.py").write_text(source)
    for command in ("run", "validate", "graph"):
        one_line_usage_error(installed(command, target, cwd=tmp_path), *needles)
    debug = installed("run", target, "--debug", cwd=tmp_path)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_an_unwritable_output_path_is_refused_before_the_run(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    missing = tmp_path / "no" / "such" / "dir"
    for args, option in (
        (["run", "good:pipeline", "--trace", str(missing / "t.json")], "--trace"),
        (["run", "good:pipeline", "--gantt", str(tmp_path)], "--gantt"),  # a directory
        (["graph", "good:pipeline", "--output", str(missing / "g.mmd")], "--output"),
        (["demo", "--trace", str(missing / "t.json")], "--trace"),
    ):
        done = installed(*args, cwd=tmp_path)
        one_line_usage_error(done, option, "cannot be written")
        assert done.stdout == ""  # nothing ran
    ok = installed("run", "good:pipeline", "--trace", str(tmp_path / "t.json"), cwd=tmp_path)
    assert ok.returncode == 0
    assert (tmp_path / "t.json").is_file()


def test_a_cache_that_is_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("my shopping list" * 100)
    for action in ("list", "stats", "clear", "prune"):
        done = installed("cache", action, "--cache", str(tmp_path / "notes.db"), cwd=tmp_path)
        one_line_usage_error(done, "notes.db is not a twinklr cache")


def test_unknown_ids_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    one_line_usage_error(
        installed("demo", "--fail-at", "nosuch", cwd=tmp_path),
        "--fail-at 'nosuch': no such stage; the demo's stages are audio, ",
    )
    one_line_usage_error(
        installed("demo", "--fail-at", "groups:99", cwd=tmp_path), "groups has items 0 to 5"
    )
    one_line_usage_error(
        installed("demo", "--fail-at", "audio:1", cwd=tmp_path),
        "audio has no items (fan-out stages: groups)",
    )
    (tmp_path / "good.py").write_text(GOOD)
    cache = str(tmp_path / "cache")
    assert installed("run", "good:pipeline", "--cache", cache, cwd=tmp_path).returncode == 0
    one_line_usage_error(
        installed("cache", "clear", "--cache", cache, "--stage", "dubble", cwd=tmp_path),
        "--stage 'dubble': the cache has none; it has double",
    )
    one_line_usage_error(
        installed("cache", "clear", "--cache", cache, "--pipeline", "god", cwd=tmp_path),
        "--pipeline 'god': the cache has none; it has good",
    )
    cleared = installed("cache", "clear", "--cache", cache, "--stage", "double", cwd=tmp_path)
    assert "removed 1 entries" in cleared.stdout


def test_every_option_says_what_it_does() -> None:
    from twinklr.core.pipeline.cli import build_parser  # noqa: PLC0415

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, command in subparsers.choices.items():  # type: ignore[union-attr]
        for action in command._actions:
            assert action.help, f"{name} {action.dest} has no help text"


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
