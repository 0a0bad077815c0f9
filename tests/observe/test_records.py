"""What the run store gives back: recorded runs and stages, and their JSON form."""

from __future__ import annotations

import datetime as dt
import json
from array import array

from twinklr.core.pipeline import StageStatus
from twinklr.core.pipeline._observe._columns import CODE_OF, Items, Progress
from twinklr.core.pipeline._observe._records import (
    RecordedRun,
    RecordedStage,
    run_json,
    stage_records,
    when,
)


def test_a_run_and_its_stages_are_json_values() -> None:
    record = RecordedRun(
        run_id="abc",
        pipeline="p",
        definition="d",
        input_fingerprint=None,
        status="succeeded",
        started_at=dt.datetime(2026, 12, 7, tzinfo=dt.UTC),
        finished_at=None,
        duration_ms=12.5,
        error=None,
        stage_count=1,
        host="h",
        pid=1,
    )
    stage = RecordedStage(
        id="a", status="cached", queued_ms=0.0, started_ms=1.0, finished_ms=3.5, attempts=1
    )
    shown = json.loads(json.dumps(run_json(record, [stage])))
    assert shown["started_at"] == "2026-12-07T00:00:00+00:00"
    assert shown["finished_at"] is None
    (shown_stage,) = shown["stages"]
    assert (shown_stage["id"], shown_stage["status"]) == ("a", "cached")
    assert (shown_stage["cached"], shown_stage["duration_ms"]) == (True, 2.5)
    assert (shown_stage["items"], shown_stage["attempt_errors"]) == ([], [])
    assert when(None) is None


def test_stages_are_read_from_a_progress_blob_and_pending_without_one() -> None:
    nan = float("nan")
    progress = Progress(
        origin=10.0,
        codes=bytes([CODE_OF[StageStatus.SUCCEEDED], ord(".")]),
        attempts=array("I", [2, 0]),
        queued=array("d", [10.0, nan]),
        started=array("d", [10.5, nan]),
        finished=array("d", [11.0, nan]),
        items={
            0: Items(
                index=array("I", [0]),
                codes=bytes([CODE_OF[StageStatus.FAILED]]),
                started=array("d", [10.5]),
                finished=array("d", [10.75]),
                attempts=array("I", [1]),
            )
        },
    )
    details = {"stages": {"a": {"error": "e", "branches": ["x"]}}, "items_total": {"a": 1}}
    first, second = stage_records(["a", "b"], progress.encode(), details)
    assert (first.status, first.attempts, first.duration_ms) == ("succeeded", 2, 500.0)
    assert (first.error, first.branches, first.items_total) == ("e", ("x",), 1)
    assert [item.status for item in first.items] == [StageStatus.FAILED]
    assert (second.status, second.started_ms) == ("pending", None)
    (pending,) = stage_records(["a"], None, {})
    assert (pending.status, pending.attempts) == ("pending", 0)
