"""Routing on outputs: which branches a routing stage's output (or its router) takes.

The run marks the stages listed only under the branches not taken, and skips them and
every stage whose inputs were all skipped by routing, without starting a task for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .._observe._events import EventKind
from .._values._results import StageResult
from .._values._status import StageStatus
from ._retry import error_text
from ._run import Actor, Run
from ._wiring import OneShotChannel

if TYPE_CHECKING:
    import trio

#: The statuses whose output a routing stage routes on (any other leaves every branch out).
ROUTABLE = frozenset({StageStatus.SUCCEEDED, StageStatus.CACHED, StageStatus.SOFT_FAILED})


class RoutingError(ValueError):
    """A routing stage chose a branch it does not have, or not a branch at all."""


def chosen_branches(sdef: Any, output: Any, branches: dict[str, tuple[int, ...]]) -> set[str]:
    """The branches ``sdef`` takes for ``output``: ``router(output)`` (or the output) as
    a branch name, several names, or None for none."""
    chosen = sdef.router(output) if sdef.router is not None else output
    if chosen is None:
        return set()
    names = [chosen] if isinstance(chosen, str) else chosen
    try:
        taken = set(names)
    except TypeError:  # not a collection of names
        taken = {names} if _hashable(names) else set()
    if not taken and chosen:  # (something that names no branch at all)
        how = f"router {getattr(sdef.router, '__name__', 'router')}()" if sdef.router else "output"
        msg = (
            f"stage '{sdef.id}' chose {chosen!r:.80}, which names no branch (its {how} gave "
            f"it); its branches are {', '.join(map(repr, branches))}"
        )
        raise RoutingError(msg)
    unknown = sorted(repr(name) for name in taken if name not in branches)
    if unknown:
        how = f"router {getattr(sdef.router, '__name__', 'router')}()" if sdef.router else "output"
        msg = (
            f"stage '{sdef.id}' chose branch {', '.join(unknown)} (its {how} gave "
            f"{chosen!r:.80}); its branches are {', '.join(map(repr, branches))}"
        )
        raise RoutingError(msg)
    return taken


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class RoutedRun(Run):
    """A run of a plan with routing stages (a plan that routes nothing runs as a plain
    `Run` and pays nothing for it): a routing stage's output picks the branches taken,
    and the stages left out are skipped without a task."""

    def start(self, nursery: trio.Nursery, actors: list[Actor]) -> None:
        """Start the run with nothing routed off yet."""
        # Stages a routing stage's choice left out, and stages skipped by routing
        # (theirs, and those whose inputs all were).
        self.routed_off = bytearray(len(self.plan.ids))
        self.route_skipped = bytearray(len(self.plan.ids))
        self.taken = bytearray(len(self.plan.ids))  # stages some router took a branch to
        # stage left out -> which routing stage left it out, and what that one took
        self.left_out: dict[int, str] = {}
        super().start(nursery, actors)

    def stage_finished(self, index: int, result: StageResult[Any]) -> None:
        """Route on a routing stage's result first, then record it as any stage's."""
        if self.plan.branches[index] is not None:
            result = self.route(index, result)
        super().stage_finished(index, result)

    def route(self, index: int, result: StageResult[Any]) -> StageResult[Any]:
        """Mark the stages routing stage ``index`` leaves out; a choice of a branch it
        does not have (or a router that raises) fails it instead."""
        branches = self.plan.branches[index]
        assert branches is not None  # noqa: S101 (only routing stages come here)
        sdef = self.plan.stages[index]
        taken: set[str] = set()
        if result.status in ROUTABLE:
            try:
                taken = chosen_branches(sdef, result.output, branches)
            except Exception as exc:  # noqa: BLE001 - the stage's failure, named
                error = str(exc) if isinstance(exc, RoutingError) else error_text(exc)
                return StageResult.failure(error, stage_name=sdef.id, metadata=result.metadata)
            result = attrs.evolve(
                result, metadata={**result.metadata, "branches": tuple(sorted(taken))}
            )
        live = {target for branch in taken for target in branches[branch]}
        chose = ", ".join(f"branch {name!r}" for name in sorted(taken)) or "no branch"
        # A stage runs when any router listing it took a branch naming it: one router
        # leaving it out skips it only while no other has taken it.
        for target in live:
            self.taken[target] = 1
            self.routed_off[target] = 0
        for branch, targets in branches.items():
            if branch not in taken:
                for target in targets:
                    if target not in live and not self.taken[target]:
                        self.routed_off[target] = 1
                        self.left_out[target] = f"routing stage '{sdef.id}' took {chose}"
        return result

    def hand_on(self, index: int, output: Any, now: float) -> None:
        """Hand ``output`` on, as the plain loop does, but skip the stages routing left
        out and those whose inputs were all skipped by routing (without a task: they
        hand None on in turn, iteratively, however long the chain)."""
        plan = self.plan
        remaining, edges, consumers = self.remaining, self.edges, plan.edge_consumer
        routed_off, route_skipped = self.routed_off, self.route_skipped
        work = [(index, output)]
        while work:
            producer, value = work.pop()
            for edge in plan.out_edges[producer]:
                edges[edge] = OneShotChannel(value)
                consumer = consumers[edge]
                remaining[consumer] -= 1
                if remaining[consumer]:
                    continue
                if routed_off[consumer]:
                    self._skip_routed(consumer, now, "routing did not take its branch")
                    work.append((consumer, None))
                elif all(route_skipped[d] for d in plan.deps[consumer]):
                    self._skip_routed(consumer, now, "routing skipped all its inputs")
                    work.append((consumer, None))
                else:
                    self.spawn(consumer, now)

    def _skip_routed(self, index: int, now: float, reason: str) -> None:
        self.queued[index] = self.started[index] = self.finished[index] = now
        self.route_skipped[index] = 1
        stage_id = self.plan.ids[index]
        metadata = {"reason": reason}
        if index in self.left_out:
            metadata["routing"] = self.left_out[index]
        result: StageResult[Any] = StageResult(
            status=StageStatus.SKIPPED, stage_name=stage_id, metadata=metadata
        )
        self.results[index] = result
        if self.watched:
            self.stage_transition(EventKind.STAGE_QUEUED, index, now)
            self.stage_transition(EventKind.STAGE_SKIPPED, index, now, None, result.error)
