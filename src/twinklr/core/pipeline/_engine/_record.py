"""What a run's recorder writes, read from the run's own state: the definition's graph
and fingerprint, the input's fingerprint, and snapshots of where every stage is.

Nothing here is on a stage's path: the recorder calls `snapshot` a few times a second
and once at the end, and it reads the lists the supervisor keeps anyway.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import sys
import time
import traceback
import weakref
from array import array
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._cache._code import code_identity
from .._cache._export import to_plain
from .._cache._serialize import NotSerializableError, fingerprint
from .._kinds._gate import WaitForInput
from .._observe._columns import CODE_OF, Items, Progress
from .._observe._contract import RunStoreProtocol
from .._observe._recording import RunRecorder
from .._observe._records import RunBegin
from .._observe._runs import INPUT_CHARS
from .._values._answers import answer_schema, type_name
from .._values._results import NO_METADATA
from .._values._status import StageStatus
from ._attempts import ONE_ATTEMPT

if TYPE_CHECKING:
    from .._kinds._gate import InputRequest
    from ._plan import Plan
    from ._run import Run

_NAN = float("nan")
_QUEUED, _RUNNING, _PENDING, _NOT_STARTED = ord("q"), ord("r"), ord("."), ord("-")
_WAITING = ord("w")
_ROUTINE = (StageStatus.SUCCEEDED, StageStatus.CACHED, StageStatus.SKIPPED)
# Per plan (by identity: a plan compares by value, and is not hashable).
_definitions: dict[int, tuple[weakref.ref[Plan], tuple[str, str]]] = {}


def definition_of(plan: Plan) -> tuple[str, str]:
    """The definition's fingerprint and its graph as JSON (computed once per plan)."""
    memo = _definitions.get(id(plan))
    if memo is not None and memo[0]() is plan:
        return memo[1]
    stages = [
        {
            "id": sdef.id,
            "inputs": list(sdef.inputs),
            "pattern": sdef.pattern.value,
            "critical": sdef.critical,
            "conditional": sdef.condition is not None,
            "code": code_identity(sdef.stage)[0],
            **({"routes": {b: list(ids) for b, ids in sdef.routes.items()}} if sdef.routes else {}),
            **({"gate": True} if isinstance(sdef.stage, WaitForInput) else {}),
        }
        for sdef in plan.stages
    ]
    digest = hashlib.sha256()
    digest.update(json.dumps([plan.name, stages], sort_keys=True).encode())
    for sdef in plan.stages:
        digest.update(code_identity(sdef.stage)[1].encode())
    graph = json.dumps({"pipeline": plan.name, "stages": stages})
    known = (digest.hexdigest()[:16], graph)
    key = id(plan)
    _definitions[key] = (weakref.ref(plan, lambda _: _definitions.pop(key, None)), known)
    return known


def recorder_for(run: Run, store: RunStoreProtocol) -> RunRecorder:
    """A recorder of ``run`` into ``store``."""
    definition, graph = definition_of(run.plan)
    try:
        input_fingerprint: str | None = fingerprint(run.initial_input)[:16]
    except NotSerializableError:
        input_fingerprint = None
    begin = RunBegin(
        run_id=run.run_id,
        pipeline=run.plan.name,
        definition=definition,
        graph=graph,
        input_fingerprint=input_fingerprint,
        stage_count=len(run.plan.ids),
        started_at=time.time(),
        resumed=run.resumed,
    )
    return RunRecorder(store, begin, lambda final: snapshot(run, final=final), run.log, run.gates)


def snapshot(run: Run, *, final: bool) -> tuple[bytes, str]:
    """Where every stage of ``run`` is: the progress blob and the details JSON."""
    # One pass per column, as comprehensions: this runs on the Trio thread, a few
    # times a second and once at the run's end, over every stage.
    nan, code_of, one, none = _NAN, CODE_OF, ONE_ATTEMPT, NO_METADATA
    results, run_started = run.results, run.started
    started = array("d", [nan if began is None else began for began in run_started])
    finished = array(
        "d",
        [nan if result is None else end for result, end in zip(results, run.finished, strict=True)],
    )
    waiting = _NOT_STARTED if final else None
    codes = bytes(
        [
            code_of[result.status]
            if result is not None
            else _RUNNING
            if began is not None
            else waiting or (_PENDING if spawned != spawned else _QUEUED)  # noqa: PLR0124 (NaN)
            for result, began, spawned in zip(results, run_started, run.queued, strict=True)
        ]
    )
    if run.suspended is not None:  # its gates wait (they ended no task: no result)
        marked = bytearray(codes)
        for request in run.suspended:
            marked[run.plan.index_of[request.stage_id]] = _WAITING
        codes = bytes(marked)
    attempts = array(
        "I",
        [
            0
            if result is None
            else 1
            if (metadata := result.metadata) is one
            else 0
            if metadata is none
            else metadata.get("attempts", 0)  # (as the result's timeline counts them)
            for result in results
        ],
    )
    unusual = [
        index
        for index, result in enumerate(results)
        if result is not None
        and (
            result.status not in _ROUTINE
            or (result.metadata is not one and result.metadata is not none)
        )
    ]
    progress = Progress(
        origin=run.start_time,
        codes=bytes(codes),
        attempts=attempts,
        queued=array("d", run.queued),
        started=started,
        finished=finished,
        items={index: _items(items) for index, items in run.records.items.items()},
    )
    return progress.encode(), json.dumps(_details(run, unusual))


