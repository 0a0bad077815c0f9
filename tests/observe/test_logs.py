"""Logging: silent unless asked for; stdlib records by default, structlog's when configured."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import structlog.testing

from conftest import stub
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    RetryConfig,
    StageDefinition,
)
from twinklr.core.pipeline._observe._logs import LOGGER_NAME, StdlibEvents, run_logger

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """A program that configured neither structlog nor logging."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def eventful() -> PipelineDefinition:
    return PipelineDefinition(
        "logged",
        [
            StageDefinition(
                "flaky",
                stub(fail_times=1, error="rate_limit"),
                retry_config=RetryConfig(max_attempts=2, initial_delay_ms=10),
            ),
            StageDefinition("optional", stub(fail_times=1), inputs=["flaky"], critical=False),
            StageDefinition("bad", stub(fail_times=1, error="nope"), inputs=["optional"]),
        ],
    )


def run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_readme_example_prints_nothing() -> None:
    text = README.read_text(encoding="utf-8")
    first = text.split("```python\n", 1)[1].split("```", 1)[0]
    ran = run_script(first + "\nprint('done')\n")
    assert ran.returncode == 0, ran.stderr
    assert (ran.stdout, ran.stderr) == ("done\n", "")


def test_a_failing_run_prints_nothing_either() -> None:
    code = """
import trio
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, StageDefinition

async def boom(input, context):
    raise ValueError("no")

class Boom:
    name = "boom"
    execute = staticmethod(boom)

stages = [StageDefinition("a", Boom()), StageDefinition("b", Boom(), inputs=["a"])]
result = trio.run(PipelineExecutor().execute, PipelineDefinition("p", stages))
print(result.success, result.error)
"""
    ran = run_script(code)
    assert (ran.stdout, ran.stderr) == ("False stage 'a' failed: ValueError: no\n", "")


async def test_unconfigured_nothing_is_written_and_transitions_are_skipped(
    unconfigured: None, capfd: pytest.CaptureFixture[str]
) -> None:
    result = await PipelineExecutor().execute(eventful())
    assert not result.success
    assert capfd.readouterr() == ("", "")
    # (pytest's own log capture would hide a missing NullHandler here; the subprocess
    # tests above would not, and this pins the handler itself.)
    handlers = logging.getLogger("twinklr").handlers
    assert any(type(handler) is logging.NullHandler for handler in handlers)


async def test_a_stdlib_handler_at_debug_sees_every_transition(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER_NAME):
        result = await PipelineExecutor().execute(eventful())
    records = [r for r in caplog.records if r.name == LOGGER_NAME]
    events = [(r.event, getattr(r, "stage", None), r.levelname) for r in records]  # type: ignore[attr-defined]
    assert ("stage_started", "flaky", "DEBUG") in events
    assert ("stage_succeeded", "flaky", "DEBUG") in events
    assert ("stage_retrying", "flaky", "INFO") in events
    assert ("stage_failed", "bad", "WARNING") in events
    assert events[0] == ("run_started", None, "INFO")
    assert events[-1] == ("run_finished", None, "INFO")
    succeeded = next(r for r in records if r.event == "stage_succeeded")  # type: ignore[attr-defined]
    assert (succeeded.pipeline, succeeded.run_id, succeeded.stage, succeeded.attempt) == (  # type: ignore[attr-defined]
        "logged",
        result.run_id,
        "flaky",
        2,
    )
    assert succeeded.getMessage() == (
        f"stage_succeeded pipeline='logged' run_id='{result.run_id}' stage='flaky' attempt=2"
    )


async def test_warnings_alone_reach_a_handler_at_warning(
    unconfigured: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        await PipelineExecutor().execute(eventful())
    events = [r.event for r in caplog.records if r.name == LOGGER_NAME]  # type: ignore[attr-defined]
    assert events == ["stage_failed", "stage_failed"]


async def test_an_application_that_configured_structlog_gets_structlog_events() -> None:
    with structlog.testing.capture_logs() as logs:
        result = await PipelineExecutor().execute(eventful())
    started = next(log for log in logs if log["event"] == "stage_started")
    assert started["stage"] == "flaky"
    assert (started["pipeline"], started["run_id"]) == ("logged", result.run_id)
    succeeded = next(log for log in logs if log["event"] == "stage_succeeded")
    assert (succeeded["stage"], succeeded["attempt"], succeeded["log_level"]) == (
        "flaky",
        2,
        "debug",
    )


def test_the_logger_follows_the_applications_choice(unconfigured: None) -> None:
    assert isinstance(run_logger(pipeline="p"), StdlibEvents)
    structlog.configure()
    assert not isinstance(run_logger(pipeline="p"), StdlibEvents)


def test_fields_never_overwrite_what_a_record_owns(caplog: pytest.LogCaptureFixture) -> None:
    log = StdlibEvents(logging.getLogger(LOGGER_NAME), {"pipeline": "p"}).bind(run_id="r")
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        log.info("odd", name="clash", message="clash", stage=None, item=3)
        assert log.is_enabled_for(logging.INFO)
        assert not log.is_enabled_for(logging.DEBUG)
    (record,) = caplog.records
    assert record.name == LOGGER_NAME
    assert (record.pipeline, record.run_id, record.item, record.event) == ("p", "r", 3, "odd")  # type: ignore[attr-defined]
    assert record.getMessage() == "odd pipeline='p' run_id='r' name='clash' message='clash' item=3"


def test_a_disabled_level_formats_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Loud:
        def __repr__(self) -> str:
            raise AssertionError("formatted although nobody listens")

    log = StdlibEvents(logging.getLogger(LOGGER_NAME), {})
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        log.debug("quiet", value=Loud())
        log.warning("bare")
    assert [record.getMessage() for record in caplog.records] == ["bare"]
