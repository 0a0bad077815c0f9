"""What the subcommands share: sizes and ages, loading a definition, output paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.commands import (
    GOOD,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
    installed,
    one_line_usage_error,
)
from twinklr.core.pipeline._cli._common import parse_age, parse_size
from twinklr.core.pipeline.cli import main


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