def _items(items: list[tuple[int, float, float, StageStatus, int]]) -> Items:
    index, began, ended, statuses, tries = zip(*items, strict=True)
    return Items(
        index=array("I", index),
        codes=bytes([CODE_OF[status] for status in statuses]),
        started=array("d", began),
        finished=array("d", ended),
        attempts=array("I", tries),
    )


def user_traceback(exc: BaseException) -> str:
    """``exc``'s traceback as text, without the executor's and tenacity's frames (the
    stage's own code is what a reader looks for); all of it when nothing else is left.
    Files under the working directory (the project) are named relative to it."""
    shown = traceback.TracebackException.from_exception(exc)
    _trim(shown, set(), _machinery(), str(Path.cwd()) + os.sep)
    return "".join(shown.format())


def _machinery() -> tuple[str, ...]:
    """Where the frames a reader does not look for come from: the engine, tenacity (when
    a retry has loaded it), the thread pool."""
    places = [str(Path(__file__).parent), str(Path(concurrent.futures.__file__).parent)]
    tenacity = sys.modules.get("tenacity")
    if tenacity is not None and tenacity.__file__ is not None:
        places.append(str(Path(tenacity.__file__).parent))
    return tuple(places)


def _trim(
    shown: traceback.TracebackException, seen: set[int], machinery: tuple[str, ...], here: str
) -> None:
    if id(shown) in seen:
        return
    seen.add(id(shown))
    own = [frame for frame in shown.stack if not frame.filename.startswith(machinery)]
    if own:
        shown.stack = traceback.StackSummary.from_list(own)
    for frame in shown.stack:
        if frame.filename.startswith(here):
            _ = frame.line  # (its source line read while the path still finds the file)
            frame.filename = frame.filename[len(here) :]
    for linked in (shown.__cause__, shown.__context__, *(shown.exceptions or ())):
        if linked is not None:
            _trim(linked, seen, machinery, here)


def _details(run: Run, unusual: list[int]) -> dict[str, Any]:
    ids = run.plan.ids
    stages: dict[str, dict[str, Any]] = {}
    for index in unusual:
        result = run.results[index]
        assert result is not None  # noqa: S101 (only ended stages are unusual)
        entry: dict[str, Any] = {}
        if result.error is not None:
            entry["error"] = result.error
        if result.exception is not None:
            entry["traceback"] = user_traceback(result.exception)
        errors = result.metadata.get("attempt_errors")
        if errors:
            entry["attempt_errors"] = list(errors)
        branches = result.metadata.get("branches")
        if branches is not None:
            entry["branches"] = list(branches)
        answered = result.metadata.get("answered_at")
        if answered is not None:
            entry["answered_at"] = answered
        if entry:
            stages[ids[index]] = entry
    details: dict[str, Any] = {
        "stages": stages,
        "items_total": {ids[index]: total for index, total in run.item_totals.items()},
        "retries": run.retries,
    }
    used = run.usage
    if used:  # what each stage's LLM calls used and cost
        kept = {ids[index]: usage.as_list() for index, usage in used.items() if index >= 0}
        details["usage"] = kept
    # The gates waiting, so another process can show them and answer (runs respond).
    if run.suspended is None:
        waiting = run.gates.described(describe)
    else:
        refused = run.gates.refused
        waiting = [describe(request) for request in run.suspended]
        for gate in waiting:
            if gate["stage_id"] in refused:
                gate["refused"] = refused[gate["stage_id"]]
    if waiting:
        details["waiting"] = waiting
    return details


def describe(request: InputRequest) -> dict[str, Any]:
    """``request`` as the run store records it (JSON): the stage, the prompt, when it
    opened, its input as plain JSON (cut to a text past `INPUT_CHARS`), and its answer
    type with its JSON schema (what another process checks an answer against)."""
    plain = to_plain(request.input)
    text = json.dumps(plain)
    shown: dict[str, Any] = {
        "stage_id": request.stage_id,
        "prompt": request.prompt,
        "since": request.since.isoformat(),
        "input": plain if len(text) <= INPUT_CHARS else text[:INPUT_CHARS],
        "input_chars": len(text),
    }
    if len(text) > INPUT_CHARS:
        shown["input_cut"] = True  # (its JSON text's first part, as a string)
    if request.answer_type is not None:
        shown["answer_type"] = type_name(request.answer_type)
        shown["answer_schema"] = answer_schema(request.answer_type)
    return shown
