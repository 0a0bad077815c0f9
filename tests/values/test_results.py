"""StageResult and PipelineResult: frozen values, both spellings of success."""

from __future__ import annotations

import attrs
import pytest

from twinklr.core.pipeline import (
    PipelineResult,
    StageResult,
    StageStatus,
    failure_result,
    skipped_result,
    success_result,
)


def test_success_constructs_on_the_class_and_answers_on_an_instance() -> None:
    result = StageResult.success({"bundle": 1})
    assert result.success is True
    assert result.status is StageStatus.SUCCEEDED
    assert result.output == {"bundle": 1}
    assert result.error is None
    named = StageResult.success(3, stage_name="audio", metadata={"k": "v"})
    assert named.stage_name == "audio"
    assert named.metadata == {"k": "v"}


def test_failure_takes_a_message_or_an_exception() -> None:
    failed = StageResult.failure("No lyrics available")
    assert failed.success is False
    assert failed.failed
    assert failed.error == "No lyrics available"
    assert failed.exception is None
    error = ValueError("bad")
    from_exc = StageResult.failure(error, stage_name="x")
    assert from_exc.error == "ValueError: bad"
    assert from_exc.exception is error
    assert StageResult.failure(KeyError()).error == "KeyError"


def test_skipped_counts_as_success_with_no_output() -> None:
    skipped = StageResult.skipped(stage_name="lyrics")
    assert skipped.success is True
    assert skipped.output is None
    assert skipped.status is StageStatus.SKIPPED
    assert skipped.metadata == {"reason": "condition was false"}


def test_soft_failure_hands_its_output_on_but_is_not_success() -> None:
    soft = StageResult.soft_failure("best plan", "token budget reached", metadata={"score": 0.7})
    assert soft.status is StageStatus.SOFT_FAILED
    assert soft.output == "best plan"
    assert soft.success is False
    assert not soft.failed


def test_module_level_helpers() -> None:
    assert success_result(1, stage_name="a") == StageResult.success(1, stage_name="a")
    assert failure_result("x").error == "x"
    assert skipped_result(reason="no").metadata == {"reason": "no"}


def test_results_are_frozen_and_metadata_is_read_only() -> None:
    result = StageResult.success(1, metadata={"a": 1})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.output = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.metadata["a"] = 2  # type: ignore[index]


def test_pipeline_result_lookups_and_frozen_mappings() -> None:
    result = PipelineResult(
        pipeline_name="p",
        run_id="r",
        success=True,
        outputs={"a": 1},
        stage_results={"a": StageResult.success(1)},
    )
    assert result.get_output("a") == 1
    assert result.get_output("b") is None
    assert result.get_result("a") == StageResult.success(1)
    with pytest.raises(TypeError):
        result.outputs["b"] = 2  # type: ignore[index]
    assert result.metrics == {}
    assert result.timeline == {}


def test_the_plain_constructor_takes_success_or_status() -> None:
    assert StageResult(success=True, output=1).status is StageStatus.SUCCEEDED
    assert StageResult(success=False, error="bad").status is StageStatus.FAILED
    assert StageResult(output=1).success
    assert StageResult(error="bad").status is StageStatus.FAILED
    assert StageResult(status=StageStatus.SKIPPED, success=True).success
    with pytest.raises(ValueError, match="contradicts status='failed'"):
        StageResult(status=StageStatus.FAILED, success=True)
