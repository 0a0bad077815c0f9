"""The folder is the architecture: layers import downward, capabilities stay apart, and no
two modules import each other at run time. The import-linter contracts in pyproject.toml
enforce the layers (``tools/dev.py lint`` runs them); these tests show that they hold
and that they break when a lower layer reaches up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

from twinklr.core.pipeline._base import _graph

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
    assert " 0 broken" in linted.stdout


#: The one import declared against the layers (in pyproject.toml): a function-level import,
#: so it makes no cycle when modules are imported.
DECLARED = (f"{PACKAGE}._kinds._subpipeline", f"{PACKAGE}._engine._executor")


def test_the_one_declared_exception_is_the_one_in_the_contracts() -> None:
    declared = " -> ".join(DECLARED)
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    ignored = {
        line for contract in settings["contracts"] for line in contract.get("ignore_imports", [])
    }
    assert ignored == {declared}


def test_no_two_modules_import_each_other_at_run_time() -> None:
    graph = grimp.build_graph(PACKAGE, exclude_type_checking_imports=True, cache_dir=None)
    graph.remove_import(importer=DECLARED[0], imported=DECLARED[1])
    modules = sorted(graph.modules)
    index = {module: position for position, module in enumerate(modules)}
    deps = [
        [index[imported] for imported in graph.find_modules_directly_imported_by(module)]
        for module in modules
    ]
    circles = [" -> ".join(modules[node] for node in cycle) for cycle in _graph.find_cycles(deps)]
    assert circles == []


TYPE_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    "

# Each case: a file, the line that breaks the architecture, the contract that says so.
BREAKS = {
    "vocabulary imports the engine": (
        "errors.py",
        "from ._engine import _run",
        "layers",
    ),
    "the definition imports the engine's plan": (
        "definition.py",
        "from ._engine._plan import plan_of",
        "layers",
    ),
    "a value names the stage definition, only for type checking": (
        "_values/_results.py",
        f"{TYPE_ONLY}from .._kinds._stage import StageDefinition",
        "layers",
    ),
    "validation names the pipeline definition, only for type checking": (
        "_kinds/_validation.py",
        f"{TYPE_ONLY}from ..definition import PipelineDefinition",
        "layers",
    ),
    "the errors import a value": (
        "errors.py",
        "from ._values._status import StageStatus",
        "layers",
    ),
    "a helper imports a value": (
        "_base/_loops.py",
        "from .._values._context import current_context",
        "layers",
    ),
    "a helper imports another helper": (
        "_base/_graph.py",
        "from . import _database",
        "helpers",
    ),
    "a stage kind names the stage definition, only for type checking": (
        "_kinds/_function.py",
        f"{TYPE_ONLY}from ._stage import StageDefinition",
        "kinds",
    ),
    "one stage kind imports a sibling": (
        "_kinds/_gate.py",
        "from ._protocol import PipelineStage",
        "kinds",
    ),
    "the status names the results, only for type checking": (
        "_values/_status.py",
        f"{TYPE_ONLY}from ._results import StageResult",
        "values",
    ),
    "the timings import the context": (
        "_values/_timing.py",
        "from ._context import PipelineContext",
        "values",
    ),
    "vocabulary imports a capability, only for type checking": (
        "_values/_results.py",
        f"{TYPE_ONLY}from .._observe._timeline import Timeline",
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
    "the web view imports the command": (
        "_ui/_app.py",
        "from .._cli import _common",
        "layers",
    ),
    "the testing kit imports the asyncio facade": (
        "testing.py",
        "from . import aio",
        "layers",
    ),
    "a subcommand imports the web view, only for type checking": (
        "_cli/_ui.py",
        f"{TYPE_ONLY}from .._ui._app import RunsView",
        "layers",
    ),
    "one capability imports another": (
        "_llm/_ratelimit.py",
        "from .._cache import _store",
        "layers",
    ),
    "a module placed in no layer": (
        "_stray.py",
        '"""A module nobody gave a layer."""',
        "layers",
    ),
    "a value placed in no sub-layer": (
        "_values/_stray.py",
        '"""A value module nobody gave a sub-layer."""',
        "values",
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


#: The modules allowed past ~400 lines, up to `LONGEST`, and why a cut would hurt.
LONG_ON_PURPOSE = {
    # every check of a definition, in one flat list (the problems come out in order)
    "_kinds/_validation.py",
}
LONGEST = 450


def lengths(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): len(path.read_text().splitlines())
        for path in root.rglob("*.py")
    }


def test_few_top_level_modules_and_none_long() -> None:
    package = ROOT / "src" / "twinklr" / "core" / "pipeline"
    assert len(list(package.glob("*.py"))) <= 12
    long = {path: n for path, n in lengths(package).items() if n > 400}
    assert set(long) <= LONG_ON_PURPOSE, long
    assert max(long.values(), default=0) <= LONGEST


def test_no_test_module_is_over_about_800_lines() -> None:
    long = {path: n for path, n in lengths(ROOT / "tests").items() if n > 820}
    assert long == {}


def test_test_modules_have_distinct_names() -> None:
    # The test folders are not packages: two test modules of one name cannot both load.
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(name for name in set(names) if names.count(name) > 1) == []
