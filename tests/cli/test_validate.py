"""twinklr-pipeline validate."""

from __future__ import annotations

import pytest

from fixtures.commands import (
    FIXTURES,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
)
from twinklr.core.pipeline.cli import main


def test_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", f"{FIXTURES}:numbers"]) == 0
    assert "is valid: 3 stages" in capsys.readouterr().out
    assert main(["validate", f"{FIXTURES}:invalid"]) == 2
    err = capsys.readouterr().err
    assert "stage 'a' depends on unknown stage 'ghost'" in err
