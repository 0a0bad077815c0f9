"""Pure DAG algorithms: order, cycles, levels, critical path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinklr.core.pipeline._base import _graph


@st.composite
def graphs(draw: st.DrawFn) -> list[list[int]]:
    size = draw(st.integers(0, 30))
    return [
        draw(st.lists(st.integers(0, max(size - 1, 0)), max_size=3)) if size else []
        for _ in range(size)
    ]


def has_cycle(deps: list[list[int]]) -> bool:
    state = [0] * len(deps)

    def visit(node: int) -> bool:
        if state[node] == 1:
            return True
        if state[node] == 2:
            return False
        state[node] = 1
        if any(visit(dep) for dep in deps[node]):
            return True
        state[node] = 2
        return False

    return any(visit(node) for node in range(len(deps)))


@given(graphs())
def test_topological_order_puts_inputs_first_or_says_cycle(deps: list[list[int]]) -> None:
    order = _graph.topological_order(deps)
    if order is None:
        assert has_cycle(deps)
        return
    assert sorted(order) == list(range(len(deps)))
    position = {node: i for i, node in enumerate(order)}
    assert all(position[dep] < position[node] for node in order for dep in deps[node])


@given(graphs())
def test_every_cyclic_component_yields_a_real_cycle(deps: list[list[int]]) -> None:
    cycles = _graph.find_cycles(deps)
    without_self_loops = [[d for d in inputs if d != node] for node, inputs in enumerate(deps)]
    assert bool(cycles) == has_cycle(without_self_loops)
    for cycle in cycles:
        assert cycle[0] == cycle[-1]
        assert len(cycle) >= 3
        assert all(cycle[i + 1] in deps[cycle[i]] for i in range(len(cycle) - 1))


def test_cycles_are_reported_shortest_from_their_first_node() -> None:
    # 0 -> 1 -> 2 -> 0 and 1 -> 0 : the shortest cycle through 0 is 0 -> 1 -> 0
    deps = [[1], [2, 0], [0], [3, 4], [3]]
    assert _graph.find_cycles(deps) == [[0, 1, 0], [3, 4, 3]]


def test_levels_and_waves() -> None:
    deps = [[], [0], [0], [1, 2], [3], []]
    order = _graph.topological_order(deps)
    assert order is not None
    assert _graph.levels(deps, order) == [0, 1, 1, 2, 3, 0]


def test_critical_path_follows_the_last_finishing_input() -> None:
    deps = [[], [0], [0], [1, 2]]
    finish = {0: 1.0, 1: 2.0, 2: 5.0, 3: 6.0}
    order = [0, 1, 2, 3]
    assert _graph.critical_path(deps, order, finish.__getitem__) == [0, 2, 3]
    assert _graph.critical_path([], [], finish.__getitem__) == []


def test_dependents_invert_dependencies() -> None:
    assert _graph.dependents_of([[], [0], [0, 1]]) == [[1, 2], [2], []]


def test_cycle_through_refuses_a_node_on_no_cycle() -> None:
    with pytest.raises(ValueError, match="node 0 is on no cycle"):
        _graph.cycle_through(0, {0, 1}, [[1], []])
