"""The run-store contract as checks, run against the SQLite store (and stores that
break a promise, to see it named)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from twinklr.core.pipeline import RunStore
from twinklr.core.pipeline.testing import run_store_conformance


async def test_the_sqlite_store_keeps_every_promise(tmp_path: Path) -> None:
    fresh = itertools.count()
    await run_store_conformance(lambda: RunStore(tmp_path / f"r{next(fresh)}"))


class AnswersTwice(RunStore):
    """Takes a second answer to a gate over the first."""

    def respond(self, run_id: str, stage_id: str, value: Any) -> str:
        try:
            return super().respond(run_id, stage_id, value)
        except LookupError:
            return run_id


class ClaimsTwice(RunStore):
    """Lets two processes claim the same suspended run."""

    def claim(self, run_id: str, state: bytes | None = None) -> None:
        record = self.get(run_id)
        if record is None or record.status != "running":
            super().claim(run_id, state)


@pytest.mark.parametrize(
    ("store", "promise", "what"),
    [
        (AnswersTwice, "a suspended run waits at its gate", "a second answer did not raise"),
        (ClaimsTwice, "is claimed by one process at a time", "claiming a claimed run did not"),
    ],
)
async def test_a_broken_promise_is_named(
    tmp_path: Path, store: type[RunStore], promise: str, what: str
) -> None:
    fresh = itertools.count()
    with pytest.raises(AssertionError) as broken:
        await run_store_conformance(lambda: store(tmp_path / f"r{next(fresh)}"))
    assert promise in str(broken.value)
    assert what in str(broken.value)
