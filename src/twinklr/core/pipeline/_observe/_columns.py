"""A run's progress as the run store keeps it: one blob of columns, not a row per stage.

A stage's status is one byte, its attempts four, its queued/started/finished times eight
each (the run's clock, NaN when not reached). Writing a 10,000-stage run is a few array
conversions, not 10,000 inserts, which keeps recording within a few per cent of the run
it records.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from .._values._status import StageStatus
from .._values._timing import to_ms

StageState = Literal[
    "pending",
    "queued",
    "running",
    "waiting",
    "succeeded",
    "failed",
    "skipped",
    "soft_failed",
    "cached",
    "cancelled",
    "not_started",
]

#: One byte per stage in the progress blob.
CODES: Mapping[bytes, StageState] = {
    b".": "pending",
    b"q": "queued",
    b"r": "running",
    b"w": "waiting",
    b"s": "succeeded",
    b"f": "failed",
    b"k": "skipped",
    b"o": "soft_failed",
    b"c": "cached",
    b"x": "cancelled",
    b"-": "not_started",
}
CODE_OF: Mapping[StageStatus, int] = {
    StageStatus.SUCCEEDED: ord("s"),
    StageStatus.FAILED: ord("f"),
    StageStatus.SKIPPED: ord("k"),
    StageStatus.SOFT_FAILED: ord("o"),
    StageStatus.CACHED: ord("c"),
    StageStatus.CANCELLED: ord("x"),
}


def _pack(column: array[Any]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - the file is little-endian
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


class _Reader:
    def __init__(self, blob: bytes) -> None:
        self.blob = memoryview(blob)
        self.offset = 0

    def take(self, size: int) -> bytes:
        part = bytes(self.blob[self.offset : self.offset + size])
        if len(part) != size:
            msg = "a run's progress blob is cut short"
            raise ValueError(msg)
        self.offset += size
        return part

    def column(self, typecode: str, count: int) -> array[Any]:
        column = array(typecode)
        column.frombytes(self.take(count * column.itemsize))
        if sys.byteorder == "big":  # pragma: no cover
            column.byteswap()
        return column

    def count(self) -> int:
        return int.from_bytes(self.take(4), "little")


@attrs.frozen(kw_only=True)
class Items:
    """A fan-out stage's ended items, as columns (times: the run's clock, seconds)."""

    index: array[int]
    codes: bytes
    started: array[float]
    finished: array[float]
    attempts: array[int]


@attrs.frozen(kw_only=True)
class Progress:
    """Where every stage of a run is: the columns of its progress blob. Times are the
    run's clock readings in seconds (NaN: not reached); ``origin`` is its start."""

    origin: float
    codes: bytes
    """One byte per stage (see `CODES`)."""
    attempts: array[int]
    queued: array[float]
    started: array[float]
    finished: array[float]
    items: Mapping[int, Items] = attrs.field(factory=dict)
    """By stage index."""

    def encode(self) -> bytes:
        """The blob (little-endian): origin, stage count, the stage columns, then per
        fan-out stage its index, item count and item columns."""
        parts = [_pack(array("d", [self.origin])), len(self.codes).to_bytes(4, "little")]
        parts.append(self.codes)
        parts.extend(_pack(c) for c in (self.attempts, self.queued, self.started, self.finished))
        for stage, items in self.items.items():
            parts.append(stage.to_bytes(4, "little"))
            parts.append(len(items.codes).to_bytes(4, "little"))
            parts.append(_pack(items.index))
            parts.append(items.codes)
            parts.extend(_pack(c) for c in (items.started, items.finished, items.attempts))
        return b"".join(parts)

    @classmethod
    def decode(cls, blob: bytes) -> Progress:
        """The columns of a blob `encode` made."""
        reader = _Reader(blob)
        (origin,) = reader.column("d", 1)
        count = reader.count()
        codes = reader.take(count)
        attempts = reader.column("I", count)
        queued, started, finished = (reader.column("d", count) for _ in range(3))
        items: dict[int, Items] = {}
        while reader.offset < len(blob):
            stage, length = reader.count(), reader.count()
            index = reader.column("I", length)
            item_codes = reader.take(length)
            item_started, item_finished = reader.column("d", length), reader.column("d", length)
            items[stage] = Items(
                index=index,
                codes=item_codes,
                started=item_started,
                finished=item_finished,
                attempts=reader.column("I", length),
            )
        return cls(
            origin=origin,
            codes=codes,
            attempts=attempts,
            queued=queued,
            started=started,
            finished=finished,
            items=items,
        )

    def ms(self, clock: float) -> float | None:
        """A clock reading as ms since the run started, rounded as timelines are."""
        if math.isnan(clock):
            return None
        return to_ms(clock - self.origin)
