"""The folder is the architecture: layers import downward, capabilities stay apart, and no
two modules import each other at run time. The import-linter contracts in pyproject.toml
enforce the layers (``tools/dev.py lint`` runs them); these tests show that they hold
and that they break when a lower layer reaches up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from twinklr.core.pipeline import _graph

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "twinklr.core.pipeline"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(source: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts, on the package found in ``source``."""
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache", "--no-logo", *selected],
        capture_output=True,
        text=True,
        check=False,
        cwd=source,
        env={**os.environ, "PYTHONPATH": str(source)},
    )


def test_the_contracts_hold() -> None:
    linted = lint_imports(ROOT / "src")
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "2 kept, 0 broken" in linted.stdout


def test_no_two_modules_import_each_other_at_run_time() -> None:
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True, cache_dir=None)
    modules = sorted(graph.modules)
    index = {module: position for position, module in enumerate(modules)}
    deps = [
        [index[imported] for imported in graph.find_modules_directly_imported_by(module)]
        for module in modules
    ]
    circles = [" -> ".join(modules[node] for node in cycle) for cycle in _graph.find_cycles(deps)]
    assert circles == []


# Each case: a file, the line that breaks the architecture, the contract that says so.
BREAKS = {
    "vocabulary imports the engine": (
        "errors.py",
        "from ._engine import _run",
        "layers",
    ),
    "vocabulary imports a capability, only for type checking": (
        "_results.py",
        "if TYPE_CHECKING:\n    from ._observe._timeline import Timeline",
        "layers",
    ),
    "a capability imports the engine": (
        "_cache/_store.py",
        "from .._engine import _executor",
        "layers",
    ),
    "the engine imports a tool": (
        "_engine/_run.py",
        "from .. import testing",
        "layers",
    ),
    "one capability imports another": (
        "_llm/_ratelimit.py",
        "from .._cache import _store",
        "capabilities",
    ),
    "a module placed in no layer": (
        "_stray.py",
        '"""A module nobody gave a layer."""',
        "layers",
    ),
}


@pytest.mark.parametrize("case", BREAKS, ids=list(BREAKS))
def test_a_contract_breaks_when_a_lower_layer_reaches_up(case: str, tmp_path: Path) -> None:
    path, line, contract = BREAKS[case]
    shutil.copytree(ROOT / "src" / "twinklr", tmp_path / "twinklr")
    target = tmp_path / "twinklr" / "core" / "pipeline" / path
    text = target.read_text() if target.exists() else ""
    target.write_text(f"{text}\n{line}\n")
    linted = lint_imports(tmp_path, contract)
    assert linted.returncode == 1, linted.stdout + linted.stderr
    assert "BROKEN" in linted.stdout
    assert "0 kept, 1 broken" in linted.stdout
