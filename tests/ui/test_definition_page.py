"""The definition page's data: the stages a validation problem is about."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")

from twinklr.core.pipeline._ui._definition_page import concerns
from twinklr.core.pipeline.errors import ValidationProblem


def test_a_problem_concerns_its_stage_or_its_cycle() -> None:
    ids = ["fetch", "plan", "render"]
    cycle = ValidationProblem(
        message="dependency cycle: plan -> render -> plan",
        kind="cycle",
        cycle=("plan", "render", "plan"),
    )
    assert concerns(cycle, ids) == ["plan", "render"]
    ghost = ValidationProblem(
        message="stage 'render' depends on unknown stage 'ghost'", kind="input", stage="render"
    )
    assert concerns(ghost, ids) == ["render"]
    assert concerns(ValidationProblem(message="pipeline 'p' has no stages"), ids) == []
    assert concerns(ValidationProblem(message="?", stage="elsewhere"), ids) == []
