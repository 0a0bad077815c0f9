"""The live terminal display: state from events, a table of running stages."""

from __future__ import annotations

import io
import math
import re

import pytest
import structlog
import trio
from rich.console import Console

from twinklr.core.pipeline import EventKind, PipelineEvent, cli
from twinklr.core.pipeline._cli import _common
from twinklr.core.pipeline._cli._live import LiveProgress


def event(kind: EventKind, stage: str | None, **fields: object) -> PipelineEvent:
    return PipelineEvent(kind=kind, pipeline="p", run_id="r", time_ms=0, stage=stage, **fields)  # type: ignore[arg-type]


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


def test_the_table_shows_running_stages_with_item_bars_and_retries() -> None:
    term, out = console()
    live = LiveProgress(out, console=term)
    live.show(event(EventKind.STAGE_STARTED, "groups"))
    live.show(event(EventKind.STAGE_STARTED, "macro"))
    live.show(event(EventKind.ITEM_FINISHED, "groups", item=0, done=2, total=6))
    live.show(event(EventKind.STAGE_RETRYING, "macro", attempt=1, delay_ms=20))
    live.show(event(EventKind.STAGE_CACHE_HIT, "audio"))
    term.print(live.render())
    text = out.getvalue()
    assert "1 stage ended (1 from the cache)" in text
    assert "groups" in text
    assert "2/6" in text
    assert "macro" in text
    assert list(live.running) == ["groups", "macro"]


def test_ended_stages_leave_and_failures_are_printed() -> None:
    term, out = console()
    live = LiveProgress(out, console=term)
    for stage in ("a", "b"):
        live.show(event(EventKind.STAGE_STARTED, stage))
    live.show(event(EventKind.STAGE_FAILED, "a", error="kaput"))
    live.show(event(EventKind.STAGE_CANCELLED, "b", error="stage 'a' failed: kaput"))
    live.show(event(EventKind.RUN_FINISHED, None, success=False))
    assert not live.running
    assert list(live.cancelled) == ["b"]
    assert "a failed: kaput" in out.getvalue()


async def test_it_redraws_until_the_channel_closes() -> None:
    term, out = console()
    live = LiveProgress(out, console=term)
    send, receive = trio.open_memory_channel[PipelineEvent](math.inf)
    send.send_nowait(event(EventKind.STAGE_STARTED, "a"))
    send.send_nowait(event(EventKind.STAGE_SUCCEEDED, "a"))
    send.close()
    await live.consume(receive)
    assert live.finished == 1


def test_terminals_get_the_live_display_and_pipes_plain_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(cli.make_progress(Terminal(), quiet=False), LiveProgress)
    assert type(cli.make_progress(Terminal(), quiet=True)) is cli.Progress
    assert type(cli.make_progress(io.StringIO(), quiet=False)) is cli.Progress
    monkeypatch.setitem(__import__("sys").modules, "twinklr.core.pipeline._cli._live", None)
    assert type(cli.make_progress(Terminal(), quiet=False)) is cli.Progress  # no rich


def screen(written: str) -> list[str]:
    """The lines a terminal shows after ``written``: the control sequences rich's live
    display uses (carriage return, newline, cursor up, erase line, cursor shown/hidden)."""
    lines, row = [""], 0
    for piece in re.findall(r"\x1b\[\??[0-9]*[A-Za-z]|.", written, re.DOTALL):
        if piece == "\r":
            continue  # every line rich writes starts from column 0
        if piece == "\n":
            row += 1
            lines.extend([""] * (row + 1 - len(lines)))
        elif piece.endswith("A"):
            row -= int(piece[2:-1] or 1)
        elif piece == "\x1b[2K":
            lines[row] = ""
        elif not piece.startswith("\x1b"):
            lines[row] += piece
    return [line for line in lines if line.strip()]


async def test_log_lines_are_printed_above_the_table_and_it_leaves_nothing_behind() -> None:
    term, out = console()
    live = LiveProgress(out, console=term)
    send, receive = trio.open_memory_channel[PipelineEvent](math.inf)
    _common.configure_logging("console", quiet=False)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(live.consume, receive)
            for stage in ("audio", "lyrics", "groups"):
                send.send_nowait(event(EventKind.STAGE_STARTED, stage))
            await trio.testing.wait_all_tasks_blocked()
            structlog.get_logger("twinklr").warning("stage_retrying", stage="lyrics")
            structlog.get_logger("twinklr").warning("stage_retrying", stage="groups")
            send.send_nowait(event(EventKind.STAGE_FAILED, "groups", error="kaput"))
            await trio.testing.wait_all_tasks_blocked()
            send.close()
    finally:
        structlog.reset_defaults()
    shown = screen(out.getvalue())
    assert len(shown) == 3, shown
    assert "stage_retrying" in shown[0]
    assert "stage=lyrics" in shown[0]
    assert "stage=groups" in shown[1]
    assert shown[2] == "groups failed: kaput"


def test_a_waiting_gate_stays_running_and_is_counted_once_when_it_ends() -> None:
    term, out = console()
    live = LiveProgress(out, console=term)
    live.show(event(EventKind.STAGE_STARTED, "approve"))
    live.show(event(EventKind.INPUT_REQUESTED, "approve"))
    term.print(live.render())
    assert "0 stages ended (0 from the cache), 1 waiting for input" in out.getvalue()
    assert re.search(r"approve\s+│\s+waiting for input", out.getvalue())
    live.show(event(EventKind.INPUT_RECEIVED, "approve"))
    assert list(live.running) == ["approve"]
    live.show(event(EventKind.STAGE_SUCCEEDED, "approve"))
    assert (live.finished, list(live.running), live.waiting) == (1, [], set())


def test_plain_lines_keep_a_retrying_or_waiting_stage_running() -> None:
    from twinklr.core.pipeline._cli._progress import Progress  # noqa: PLC0415

    progress = Progress(io.StringIO(), quiet=True)
    progress.show(event(EventKind.STAGE_STARTED, "a"))
    progress.show(event(EventKind.STAGE_RETRYING, "a", attempt=1, delay_ms=10))
    progress.show(event(EventKind.INPUT_REQUESTED, "a"))
    assert list(progress.running) == ["a"]
    progress.show(event(EventKind.STAGE_FAILED, "a", error="boom"))
    assert list(progress.running) == []
