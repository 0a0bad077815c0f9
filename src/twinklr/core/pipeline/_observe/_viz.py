"""Pictures of a definition: Mermaid flowcharts and Graphviz DOT, coloured by a run.

Shapes say how a stage runs (a fan-out stage is a stack, a conditional one a hexagon, a
sub-pipeline a subroutine box, a gate waiting for input a trapezoid), a dashed border
marks a non-critical stage, a routing stage's edges carry their branch names, and given
a run's result every stage is filled with the colour of its status and the branches
taken are drawn bold, the others faint.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._kinds._gate import WaitForInput
from .._kinds._subpipeline import SubPipelineStage
from .._values._status import StageStatus
from ..definition import ExecutionPattern
from ..errors import GraphvizNotFoundError

if TYPE_CHECKING:
    from .._values._results import PipelineResult
    from ..definition import PipelineDefinition, StageDefinition

#: Fill colours by status; "not_started" for stages a run never reached.
STATUS_COLOURS = {
    StageStatus.SUCCEEDED.value: "#c8e6c9",
    StageStatus.CACHED.value: "#bbdefb",
    StageStatus.SKIPPED.value: "#eeeeee",
    StageStatus.SOFT_FAILED.value: "#fff59d",
    StageStatus.FAILED.value: "#ef9a9a",
    StageStatus.CANCELLED.value: "#ffcc80",
    "not_started": "#ffffff",
}


def _status_of(stage_id: str, result: PipelineResult | None) -> str | None:
    if result is None:
        return None
    stage_result = result.get_result(stage_id)
    return stage_result.status.value if stage_result is not None else "not_started"


def _kind(stage: StageDefinition[Any]) -> str:
    if isinstance(stage.stage, WaitForInput):
        return "gate"
    if stage.pattern is ExecutionPattern.FAN_OUT:
        return "fan-out"
    if stage.pattern is ExecutionPattern.CONDITIONAL or stage.condition is not None:
        return "conditional"
    if isinstance(stage.stage, SubPipelineStage):
        return "sub-pipeline"
    return ""


def _branches_to(source: StageDefinition[Any], target: str) -> list[str]:
    """The branches of routing stage ``source`` that lead to ``target``."""
    routes = source.routes
    if not isinstance(routes, dict):
        return []
    return [
        str(branch) for branch, ids in routes.items() if isinstance(ids, tuple) and target in ids
    ]


def _taken(source: StageDefinition[Any], result: PipelineResult | None) -> set[str] | None:
    """The branches routing stage ``source`` took in ``result`` (None: not known)."""
    if result is None or source.routes is None:
        return None
    found = result.get_result(source.id)
    if found is None:
        return None
    return set(found.metadata.get("branches", ()))


def _notes(stage: StageDefinition[Any]) -> list[str]:
    notes = [_kind(stage)] if _kind(stage) else []
    if isinstance(stage.routes, dict) and stage.routes:
        notes.append("routes: " + " | ".join(map(str, stage.routes)))
    if stage.max_concurrent_fan_out is not None:
        notes.append(f"max {stage.max_concurrent_fan_out} at once")
    if not stage.critical:
        notes.append("non-critical")
    return notes


# -- Mermaid ------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


_MERMAID_SHAPES = {
    "gate": ('[/"', '"\\]'),  # a trapezoid: someone's answer comes in here
    "fan-out": ('[["', '"]]'),
    "conditional": ('{{"', '"}}'),
    "sub-pipeline": ('[/"', '"/]'),
    "": ('["', '"]'),
}


def to_mermaid(pipeline: PipelineDefinition, result: PipelineResult | None = None) -> str:
    """A Mermaid flowchart of ``pipeline``, left to right, data flowing along the
    arrows.

    Args:
        pipeline: The definition to draw.
        result: A run's result: each stage is coloured by its status in it.

    Returns:
        The flowchart's Mermaid source.
    """
    lines = ["flowchart LR"]
    classes: dict[str, list[str]] = {}
    for index, stage in enumerate(pipeline.stages):
        node = f"s{index}"
        label = "<br/>".join(_mermaid_text(part) for part in [stage.id, *_notes(stage)])
        opening, closing = _MERMAID_SHAPES[_kind(stage)]
        lines.append(f"    {node}{opening}{label}{closing}")
        if not stage.critical:
            classes.setdefault("noncritical", []).append(node)
        status = _status_of(stage.id, result)
        if status is not None:
            classes.setdefault(status, []).append(node)
    index_of = {stage.id: index for index, stage in enumerate(pipeline.stages)}
    links = 0
    taken_links: list[int] = []
    untaken_links: list[int] = []
    for index, stage in enumerate(pipeline.stages):
        arrow = "-.->" if _kind(stage) == "conditional" else "-->"
        for name in stage.inputs:
            if name not in index_of:
                continue
            source = pipeline.stages[index_of[name]]
            branches = _branches_to(source, stage.id)
            label = f"|{_mermaid_text(' / '.join(branches))}|" if branches else ""
            lines.append(f"    s{index_of[name]} {arrow}{label} s{index}")
            taken = _taken(source, result) if branches else None
            if taken is not None:
                (taken_links if taken & set(branches) else untaken_links).append(links)
            links += 1
    if taken_links:
        lines.append(f"    linkStyle {','.join(map(str, taken_links))} stroke-width:3px")
    if untaken_links:
        lines.append(
            f"    linkStyle {','.join(map(str, untaken_links))} stroke:#bdbdbd,stroke-dasharray:4 4"
        )
    if "noncritical" in classes:
        lines.append("    classDef noncritical stroke-dasharray: 5 5")
    for status, colour in STATUS_COLOURS.items():
        if status in classes:
            lines.append(f"    classDef {status} fill:{colour}")
    lines.extend(f"    class {','.join(nodes)} {name}" for name, nodes in classes.items())
    return "\n".join(lines) + "\n"


# -- Graphviz -----------------------------------------------------------------------------


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


_DOT_SHAPES = {
    "gate": "invhouse",
    "fan-out": "box3d",
    "conditional": "hexagon",
    "sub-pipeline": "component",
    "": "box",
}


def to_dot(pipeline: PipelineDefinition, result: PipelineResult | None = None) -> str:
    """The Graphviz DOT source of ``pipeline``'s graph.

    Args:
        pipeline: The definition to draw.
        result: A run's result: each stage is coloured by its status in it.

    Returns:
        The DOT source.
    """
    lines = [
        f"digraph {_dot_string(pipeline.name)} {{",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fillcolor="#ffffff", fontname="Helvetica"];',
    ]
    for stage in pipeline.stages:
        attributes = [f"label={_dot_string(chr(10).join([stage.id, *_notes(stage)]))}"]
        kind = _kind(stage)
        if kind:
            attributes.append(f"shape={_DOT_SHAPES[kind]}")
        if not stage.critical:
            attributes.append('style="rounded,filled,dashed"')
        status = _status_of(stage.id, result)
        if status is not None:
            attributes.append(f'fillcolor="{STATUS_COLOURS[status]}"')
            attributes.append(f"tooltip={_dot_string(status)}")
        lines.append(f"    {_dot_string(stage.id)} [{', '.join(attributes)}];")
    by_id = {stage.id: stage for stage in pipeline.stages}
    for stage in pipeline.stages:
        for name in stage.inputs:
            attributes = ["style=dashed"] if _kind(stage) == "conditional" else []
            source = by_id.get(name)
            branches = _branches_to(source, stage.id) if source is not None else []
            if branches:
                attributes.append(f"label={_dot_string(' / '.join(branches))}")
                taken = _taken(source, result) if source is not None else None
                if taken is not None and taken & set(branches):
                    attributes.append("penwidth=2.5")
                elif taken is not None:
                    attributes.extend(["style=dashed", 'color="#bdbdbd"', 'fontcolor="#9e9e9e"'])
            style = f" [{', '.join(dict.fromkeys(attributes))}]" if attributes else ""
            lines.append(f"    {_dot_string(name)} -> {_dot_string(stage.id)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_graph(
    pipeline: PipelineDefinition,
    path: str | Path,
    *,
    result: PipelineResult | None = None,
    output_format: str | None = None,
) -> Path:
    """Draw ``pipeline`` to a file with Graphviz's ``dot``.

    Args:
        pipeline: The definition to draw.
        path: The file to write.
        result: A run's result: each stage is coloured by its status in it.
        output_format: ``svg``, ``png``, ``pdf`` (any format ``dot`` knows); by
            default from the file's suffix.

    Returns:
        The path written.

    Raises:
        GraphvizNotFoundError: The ``dot`` program is not installed.
    """
    path = Path(path)
    fmt = output_format or path.suffix.lstrip(".") or "svg"
    dot = shutil.which("dot")
    if dot is None:
        msg = "the Graphviz 'dot' program is not installed (e.g. apt-get install graphviz)"
        raise GraphvizNotFoundError(msg)
    subprocess.run(  # noqa: S603 (the dot program, fixed arguments)
        [dot, f"-T{fmt}", "-o", str(path)],
        input=to_dot(pipeline, result).encode(),
        check=True,
        capture_output=True,
    )
    return path
