"""Pictures of a definition: Mermaid flowcharts and Graphviz DOT, coloured by a run.

Shapes say how a stage runs (a fan-out stage is a stack, a conditional one a hexagon, a
sub-pipeline a subroutine box), a dashed border marks a non-critical stage, and given a
run's result every stage is filled with the colour of its status.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._results import StageStatus
from .._subpipeline import SubPipelineStage
from ..definition import ExecutionPattern
from ..errors import GraphvizNotFoundError

if TYPE_CHECKING:
    from .._results import PipelineResult
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
    if stage.pattern is ExecutionPattern.FAN_OUT:
        return "fan-out"
    if stage.pattern is ExecutionPattern.CONDITIONAL or stage.condition is not None:
        return "conditional"
    if isinstance(stage.stage, SubPipelineStage):
        return "sub-pipeline"
    return ""


def _notes(stage: StageDefinition[Any]) -> list[str]:
    notes = [_kind(stage)] if _kind(stage) else []
    if stage.max_concurrent_fan_out is not None:
        notes.append(f"max {stage.max_concurrent_fan_out} at once")
    if not stage.critical:
        notes.append("non-critical")
    return notes


# -- Mermaid ------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


_MERMAID_SHAPES = {
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
    for index, stage in enumerate(pipeline.stages):
        arrow = "-.->" if _kind(stage) == "conditional" else "-->"
        lines.extend(
            f"    s{index_of[name]} {arrow} s{index}" for name in stage.inputs if name in index_of
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


_DOT_SHAPES = {"fan-out": "box3d", "conditional": "hexagon", "sub-pipeline": "component", "": "box"}


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
    for stage in pipeline.stages:
        style = " [style=dashed]" if _kind(stage) == "conditional" else ""
        lines.extend(
            f"    {_dot_string(name)} -> {_dot_string(stage.id)}{style};" for name in stage.inputs
        )
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
