"""A resumed run's history: its row holds its last part, and the parts before are kept
with it (in its details), summed up when the next part first writes."""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from ._records import stage_records

if TYPE_CHECKING:
    import sqlite3

    from ._records import RunBegin

#: What a stage that did nothing in a segment says (served, not reached, waiting).
_IDLE = frozenset({"cached", "not_started", "pending", "queued", "waiting"})


def with_segments(db: sqlite3.Connection, run: RunBegin, details: str) -> str:
    """A resumed run's ``details`` with the segments before this one: what each did (the
    stages that ran, how it ended, the gates it waited at and when they were answered),
    so its history is whole though its row now holds this segment. A segment's summary
    is made when the next one writes first (its start differs from the row's)."""
    row = db.execute(
        "SELECT started_at, details FROM runs WHERE run_id = ?", (run.run_id,)
    ).fetchone()
    if row is None:
        return details
    started, old_text = row
    old = json.loads(old_text) if old_text else {}
    segments: list[dict[str, Any]] = list(old.get("segments", ()))
    if started != run.started_at:  # the segment before has ended: keep what it did
        finished, status, duration_ms, progress, definition = db.execute(
            "SELECT finished_at, status, duration_ms, progress, definition FROM runs"
            " WHERE run_id = ?",
            (run.run_id,),
        ).fetchone()
        graph = db.execute(
            "SELECT graph FROM definitions WHERE fingerprint = ?", (definition,)
        ).fetchone()
        ids = [stage["id"] for stage in json.loads(graph[0])["stages"]] if graph else []
        stages = [s for s in stage_records(ids, progress, old) if s.status not in _IDLE]
        answers = db.execute(
            "SELECT stage_id, answered_at FROM responses WHERE run_id = ?", (run.run_id,)
        ).fetchall()
        if status == "running" and finished is not None:  # (claimed by this resumption)
            status = "waiting"
        segments.append(
            {
                "started_at": _iso(started),
                "finished_at": None if finished is None else _iso(finished),
                "status": status,
                "duration_ms": duration_ms,
                "stages": [
                    {"id": s.id, "status": s.status, "duration_ms": s.duration_ms} for s in stages
                ],
                "waiting": [
                    {"stage_id": g["stage_id"], "prompt": g.get("prompt"), "since": g["since"]}
                    for g in old.get("waiting", ())
                ],
                "answers": {stage_id: _iso(at) for stage_id, at in answers},
            }
        )
    if not segments:
        return details
    return json.dumps({**json.loads(details), "segments": segments})


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()
