"""A run's gates on its page: what waits (its prompt, its input, the type an answer
must have) and answering it, for a run in any process.

A run this process tracks (`RunsView.track`) is read and answered through its handle,
at once; any other run through its run store, as its last batch recorded it: the
answer is checked against the gate's recorded schema, and the run's own process takes
it with its next batch (a suspended run, when it is resumed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread

from .._engine._handle import RunStatus
from .._engine._record import describe

if TYPE_CHECKING:
    from .._engine._handle import RunHandle
    from .._observe._contract import RunStoreProtocol

ACTIONS = ("approve", "reject", "edit")


class AnswerError(Exception):
    """Why an answer was not given: ``status`` is the HTTP status to say it with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def live(handle: RunHandle | None, status: str) -> bool:
    """Whether the run's gates are read from its handle (a running run this process
    started) rather than from its store."""
    return handle is not None and handle.status is RunStatus.RUNNING and status == "running"


def waiting_now(handle: RunHandle) -> list[dict[str, Any]]:
    """A tracked run's waiting gates as they are now, in the form the run store
    records them (the page shows either the same way)."""
    return [describe(request) for request in handle.waiting()]


async def answer(
    handle: RunHandle | None, store: RunStoreProtocol, run_id: str, body: object
) -> dict[str, Any]:
    """Give the answer ``body`` says (``{"stage_id", "action": "approve" | "reject" |
    "edit", "value"}``: approve gives the gate its input as it is, reject None, edit
    ``value``) through the handle, else the store; `AnswerError` says why not."""
    action = body.get("action") if isinstance(body, dict) else None
    stage_id = body.get("stage_id") if isinstance(body, dict) else None
    if action not in ACTIONS or not isinstance(stage_id, str):
        msg = "expected {stage_id, action: approve|reject|edit, value}"
        raise AnswerError(msg, 400)
    assert isinstance(body, dict)  # noqa: S101 (checked above, for mypy)
    value = body.get("value") if action == "edit" else None
    try:
        if handle is not None and handle.status is RunStatus.RUNNING:
            if action == "approve":
                value = {r.stage_id: r.input for r in handle.waiting()}.get(stage_id)
            handle.respond(stage_id, value)
        else:
            if action == "approve":
                value = await anyio.to_thread.run_sync(store.recorded_input, run_id, stage_id)
            await anyio.to_thread.run_sync(store.respond, run_id, stage_id, value)
    except ValueError as exc:  # not of the gate's answer type: it waits on
        raise AnswerError(str(exc), 400) from exc
    except LookupError as exc:  # no such gate waiting, or answered already
        raise AnswerError(str(exc.args[0]), 409) from exc
    return {"run_id": run_id, "stage_id": stage_id, "action": action}
