"""Definition pictures: Mermaid (golden files) and DOT (accepted by Graphviz)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio
import trio.testing

from conftest import stub
from twinklr.core.pipeline import (
    ExecutionPattern,
    GraphvizNotFoundError,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    PipelineResult,
    StageDefinition,
    StageResult,
    render_graph,
    to_dot,
    to_mermaid,
)
from twinklr.core.pipeline.example_usage import build_pipeline

GOLDEN = Path(__file__).parents[1] / "golden"
HAS_DOT = shutil.which("dot") is not None


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if not path.exists():  # pragma: no cover - writing a new golden file
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


class Soft:
    name = "soft"

    async def execute(self, input: object, context: object) -> StageResult[str]:
        return StageResult.soft_failure("best", "budget reached")


def every_status() -> PipelineDefinition:
    inner = PipelineDefinition("inner", [StageDefinition("x", stub(1))])
    return PipelineDefinition(
        'mixed "quotes"',
        [
            StageDefinition("cached", stub([1, 2])),
            StageDefinition("skipped", stub(), condition=lambda _: False),
            StageDefinition(
                "soft <b>",
                Soft(),
                pattern=ExecutionPattern.FAN_OUT,
                inputs=["cached"],
                critical=False,
                max_concurrent_fan_out=2,
            ),
            StageDefinition("sub", inner, inputs=["cached"]),
            StageDefinition("slow", stub(delay=5), inputs=["cached"]),
            StageDefinition("boom", stub(delay=1, fail_times=99), inputs=["cached"]),
            StageDefinition("never", stub(), inputs=["slow", "boom"]),
        ],
    )


async def run_every_status() -> PipelineResult:
    store = MemoryCacheStore()
    pipeline = every_status()
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, 0)
    return await executor.execute(pipeline, 0)


def test_the_demo_flowchart_matches_its_golden_file() -> None:
    check_golden("demo.mmd", to_mermaid(build_pipeline()))


async def test_a_flowchart_coloured_by_a_run_matches_its_golden_file(
    autojump_clock: trio.testing.MockClock,
) -> None:
    result = await run_every_status()
    assert result.cached_stages == ("cached",)
    assert result.skipped_stages == ("skipped",)
    assert result.soft_failed_stages == ("soft <b>",)
    assert result.failed_stages == ("boom",)
    assert result.cancelled_stages == ("slow",)
    assert result.not_started_stages == ("never",)
    check_golden("every_status.mmd", to_mermaid(every_status(), result))


def test_dot_shows_patterns() -> None:
    dot = to_dot(build_pipeline())
    assert '"groups" [label="groups\\nfan-out\\nmax 3 at once", shape=box3d];' in dot
    assert '"audio" -> "lyrics" [style=dashed];' in dot
    assert 'style="rounded,filled,dashed"' in dot


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz is not installed")
def test_dot_output_is_accepted_by_graphviz(tmp_path: Path) -> None:
    result = trio.run(run_every_status, clock=trio.testing.MockClock(autojump_threshold=0))
    dot = shutil.which("dot")
    assert dot is not None
    for pipeline, run in ((build_pipeline(), None), (every_status(), result)):
        checked = subprocess.run(
            [dot, "-Tsvg"],
            input=to_dot(pipeline, run),
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        assert "<svg" in checked.stdout
    png = render_graph(every_status(), tmp_path / "graph.png", result=result)
    assert png.read_bytes().startswith(b"\x89PNG")
    svg = render_graph(build_pipeline(), tmp_path / "graph", output_format="svg")
    assert "<svg" in svg.read_text()


def test_rendering_without_graphviz_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(GraphvizNotFoundError, match="apt-get install graphviz"):
        render_graph(build_pipeline(), tmp_path / "graph.svg")


def routed() -> PipelineDefinition:
    return PipelineDefinition(
        "routed",
        [
            StageDefinition(
                "kind", stub("lyrics"), routes={"lyrics": ["lyrics"], "instrumental": ["chords"]}
            ),
            StageDefinition("lyrics", stub(1), inputs=["kind"]),
            StageDefinition("chords", stub(2), inputs=["kind"]),
            StageDefinition("merge", stub(3), inputs=["lyrics", "chords"]),
        ],
    )


def test_routes_are_drawn_with_their_branches_and_the_branch_taken() -> None:
    pipeline = routed()
    mermaid = to_mermaid(pipeline)
    assert 's0["kind<br/>routes: lyrics | instrumental"]' in mermaid
    assert "    s0 -->|lyrics| s1\n" in mermaid
    assert "    s0 -->|instrumental| s2\n" in mermaid
    assert "linkStyle" not in mermaid  # no run: nothing taken or not
    result = trio.run(
        PipelineExecutor().execute, pipeline, clock=trio.testing.MockClock(autojump_threshold=0)
    )
    coloured = to_mermaid(pipeline, result)
    assert "    linkStyle 0 stroke-width:3px\n" in coloured
    assert "    linkStyle 1 stroke:#bdbdbd,stroke-dasharray:4 4\n" in coloured
    dot = to_dot(pipeline, result)
    assert '"kind" -> "lyrics" [label="lyrics", penwidth=2.5];' in dot
    assert (
        '"kind" -> "chords" [label="instrumental", style=dashed, color="#bdbdbd", '
        'fontcolor="#9e9e9e"];'
    ) in dot
    assert '"lyrics" -> "merge";' in dot
    if HAS_DOT:
        subprocess.run(["dot", "-Tsvg"], input=dot, text=True, check=True, capture_output=True)  # noqa: S607


def test_a_gate_is_drawn_as_a_trapezoid() -> None:
    from twinklr.core.pipeline import WaitForInput  # noqa: PLC0415

    pipeline = PipelineDefinition(
        "gated",
        [StageDefinition("a", stub(1)), StageDefinition("ok", WaitForInput("?"), inputs=["a"])],
    )
    assert '    s1[/"ok<br/>gate"\\]\n' in to_mermaid(pipeline)
    dot = to_dot(pipeline)
    assert '"ok" [label="ok\\ngate", shape=invhouse];' in dot
    if HAS_DOT:
        subprocess.run(["dot", "-Tsvg"], input=dot, text=True, check=True, capture_output=True)  # noqa: S607
