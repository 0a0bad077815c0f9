"""twinklr-pipeline graph (the module _cli/_graph; _base/_graph's tests are test_graph)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.commands import (
    FIXTURES,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
)
from twinklr.core.pipeline.cli import main


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
