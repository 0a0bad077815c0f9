"""The compiled plan: a validated definition in the index form the executor runs from.

It is compiled once per definition (kept on it), so repeated runs pay nothing for
validation or planning.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .._base._loops import loop_of
from .._kinds._function import arguments
from .._kinds._gate import WaitForInput
from .._kinds._stage import one_attempt
from .._kinds._subpipeline import SubPipelineStage
from .._kinds._validation import check
from .._values._policy import ExecutionPattern

if TYPE_CHECKING:
    from ..definition import PipelineDefinition, StageDefinition


@attrs.frozen(kw_only=True)
class Plan:
    """A validated definition in index form: what the supervisor wires up per run."""

    name: str
    """The pipeline's name."""
    ids: tuple[str, ...]
    """Stage ids; a stage's index is its position here."""
    index_of: Mapping[str, int]
    """Stage id -> index."""
    stages: tuple[StageDefinition[Any], ...]
    """Stage definitions, by index."""
    deps: tuple[tuple[int, ...], ...]
    """For each stage, the indices of its inputs, in declared order."""
    order: tuple[int, ...]
    """A topological order (for displays and analyses; execution follows data)."""
    fan_out_slot: tuple[int, ...]
    """For each fan-out stage, which of its inputs holds the list (-1 for others)."""
    streaming: tuple[bool, ...]
    """For each stage, whether its execute is an async generator."""
    pipelined_on: tuple[int, ...]
    """For each stage, the streaming stage it is pipelined on (-1: none): a FAN_OUT
    stage whose only input is a streaming stage that is never retried, with no
    condition, starts with its input and fans out over each item as it is yielded."""
    cacheable: tuple[bool, ...]
    """For each stage, whether its output may be cached (``cache=True``, not a gate,
    not a sub-pipeline, whose own stages are cached instead)."""
    condition_input: tuple[bool, ...]
    """For each stage, whether its condition is called with its input too
    (``condition(context, input)``) rather than ``condition(context)``."""
    plain: tuple[bool, ...]
    """For each stage, whether it runs as one plain call (not fan-out, no retry, no
    timeout, not streaming): the executor's fast path."""
    edge_start: tuple[int, ...]
    """For each stage, the id of its first input edge; its inputs are the edges
    ``edge_start[i]`` to ``edge_start[i] + len(deps[i]) - 1``, in input order."""
    out_edges: tuple[tuple[int, ...], ...]
    """For each stage, the ids of its outgoing edges (edges into stages pipelined on it
    excluded: those get its items through a stream instead)."""
    edge_consumer: tuple[int, ...]
    """For each edge id, the stage it feeds (so its length is the number of edges)."""
    streams_to: tuple[tuple[int, ...], ...]
    """For each streaming stage, the stages pipelined on it."""
    asyncio_stages: bool = False
    """Whether a stage is marked as asyncio code (``aio.asyncio_native``): a plain Trio
    run then runs those through trio-asyncio."""
    branches: tuple[dict[str, tuple[int, ...]] | None, ...] = ()
    """For each stage with ``routes``, its branches as stage indices (None for the
    others); empty when no stage routes."""
    gates: tuple[int, ...] = ()
    """The stages that wait for input (`WaitForInput`)."""


_UNCACHED = (WaitForInput, SubPipelineStage)


def plan_of(pipeline: PipelineDefinition) -> Plan:
    """The compiled plan of ``pipeline`` (validated and compiled once, then kept on the
    definition); raise `PipelineValidationError` listing every problem if it is invalid."""
    plan: Plan | None = pipeline._plan  # noqa: SLF001 (the engine's own slot on it)
    if plan is None:
        plan = compile_plan(pipeline)
        # A cache on a frozen value: the plan is derived from the fields, never changes it.
        object.__setattr__(pipeline, "_plan", plan)
    return plan


