"""Suspending a run that waits for input, and resuming it in a later process.

A run asked to suspend (``suspend_on_wait``, ``RunHandle.suspend``) ends once its only
work left is gates waiting for input. What a later process needs to go on is small,
because the cache holds every output that succeeded: the initial input, the answers
the run's gates were given, and where the definition came from when the command line
loaded it (MODULE:ATTR). That is kept in the run store beside the run's record, in the
cache's self-describing form: the same types come back, nothing is unpickled.

Resuming runs the definition again, under the same run id and with the same input:
what had finished is served from the cache, each gate that has an answer is given it
the moment it opens, and the rest runs (and may suspend again at the next gate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .._base._loops import in_worker_thread
from .._cache import _codec, _payload, _serialize
from .._values._status import StageStatus
from ..definition import PipelineDefinition, definitions_named, source_of
from ._plan import plan_of
from ._record import definition_of

if TYPE_CHECKING:
    from .._observe._contract import RunStoreProtocol
    from .._observe._records import RecordedRun
    from ._run import Run

_FORMAT = 1


@attrs.frozen(kw_only=True)
class Suspension:
    """What a suspended run left for its resumption."""

    initial_input: Any
    answers: Mapping[str, Any]
    """Gate id -> the answer it was given (its output)."""
    source: str | None
    """MODULE:ATTR of the definition, when the command line loaded it from there."""


@attrs.frozen(kw_only=True)
class Resuming:
    """Handed to ``execute`` as the initial input by ``resume``: the run takes its id,
    its real input and its gates' answers from here."""

    run_id: str
    initial_input: Any
    answers: Mapping[str, Any]


def keeper(pipeline: PipelineDefinition) -> Callable[[Run], None]:
    """The ``on_suspend`` of a run of ``pipeline``: it encodes what resuming needs into
    ``run.suspension`` (raising, which refuses the suspension, when it cannot)."""
    source = source_of(pipeline)

    def keep(run: Run) -> None:
        answers = dict(run.gates.answers)
        for index in run.plan.gates:
            result = run.results[index]
            if result is not None and result.status is StageStatus.SUCCEEDED:
                answers[run.plan.ids[index]] = result.output
        run.suspension = encode(
            Suspension(initial_input=run.initial_input, answers=answers, source=source)
        )

    return keep


def keep_answers(suspension: Suspension, answers: Mapping[str, Any]) -> bytes | None:
    """``suspension`` with ``answers``, encoded (so a resumption that does not end keeps
    them); None when an answer cannot be kept (the run then has it for this time)."""
    try:
        return encode(attrs.evolve(suspension, answers=answers))
    except _serialize.NotSerializableError:
        return None


def encode(suspension: Suspension) -> bytes:
    """``suspension`` as bytes; `NotSerializableError` names what cannot be kept."""
    blobs: list[_codec.Blob] = []
    try:
        initial = _serialize.tagged_round_trip(suspension.initial_input, blobs)
    except _serialize.NotSerializableError as exc:
        msg = f"its initial input cannot be kept for resuming: {exc}"
        raise _serialize.NotSerializableError(msg) from exc
    answers = {}
    for stage_id, value in suspension.answers.items():
        try:
            answers[stage_id] = _serialize.tagged_round_trip(value, blobs)
        except _serialize.NotSerializableError as exc:
            msg = f"the answer to gate '{stage_id}' cannot be kept for resuming: {exc}"
            raise _serialize.NotSerializableError(msg) from exc
    document = {
        "format": _FORMAT,
        "input": initial,
        "answers": answers,
        "source": suspension.source,
    }
    return bytes(_payload.pack(document, blobs))


def decode(state: bytes) -> Suspension:
    """The `Suspension` `encode` made (`ValueError` when it is unreadable)."""
    try:
        document, blobs = _payload.unpack(state)
        if document.get("format") != _FORMAT:
            msg = f"format {document.get('format')!r}, this version reads {_FORMAT}"
            raise ValueError(msg)  # noqa: TRY301 (reported with the others below)
        return Suspension(
            initial_input=_codec.decode(document["input"], blobs),
            answers={
                str(stage): _codec.decode(value, blobs)
                for stage, value in document["answers"].items()
            },
            source=document.get("source"),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        msg = f"the suspended run's state cannot be read: {type(exc).__name__}: {exc}"
        raise ValueError(msg) from exc


def find_definition(record: RecordedRun, given: PipelineDefinition | None) -> PipelineDefinition:
    """The definition to resume ``record`` with: ``given`` (of the same pipeline), else
    the one built in this process that has the recorded fingerprint."""
    if given is not None:
        if given.name != record.pipeline:
            msg = (
                f"run {record.run_id} is of pipeline '{record.pipeline}', "
                f"not '{given.name}': resume it with its own definition"
            )
            raise ValueError(msg)
        return given
    named = definitions_named(record.pipeline)
    for candidate in named:
        if not candidate.validate_pipeline() and (
            definition_of(plan_of(candidate))[0] == record.definition
        ):
            return candidate
    if named:
        msg = (
            f"the definitions of pipeline '{record.pipeline}' in this process differ from "
            f"the one run {record.run_id} ran (edited since?): pass pipeline= to resume "
            "with yours (the cache decides what runs again)"
        )
    else:
        msg = (
            f"resuming run {record.run_id} needs its definition: no pipeline "
            f"'{record.pipeline}' is defined in this process (import or build it first, "
            "or pass pipeline=)"
        )
    raise LookupError(msg)


def check_answers(pipeline: PipelineDefinition, answers: Mapping[str, Any]) -> None:
    """Every answer is for a gate of ``pipeline`` (`ValueError` naming it, and them)."""
    plan = plan_of(pipeline)
    gates = {plan.ids[index] for index in plan.gates}
    for stage_id in answers:
        if stage_id not in gates:
            listed = ", ".join(f"'{gate}'" for gate in sorted(gates)) or "none"
            what = "is not a gate" if stage_id in plan.index_of else "is not a stage"
            msg = (
                f"cannot answer '{stage_id}': it {what} of pipeline '{plan.name}' "
                f"(its gates: {listed})"
            )
            raise ValueError(msg)


async def claim(
    store: RunStoreProtocol,
    run_id: str,
    pipeline: PipelineDefinition | None,
    responses: Mapping[str, Any],
) -> tuple[PipelineDefinition, Resuming]:
    """Claim the suspended run ``run_id`` in ``store`` for this process: its definition
    (``pipeline``, or the one alive here, validated), and what its resumption starts
    from, every answer its gates were given (kept, given through the store, then
    ``responses``) included. Of two processes claiming it, one gets a `LookupError`."""
    record, state, stored = await in_worker_thread(store.suspension, run_id)
    pipeline = find_definition(record, pipeline)
    pipeline.validate()
    suspension = decode(state)
    answers = {**suspension.answers, **stored, **responses}
    check_answers(pipeline, answers)
    await in_worker_thread(store.claim, record.run_id, keep_answers(suspension, answers))
    resuming = Resuming(
        run_id=record.run_id, initial_input=suspension.initial_input, answers=answers
    )
    return pipeline, resuming
