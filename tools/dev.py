"""Bootstrap and run the project with nothing but python3 on the machine.

    python3 tools/dev.py demo     run the Twinklr sequencer demo (twinklr-pipeline demo)
    python3 tools/dev.py test     run the whole test suite (extra args go to pytest)
    python3 tools/dev.py lint     ruff (lint + format check), the import contracts (layers),
                                  the docs (strict), mypy --strict
    python3 tools/dev.py docs     build the documentation site into ./site (strict)
    python3 tools/dev.py bench    run the benchmarks
    python3 tools/dev.py screenshots
                                  remake the web view's screenshots in docs/images

It finds uv (on PATH, or in ./.tools, installing it there from PyPI the first time),
syncs the locked environment into ./.venv, and runs the command inside it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
UV_VERSION = "0.13.9"

COMMANDS: dict[str, list[list[str]]] = {
    "demo": [["twinklr-pipeline", "demo"]],
    # two workers, a test module each at a time (its fixtures, its browser): 1.6x faster
    # than one on two cores (94 s against 180 s)
    "test": [["pytest", "--cov", "-n", "2", "--dist", "loadfile"]],
    "lint": [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["lint-imports", "--no-cache", "--no-logo"],  # the layers, from pyproject.toml
        ["mkdocs", "build", "--strict"],  # (not --quiet: it hides the warnings strict counts)
        ["mypy"],
    ],
    "docs": [["mkdocs", "build", "--strict"]],
    "bench": [
        ["python", "benchmarks/bench_executor.py"],
        ["python", "benchmarks/bench_build.py"],
        ["python", "benchmarks/bench_import.py"],
        ["python", "benchmarks/bench_defaults.py"],
        ["python", "benchmarks/bench_cache.py"],
        ["python", "benchmarks/bench_durability.py"],
        ["python", "benchmarks/bench_llm.py"],
        ["python", "benchmarks/bench_large.py"],
        ["python", "benchmarks/bench_load.py"],
        ["python", "benchmarks/bench_offload.py"],
        ["python", "benchmarks/bench_aio.py"],
        ["python", "benchmarks/bench_runs.py"],
        ["python", "benchmarks/bench_ui.py"],
    ],
    "screenshots": [["python", "tools/screenshots.py"]],
}


def find_uv() -> str:
    """A uv executable, installing one into ./.tools when none is around."""
    found = shutil.which("uv")
    if found:
        return found
    bindir = TOOLS / ("Scripts" if os.name == "nt" else "bin")
    local = bindir / "uv"
    if local.exists():
        return str(local)
    print(f"dev.py: installing uv {UV_VERSION} into {TOOLS} (first run only)", file=sys.stderr)
    venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    pip = [str(bindir / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"uv=={UV_VERSION}"], check=True)
    return str(local)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    name, extra = argv[0], argv[1:]
    uv = find_uv()
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(ROOT / ".venv"),
        "NO_MKDOCS_2_WARNING": "1",  # mkdocs-material's banner about its successor
    }
    sync = [uv, "sync", "--locked", "--all-extras", "--quiet"]
    subprocess.run(sync, cwd=ROOT, env=env, check=True)
    steps = COMMANDS[name]
    for index, step in enumerate(steps):
        # extra arguments go to the last step
        args = [*step, *extra] if index == len(steps) - 1 else step
        code = subprocess.run(
            [uv, "run", "--locked", "--no-sync", *args], check=False, cwd=ROOT, env=env
        ).returncode
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
