"""``twinklr-pipeline graph MODULE:ATTR``: a definition drawn (Mermaid, DOT, SVG, PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._observe._viz import render_graph, to_dot, to_mermaid
from ..errors import GraphvizNotFoundError
from ._common import EXIT_OK, UsageError, check_writable, load


def add_graph_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    graph = commands.add_parser("graph", parents=[common], help="draw a definition")
    graph.add_argument("target", help="MODULE:ATTR of a PipelineDefinition or a factory")
    graph.add_argument(
        "--format",
        choices=["mermaid", "dot", "svg", "png"],
        default="mermaid",
        help="mermaid or dot text, or svg/png drawn by Graphviz (default mermaid)",
    )
    graph.add_argument("--output", help="file to write (svg/png: default NAME.FORMAT)")
    graph.set_defaults(handler=cmd_graph)


def cmd_graph(args: argparse.Namespace) -> int:
    check_writable(args.output, "--output")
    pipeline = load(args.target)
    if args.format in {"svg", "png"}:
        output = args.output or f"{pipeline.name}.{args.format}"
        try:
            render_graph(pipeline, output, output_format=args.format)
        except GraphvizNotFoundError as exc:
            raise UsageError(str(exc)) from exc
        print(f"graph written to {output}")
        return EXIT_OK
    text = to_mermaid(pipeline) if args.format == "mermaid" else to_dot(pipeline)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return EXIT_OK