def compile_plan(pipeline: PipelineDefinition) -> Plan:
    """Validate ``pipeline`` and compile it; raise listing every problem if invalid.

    Two passes over the stages after validation (the second needs every stage's
    streaming flag): this is paid on a definition's first run, so it is kept lean.
    """
    deps, order = check(pipeline)
    stages = pipeline.stages
    fan_out = ExecutionPattern.FAN_OUT
    generators: dict[type, bool] = {}
    slots: list[int] = []
    streaming: list[bool] = []
    cacheable: list[bool] = []
    plain: list[bool] = []
    condition_input: list[bool] = []
    asyncio_stages = False
    for stage in stages:
        condition = stage.condition
        condition_input.append(condition is not None and arguments(condition) == 2)  # noqa: PLR2004
        streams = _streams(stage.stage, generators)
        streaming.append(streams)
        # A gate's output is someone's answer: never served to a later run (a resumed
        # run is given its answers again); a sub-pipeline's own stages are cached.
        cacheable.append(stage.cache and not isinstance(stage.stage, _UNCACHED))
        asyncio_stages = asyncio_stages or loop_of(stage.stage) == "asyncio"
        if stage.pattern is fan_out:
            source = stage.fan_out_over if stage.fan_out_over is not None else stage.inputs[0]
            slots.append(stage.inputs.index(source))
            plain.append(False)
        else:
            slots.append(-1)
            plain.append(is_plain(stage, streaming=streams))
    index_of = {stage.id: index for index, stage in enumerate(stages)}
    branches: list[dict[str, tuple[int, ...]] | None] = []
    if any(stage.routes is not None for stage in stages):  # (most plans route nothing)
        branches = [
            None
            if stage.routes is None
            else {b: tuple(index_of[t] for t in ids) for b, ids in stage.routes.items()}
            for stage in stages
        ]
    routed = {target for found in branches if found for ids in found.values() for target in ids}
    pipelined_on = [-1] * len(stages)
    streams_to: list[tuple[int, ...]] = [()] * len(stages)
    out_edges: list[tuple[int, ...]] = [()] * len(stages)
    edge_start: list[int] = []
    edge_consumer: list[int] = []
    for consumer, inputs in enumerate(deps):
        producer_of_stream = -1
        if slots[consumer] >= 0:
            producer_of_stream = _pipelined_on(stages[consumer], inputs, stages, streaming)
            if (  # routing decides once its producer has ended
                producer_of_stream >= 0
                and branches
                and (branches[producer_of_stream] is not None or producer_of_stream in routed)
            ):
                producer_of_stream = -1
            if producer_of_stream >= 0:
                pipelined_on[consumer] = producer_of_stream
                streams_to[producer_of_stream] += (consumer,)
        edge_start.append(len(edge_consumer))
        for producer in inputs:
            if producer != producer_of_stream:
                out_edges[producer] += (len(edge_consumer),)  # a few edges each: tuples
            edge_consumer.append(consumer)
    return Plan(
        name=pipeline.name,
        ids=tuple(stage.id for stage in stages),
        index_of=index_of,
        stages=stages,
        deps=tuple(deps),
        order=tuple(order),
        fan_out_slot=tuple(slots),
        streaming=tuple(streaming),
        edge_start=tuple(edge_start),
        out_edges=tuple(out_edges),
        edge_consumer=tuple(edge_consumer),
        pipelined_on=tuple(pipelined_on),
        streams_to=tuple(streams_to),
        cacheable=tuple(cacheable),
        condition_input=tuple(condition_input),
        plain=tuple(plain),
        asyncio_stages=asyncio_stages,
        branches=tuple(branches),
        gates=tuple(i for i, stage in enumerate(stages) if isinstance(stage.stage, WaitForInput)),
    )


def _streams(stage: object, generators: dict[type, bool]) -> bool:
    """Whether ``stage.execute`` is an async generator function, looked up once per
    class (unless the instance has an ``execute`` of its own)."""
    if "execute" in getattr(stage, "__dict__", ()):
        return inspect.isasyncgenfunction(stage.execute)  # type: ignore[attr-defined]
    kind = type(stage)
    known = generators.get(kind)
    if known is None:
        known = generators[kind] = inspect.isasyncgenfunction(stage.execute)  # type: ignore[attr-defined]
    return known


def _pipelined_on(
    stage: StageDefinition[Any],
    deps: tuple[int, ...],
    stages: tuple[StageDefinition[Any], ...],
    streaming: Sequence[bool],
) -> int:
    if stage.pattern is not ExecutionPattern.FAN_OUT or stage.condition is not None:
        return -1
    if len(deps) != 1 or not streaming[deps[0]]:
        return -1
    retry = stages[deps[0]].retry_config
    return deps[0] if retry is None or retry.max_attempts == 1 else -1


def is_plain(sdef: StageDefinition[Any], *, streaming: bool) -> bool:
    """Whether ``sdef`` runs as one plain call: one attempt, not streaming."""
    return not streaming and one_attempt(sdef)
