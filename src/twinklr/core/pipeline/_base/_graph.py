"""Pure DAG algorithms over integer node ids; no Trio, no definitions.

A graph is ``deps``: ``deps[i]`` lists the nodes that node ``i`` depends on (its inputs).
Every function here is O(V + E) and iterative, so 100,000-node graphs are fine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence


def dependents_of(deps: Sequence[Sequence[int]]) -> list[list[int]]:
    """Invert ``deps``: for each node, the nodes that depend on it."""
    out: list[list[int]] = [[] for _ in deps]
    for node, inputs in enumerate(deps):
        for dep in inputs:
            out[dep].append(node)
    return out


def topological_order(deps: Sequence[Sequence[int]]) -> list[int] | None:
    """Nodes ordered so each comes after its inputs; None when there is a cycle."""
    # Definitions are usually written inputs-first: then the given order already is one.
    if all(not inputs or max(inputs) < node for node, inputs in enumerate(deps)):
        return list(range(len(deps)))
    indegree = [len(inputs) for inputs in deps]
    dependents = dependents_of(deps)
    ready = deque(node for node, count in enumerate(indegree) if count == 0)
    order: list[int] = []
    while ready:
        node = ready.popleft()
        order.append(node)
        for child in dependents[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return order if len(order) == len(deps) else None


def strongly_connected_components(deps: Sequence[Sequence[int]]) -> list[list[int]]:
    """Tarjan's algorithm, iteratively; components come out in reverse topological order."""
    count = len(deps)
    index = [-1] * count
    low = [0] * count
    on_stack = [False] * count
    stack: list[int] = []
    components: list[list[int]] = []
    counter = 0
    for root in range(count):
        if index[root] != -1:
            continue
        work: list[tuple[int, int]] = [(root, 0)]
        while work:
            node, edge = work[-1]
            if edge == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack[node] = True
            inputs = deps[node]
            if edge < len(inputs):
                work[-1] = (node, edge + 1)
                nxt = inputs[edge]
                if index[nxt] == -1:
                    work.append((nxt, 0))
                elif on_stack[nxt]:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[int] = []
                while True:
                    member = stack.pop()
                    on_stack[member] = False
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def cycle_through(start: int, members: set[int], deps: Sequence[Sequence[int]]) -> list[int]:
    """The shortest cycle from ``start`` back to itself inside one component.

    Returns the path with ``start`` at both ends, following dependency edges.
    """
    parent: dict[int, int] = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in deps[node]:
            if nxt == node:  # a self-loop is not the cycle we are after
                continue
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                path.reverse()
                return [*path, start]
            if nxt in members and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    msg = f"node {start} is on no cycle"
    raise ValueError(msg)


def find_cycles(deps: Sequence[Sequence[int]]) -> list[list[int]]:
    """One cycle per cyclic component (self-loops excluded), each starting at its
    lowest-numbered node, sorted by that node."""
    cycles = []
    for component in strongly_connected_components(deps):
        if len(component) > 1:
            start = min(component)
            cycles.append(cycle_through(start, set(component), deps))
    cycles.sort(key=lambda cycle: cycle[0])
    return cycles


def levels(deps: Sequence[Sequence[int]], order: Sequence[int]) -> list[int]:
    """Each node's wave: 0 for entry nodes, else one more than its deepest input.

    Waves are a display of the plan only; the executor never waits for a wave.
    """
    level = [0] * len(deps)
    for node in order:
        inputs = deps[node]
        if inputs:
            level[node] = 1 + max(level[dep] for dep in inputs)
    return level


def waves(
    ids: Sequence[str], deps: Sequence[Sequence[int]], order: Sequence[int]
) -> list[list[str]]:
    """The ids grouped by depth (``levels``), each group in ``order``."""
    depth = levels(deps, order)
    grouped: list[list[str]] = [[] for _ in range(max(depth, default=-1) + 1)]
    for node in order:
        grouped[depth[node]].append(ids[node])
    return grouped


def critical_path(
    deps: Sequence[Sequence[int]],
    order: Sequence[int],
    finish: Callable[[int], float],
) -> list[int]:
    """The chain of nodes, entry to exit, whose input finished last at every step.

    ``finish(node)`` is when the node finished; the path ends at the node that finished
    last and walks back through the input each node waited for longest.
    """
    if not order:
        return []
    last = max(order, key=finish)
    path = [last]
    while deps[path[-1]]:
        path.append(max(deps[path[-1]], key=finish))
    path.reverse()
    return path
