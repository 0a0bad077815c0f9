"""The live progress display for terminals (the ``cli`` extra: rich).

One row per running stage, redrawn as events arrive: a bar for a fan-out stage's items
(done/total) and its retries; a stage leaves the table when it ends, and a failure is
printed above it, as are log lines written to standard error or output while it draws.
Only imported when standard error is a terminal and rich is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from .._observe._events import EventKind, PipelineEvent
from ._progress import Progress

if TYPE_CHECKING:
    import trio


class LiveProgress(Progress):
    """A redrawn table of running stages instead of one line per event."""

    def __init__(self, out: TextIO, *, console: Console | None = None) -> None:
        super().__init__(out, quiet=False)
        self.console = console or Console(file=out)
        self.items: dict[str, tuple[int, int]] = {}
        self.retries: dict[str, int] = {}
        self.finished = 0
        self.cached = 0
        self.waiting: set[str] = set()  # gates waiting for input (still running)

    def show(self, event: PipelineEvent) -> None:
        """Update the state from ``event`` (the table is redrawn by `consume`)."""
        kind, stage = event.kind, event.stage
        if stage is None:
            return
        if kind is EventKind.STAGE_STARTED:
            self.running[stage] = None
        elif kind is EventKind.ITEM_FINISHED and event.done is not None and event.total:
            self.items[stage] = (event.done, event.total)
        elif kind is EventKind.STAGE_RETRYING:
            self.retries[stage] = self.retries.get(stage, 0) + 1
        elif kind is EventKind.INPUT_REQUESTED:
            self.waiting.add(stage)
        elif kind is EventKind.INPUT_RECEIVED:
            self.waiting.discard(stage)
        elif kind in self._ENDED:
            self.running.pop(stage, None)
            self.waiting.discard(stage)
            self.finished += 1
            self.cached += kind is EventKind.STAGE_CACHE_HIT
            if kind is EventKind.STAGE_CANCELLED:
                self.cancelled[stage] = None
            elif kind is EventKind.STAGE_FAILED:
                self.console.print(f"{stage} failed: {event.error}", markup=False)

    def render(self) -> Table:
        """The table as it stands."""
        waiting = f", {len(self.waiting)} waiting for input" if self.waiting else ""
        table = Table(
            title=(
                f"{self.finished} stage{'' if self.finished == 1 else 's'} ended"
                f" ({self.cached} from the cache){waiting}"
            ),
            title_justify="left",
        )
        table.add_column("running")
        table.add_column("items", width=26)
        table.add_column("done", justify="right")
        table.add_column("retries", justify="right")
        for stage in self.running:
            done, total = self.items.get(stage, (0, 0))
            bar: Any = ProgressBar(total=total, completed=done, width=24) if total else ""
            if stage in self.waiting:
                bar = "waiting for input"
            table.add_row(
                stage, bar, f"{done}/{total}" if total else "", str(self.retries.get(stage, ""))
            )
        return table

    async def consume(self, events: trio.MemoryReceiveChannel[PipelineEvent]) -> None:
        """Redraw the table as events arrive, until the channel closes."""
        with Live(
            self.render(),
            console=self.console,
            refresh_per_second=8,
            transient=True,
            redirect_stderr=True,  # log lines are printed above the table
            redirect_stdout=True,
        ) as live:
            async for event in events:
                self.show(event)
                live.update(self.render())


def live_progress(out: TextIO) -> Progress:
    """A `LiveProgress` on ``out``."""
    return LiveProgress(out)
