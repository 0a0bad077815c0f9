"""Routing on outputs: which branches a routing stage's output (or its router) takes.

The run marks the stages listed only under the branches not taken, and skips them and
every stage whose inputs were all skipped by routing, without starting a task for them.
"""

from __future__ import annotations

from typing import Any

from .._values._status import StageStatus

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
    except TypeError:
        taken = {names}
    unknown = sorted(repr(name) for name in taken if name not in branches)
    if unknown:
        how = f"router {getattr(sdef.router, '__name__', 'router')}()" if sdef.router else "output"
        msg = (
            f"stage '{sdef.id}' chose branch {', '.join(unknown)} (its {how} gave "
            f"{chosen!r:.80}); its branches are {', '.join(map(repr, branches))}"
        )
        raise RoutingError(msg)
    return taken
