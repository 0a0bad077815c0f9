"""A run's progress as the run store keeps it: one blob of columns."""

from __future__ import annotations

import pytest

from twinklr.core.pipeline._observe._columns import Progress


def test_progress_blobs_round_trip_and_a_cut_one_is_refused() -> None:
    from array import array  # noqa: PLC0415

    from twinklr.core.pipeline._observe._columns import Items  # noqa: PLC0415

    nan = float("nan")
    progress = Progress(
        origin=100.0,
        codes=b"sr.",
        attempts=array("I", [1, 2, 0]),
        queued=array("d", [100.0, 100.5, nan]),
        started=array("d", [100.0, 100.75, nan]),
        finished=array("d", [100.25, nan, nan]),
        items={
            1: Items(
                index=array("I", [3, 0]),
                codes=b"sf",
                started=array("d", [100.5, 100.5]),
                finished=array("d", [100.6, 100.7]),
                attempts=array("I", [1, 3]),
            )
        },
    )
    blob = progress.encode()
    back = Progress.decode(blob)
    assert back.codes == b"sr."
    assert list(back.attempts) == [1, 2, 0]
    assert [back.ms(t) for t in back.finished] == [250.0, None, None]
    assert list(back.items[1].index) == [3, 0]
    assert back.items[1].codes == b"sf"
    assert list(back.items[1].attempts) == [1, 3]
    with pytest.raises(ValueError, match="cut short"):
        Progress.decode(blob[:-3])
