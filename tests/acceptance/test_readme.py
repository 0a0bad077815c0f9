"""The Python examples of the README and of docs/ run as written."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.http import served_in_thread
from fixtures.llm_server import ChatServer, example_of

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


@pytest.fixture(scope="module")
def openai_compatible() -> Iterator[str]:
    """A local OpenAI-compatible server (answering any JSON schema asked for)."""
    server = ChatServer(model=None)
    server.structured = lambda prompt, schema: example_of(schema, prompt)
    with served_in_thread(server.app) as url:
        yield f"{url}/v1"


@pytest.fixture
def openai_here(openai_compatible: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's ``OPENAI_BASE_URL`` sends the examples written for OpenAI itself to the
    local server."""
    monkeypatch.setenv("OPENAI_BASE_URL", openai_compatible)
    monkeypatch.setenv("OPENAI_API_KEY", "local")


@pytest.mark.parametrize(("page", "number", "code"), examples())
@pytest.mark.usefixtures("own_logging", "openai_here")
def test_example_runs(page: str, number: int, code: str) -> None:
    # (dont_inherit: as a reader runs it, without this module's `from __future__` imports)
    compiled = compile(code, f"{page} example {number}", "exec", dont_inherit=True)
    exec(compiled, {})  # noqa: S102 (our own docs)


def test_the_pages_have_examples() -> None:
    pages = {page for page, _, _ in examples()}
    assert {"README.md", "docs/getting-started.md", "docs/guides/fan-out.md"} <= pages
