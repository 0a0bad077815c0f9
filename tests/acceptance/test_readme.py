"""The Python examples of the README and of docs/ run as written."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def examples() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for number, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.DOTALL)):
            found.append((str(page.relative_to(ROOT)), number, block))
    return found


@pytest.fixture
def own_logging() -> Iterator[None]:
    """An example may configure logging as a program would: undo it afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


@pytest.mark.parametrize(("page", "number", "code"), examples())
def test_example_runs(page: str, number: int, code: str, own_logging: None) -> None:
    exec(compile(code, f"{page} example {number}", "exec"), {})  # noqa: S102 (our own docs)


def test_the_pages_have_examples() -> None:
    pages = {page for page, _, _ in examples()}
    assert {"README.md", "docs/getting-started.md", "docs/guides/fan-out.md"} <= pages
