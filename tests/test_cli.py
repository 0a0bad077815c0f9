"""The twinklr-pipeline command as a whole: its parser, usage errors, plain output."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from fixtures.commands import (
    FIXTURES,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
    run_cli,
)
from twinklr.core.pipeline.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "nowhere.module:x"], "cannot import 'nowhere.module'"),
        (["run", f"{FIXTURES}:missing"], "has no attribute 'missing'"),
        (  # the definitions there are, the closest first (a factory by its annotation)
            ["run", f"{FIXTURES}:numbrs"],
            "has no attribute 'numbrs'; its PipelineDefinitions: numbers, make_numbers, ",
        ),
        (
            ["run", "fixtures/cli_pipelines.py:numbers"],
            "(name the module, not its file: fixtures.cli_pipelines:numbers)",
        ),
        (
            ["run", f"{FIXTURES}:numbers", "--input", "Carol"],
            """(a string is quoted as JSON: --input '"Carol"')""",
        ),
        (["runs", "list", "--store", "/no/such/dir"], "nothing is recorded at /no/such/dir"),
        (["runs", "list", "--json", "--store", "/no/such/dir"], "nothing is recorded at"),
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


def test_the_command_is_plain_when_not_a_terminal() -> None:
    done = run_cli("run", f"{FIXTURES}:numbers", "--input", "1")
    assert done.returncode == 0
    assert "\x1b[" not in done.stdout + done.stderr  # no colours, no cursor moves
    assert "c: done" in done.stderr
    bad = run_cli("run", "nowhere:x")
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("twinklr-pipeline: cannot import 'nowhere'")
    assert "Traceback" not in bad.stderr


def test_every_option_says_what_it_does() -> None:
    from twinklr.core.pipeline.cli import build_parser  # noqa: PLC0415

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, command in subparsers.choices.items():  # type: ignore[union-attr]
        for action in command._actions:
            assert action.help, f"{name} {action.dest} has no help text"


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


def _commands() -> list[tuple[str, list[str]]]:
    """Each command (``runs`` per action) and its long options but --help and --debug."""
    from twinklr.core.pipeline.cli import build_parser  # noqa: PLC0415

    def options(parser: Any) -> list[str]:
        every = [o for action in parser._actions for o in action.option_strings]
        return [o for o in every if o.startswith("--") and o not in ("--help", "--debug")]

    found = []
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    for name, command in commands.choices.items():  # type: ignore[union-attr]
        actions = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if actions:
            found += [(f"{name} {sub}", options(p)) for sub, p in actions[0].choices.items()]
        else:
            found.append((name, options(command)))
    return found


@pytest.mark.parametrize(("command", "options"), _commands())
def test_the_cli_guides_synopsis_lists_every_option(command: str, options: list[str]) -> None:
    guide = (Path(__file__).parents[1] / "docs" / "guides" / "cli.md").read_text()
    synopsis = guide.split("```text\n", 1)[1].split("```", 1)[0]
    entries = re.split(r"\n(?=twinklr-pipeline )", synopsis)
    name, _, action = command.partition(" ")
    text = " ".join(
        entry
        for entry in entries
        if re.match(rf"twinklr-pipeline {name}\b", entry)
        and (not action or re.search(rf"\b{action}\b", entry.split("[")[0]))
    )
    assert text, f"no synopsis line for {command}"
    assert [option for option in options if option not in text] == []
