"""The web view in a real browser: headless Chromium (Debian's package) driven by
Playwright, against ``twinklr-pipeline ui`` running as its own process, with runs
recorded by this process or by a third one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import stub
from fixtures.commands import spawned
from twinklr.core.pipeline import (
    FakeLLMProvider,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    RunStore,
    StageDefinition,
)

playwright_api = pytest.importorskip("playwright.sync_api")
# A page's expectations wait up to 15 s (Playwright's default is 5 s): the suite runs on
# two workers, and the other one may be busy with a second process or browser too.
playwright_api.expect.set_options(timeout=15_000)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
# As root in a container, on a machine with no network beyond loopback.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
Ui = Callable[..., str]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    opened.on("dialog", lambda dialog: errors.append(f"dialog: {dialog.message}"))
    yield opened
    context.close()
    assert errors == []  # no script error, no alert() from injected markup


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[Ui]:
    """Starts ``twinklr-pipeline ui --port 0`` on a store; returns its address."""
    servers: list[subprocess.Popen[str]] = []

    def start(store: Path, *args: str, cwd: Path | None = None) -> str:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "twinklr.core.pipeline.cli", "ui", "--port", "0"),
                *("--store", str(store), *args),
            ],
            cwd=cwd or tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        servers.append(server)
        assert server.stdout is not None
        line = server.stdout.readline()
        assert " at http://" in line, line + (server.stderr.read() if server.stderr else "")
        return line.split(" at ")[1].strip().rstrip("/")

    yield start
    for server in servers:
        server.terminate()
        server.wait(timeout=30)
        for pipe in (server.stdout, server.stderr):
            if pipe is not None:
                pipe.close()


def record(store_dir: Path, pipeline: PipelineDefinition) -> str:
    store = RunStore(store_dir)
    result = trio.run(PipelineExecutor(runs=store).execute, pipeline)
    store.close()
    return result.run_id


async def failing(value: int) -> int:
    raise ValueError(f"the light controller refused {value}")


def test_the_runs_list_shows_a_finished_run(page: Any, ui: Ui, tmp_path: Path) -> None:
    run_id = record(tmp_path, PipelineDefinition("carols", [StageDefinition("a", stub(1))]))
    base = ui(tmp_path)
    page.goto(base + "/")
    row = page.locator(f'#runs tbody tr[data-run="{run_id}"]')
    playwright_api.expect(row).to_have_attribute("data-status", "succeeded")
    playwright_api.expect(row).to_contain_text("carols")
    row.locator("a").click()
    page.wait_for_url(f"**/runs/{run_id}")
    playwright_api.expect(page.locator("#status")).to_have_text("succeeded")


def test_the_runs_list_filters_by_status(page: Any, ui: Ui, tmp_path: Path) -> None:
    ok = record(tmp_path, PipelineDefinition("carols", [StageDefinition("a", stub(1))]))
    bad = record(tmp_path, PipelineDefinition("hymns", [StageDefinition("a", failing)]))
    page.goto(ui(tmp_path) + "/")
    rows = page.locator("#runs tbody tr")
    playwright_api.expect(rows).to_have_count(2)
    page.select_option("#status", "failed")
    playwright_api.expect(rows).to_have_count(1)
    playwright_api.expect(rows.first).to_have_attribute("data-run", bad)
    page.select_option("#status", "")
    page.select_option("#pipeline", "carols")
    playwright_api.expect(rows).to_have_count(1)
    playwright_api.expect(rows.first).to_have_attribute("data-run", ok)
    assert "pipeline=carols" in page.url


def test_a_failed_stages_error_and_traceback_are_shown(page: Any, ui: Ui, tmp_path: Path) -> None:
    pipeline = PipelineDefinition(
        "show", [StageDefinition("a", stub(7)), StageDefinition("lights", failing, inputs=["a"])]
    )
    run_id = record(tmp_path, pipeline)
    page.goto(f"{ui(tmp_path)}/runs/{run_id}")
    node = page.locator('#graph .node[data-stage="lights"]')
    playwright_api.expect(node).to_have_class(re.compile(r"\bfailed\b"))
    playwright_api.expect(page.locator('#graph .node[data-stage="a"]')).to_have_class(
        re.compile(r"\bsucceeded\b")
    )
    failure = page.locator('.failure[data-stage="lights"]')
    playwright_api.expect(failure).to_contain_text("ValueError: the light controller refused 7")
    playwright_api.expect(failure.locator("pre")).to_contain_text("in failing")
    playwright_api.expect(page.locator("#run-error")).to_contain_text("stage 'lights' failed")
    playwright_api.expect(page.locator("#gantt rect.bar")).to_have_count(2)
    playwright_api.expect(page.locator("#gantt rect.bar.critical")).to_have_count(2)
    # The timeline starts at the first stage, at the left, whatever the set-up took.
    first = page.locator('#gantt rect.bar[data-stage="a"]')
    assert first.get_attribute("x") == "170.0"


def test_a_routed_runs_page_shows_the_branch_taken(page: Any, ui: Ui, tmp_path: Path) -> None:
    pipeline = PipelineDefinition(
        "routed",
        [
            StageDefinition(
                "kind", stub("lyrics"), routes={"lyrics": ["words"], "music": ["notes"]}
            ),
            StageDefinition("words", stub(1), inputs=["kind"]),
            StageDefinition("notes", stub(2), inputs=["kind"]),
        ],
    )
    run_id = record(tmp_path, pipeline)
    page.goto(f"{ui(tmp_path)}/runs/{run_id}")
    taken = page.locator('#graph path.route[data-to="words"]')
    playwright_api.expect(taken).to_have_class(re.compile(r"\btaken\b"))
    playwright_api.expect(page.locator('#graph path.route[data-to="notes"]')).to_have_class(
        re.compile(r"\buntaken\b")
    )
    playwright_api.expect(page.locator("#graph text.branch")).to_have_text(["lyrics", "music"])
    playwright_api.expect(page.locator('#graph .node[data-stage="notes"]')).to_have_class(
        re.compile(r"\bskipped\b")
    )
    playwright_api.expect(page.locator('#stages tr[data-stage="kind"]')).to_contain_text(
        "took lyrics"
    )
    # The branch names lie on their edges, never over a node.
    overlaps = page.evaluate(
        """() => {
          const boxes = (selector) => [...document.querySelectorAll(selector)]
            .map((node) => node.getBoundingClientRect());
          const nodes = boxes("#graph .node rect");
          return boxes("#graph text.branch").filter((label) => nodes.some((node) =>
            label.left < node.right && node.left < label.right &&
            label.top < node.bottom && node.top < label.bottom)).length;
        }"""
    )
    assert overlaps == 0
    # The graph takes the panel's width (a small one drawn larger), the badges their colours.
    graph = page.locator("#graph")
    drawn = float(graph.get_attribute("viewBox").split()[2])
    assert graph.bounding_box()["width"] == pytest.approx(1.5 * drawn, abs=1)
    skipped = page.locator('#stages tr[data-stage="notes"] .badge')
    assert skipped.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(167, 139, 250)"


def test_a_stage_that_succeeded_after_retries_is_not_an_error(
    page: Any, ui: Ui, tmp_path: Path
) -> None:
    from twinklr.core.pipeline import RetryConfig  # noqa: PLC0415

    flaky = stub(5, fail_times=1, error="rate_limit: try later")
    retried = StageDefinition(
        "flaky", flaky, retry_config=RetryConfig(max_attempts=2, initial_delay_ms=1)
    )
    run_id = record(tmp_path, PipelineDefinition("retried", [retried]))
    page.goto(f"{ui(tmp_path)}/runs/{run_id}")
    row = page.locator('#stages tr[data-stage="flaky"]')
    playwright_api.expect(row).to_contain_text(
        "succeeded after 2 attempts (attempt 1: rate_limit: try later)"
    )
    playwright_api.expect(page.locator("#failures-section")).to_be_hidden()


async def planned(song: str, context: PipelineContext) -> str:
    answer = await context.provider.complete(f"plan the lights for {song}", context)
    return str(answer.text)


def test_a_runs_page_shows_what_each_stages_llm_calls_used(
    page: Any, ui: Ui, tmp_path: Path
) -> None:
    pipeline = PipelineDefinition(
        "llm", [StageDefinition("plan", planned), StageDefinition("quiet", stub(1))]
    )
    store = RunStore(tmp_path)
    context = PipelineContext(provider=FakeLLMProvider(prices={"fake-llm": (1.0, 2.0)}))
    result = trio.run(PipelineExecutor(runs=store).execute, pipeline, "carol", context)
    store.close()
    used = result.usage_by_stage["plan"]
    page.goto(f"{ui(tmp_path)}/runs/{result.run_id}")
    playwright_api.expect(page.locator('#stages tr[data-stage="plan"] td.llm')).to_have_text(
        f"1 calls, {used.tokens} tokens, ${used.cost_usd:.6f}"
    )
    playwright_api.expect(page.locator('#stages tr[data-stage="quiet"] td.llm')).to_have_text("-")


CHILD = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from twinklr.core.pipeline import (
        PipelineDefinition, PipelineExecutor, RunStore, StageDefinition,
    )

    store, gate = RunStore(sys.argv[1]), Path(sys.argv[2])

    async def first(value):
        return 1

    async def waits(value):
        while not gate.exists():
            await trio.sleep(0.01)
        return 2

    async def last(value):
        await trio.sleep(0.3)
        return 3

    async def main():
        stages = [
            StageDefinition("first", first),
            StageDefinition("gate", waits, inputs=["first"]),
            StageDefinition("last", last, inputs=["gate"]),
        ]
        pipeline = PipelineDefinition("live", stages)
        async with trio.open_nursery() as nursery:
            handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
            while not await trio.to_thread.run_sync(store.stages, handle.run_id):
                await trio.sleep(0.02)
            print(handle.run_id, flush=True)

    trio.run(main)
    """
)


def test_a_live_runs_stage_turns_green_within_a_second_of_its_end(
    page: Any, ui: Ui, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(gate)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        page.goto(f"{ui(tmp_path)}/runs/{run_id}")
        node = page.locator('#graph .node[data-stage="gate"]')
        playwright_api.expect(node).to_have_class(re.compile(r"\brunning\b"))
        playwright_api.expect(page.locator("#status")).to_have_text("running")
        gate.touch()
        opened = time.monotonic()
        playwright_api.expect(node).to_have_class(re.compile(r"\bsucceeded\b"), timeout=1000)
        assert time.monotonic() - opened < 1.0
        playwright_api.expect(page.locator("#status")).to_have_text("succeeded", timeout=10_000)
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_user_text_is_shown_as_text_never_as_markup(page: Any, ui: Ui, tmp_path: Path) -> None:
    sneaky = "<img src=x onerror=alert(1)>"

    async def shouts(value: int) -> int:
        raise ValueError("<b>not bold</b><script>alert(2)</script>")

    pipeline = PipelineDefinition(
        "xss", [StageDefinition(sneaky, stub(1)), StageDefinition("b", shouts, inputs=[sneaky])]
    )
    run_id = record(tmp_path, pipeline)
    page.goto(f"{ui(tmp_path)}/runs/{run_id}")
    row = page.locator("#stages tbody tr").first
    playwright_api.expect(row.locator("td").first).to_have_text(sneaky)
    failure = page.locator('.failure[data-stage="b"]')
    playwright_api.expect(failure).to_contain_text("<b>not bold</b><script>alert(2)</script>")
    assert page.locator("img").count() == 0
    assert page.locator("main b, main script").count() == 0
    page.goto(ui(tmp_path) + "/")  # (a second server on the same store)
    playwright_api.expect(page.locator("#runs tbody tr")).to_have_count(1)
    assert page.locator("img").count() == 0


SHOWN = textwrap.dedent(
    """
    from twinklr.core.pipeline import PipelineDefinition, StageDefinition

    async def echo(value):
        return value

    pipeline = PipelineDefinition("looped", [
        StageDefinition("fetch", echo),
        StageDefinition("plan", echo, inputs=["fetch", "render"]),
        StageDefinition("render", echo, inputs=["plan"]),
        StageDefinition("publish", echo, inputs=["render", "preview"]),
    ])
    """
)


def test_the_definition_page_marks_a_cycle_and_reloads_when_fixed(
    page: Any, ui: Ui, tmp_path: Path
) -> None:
    module = tmp_path / "shown_definition.py"
    module.write_text(SHOWN)
    page.goto(ui(tmp_path, "--pipeline", "shown_definition:pipeline") + "/definition")
    plan = page.locator('#graph .node[data-stage="plan"]')
    playwright_api.expect(plan).to_have_class(re.compile(r"\bproblem\b"))
    playwright_api.expect(page.locator('#graph .node[data-stage="render"]')).to_have_class(
        re.compile(r"\bproblem\b")
    )
    playwright_api.expect(page.locator('#graph .node[data-stage="fetch"]')).not_to_have_class(
        re.compile(r"\bproblem\b")
    )
    playwright_api.expect(page.locator("#problems li")).to_contain_text(["dependency cycle"])
    playwright_api.expect(page.locator("#graph path.edge.problem")).to_have_count(2)
    playwright_api.expect(page.locator("#verdict")).to_have_text("2 problems")
    ghost = page.locator('#graph .node.missing[data-stage="preview"]')  # drawn, as missing
    playwright_api.expect(ghost).to_have_count(1)
    playwright_api.expect(page.locator('#graph .node[data-stage="publish"]')).to_have_class(
        re.compile(r"\bproblem\b")
    )

    stamp = module.stat().st_mtime_ns
    fixed = SHOWN.replace('inputs=["fetch", "render"]', 'inputs=["fetch"]')
    module.write_text(fixed.replace('"preview"', '"plan"'))
    os.utime(module, ns=(stamp + 10**9, stamp + 10**9))  # a new time, however coarse the clock
    playwright_api.expect(page.locator("#verdict")).to_have_text("valid", timeout=10_000)
    playwright_api.expect(plan).not_to_have_class(re.compile(r"\bproblem\b"))
    playwright_api.expect(page.locator("#problems li")).to_have_count(0)


SERVING = textwrap.dedent(
    """
    import functools, sys, trio
    from twinklr.core.pipeline import (
        PipelineDefinition, PipelineExecutor, RunStore, StageDefinition, WaitForInput,
    )
    from twinklr.core.pipeline.ui import RunsView, serve

    store = RunStore(sys.argv[1])

    async def plan(value):
        return {"lights": 3}

    async def render(answer):
        return answer

    async def main():
        view = RunsView(store)
        pipeline = PipelineDefinition("gated", [
            StageDefinition("plan", plan),
            StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
            StageDefinition("render", render, inputs=["approve"]),
        ])
        async with trio.open_nursery() as nursery:
            (address,) = await nursery.start(functools.partial(serve, view, port=0))
            handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
            view.track(handle)
            while not await trio.to_thread.run_sync(store.stages, handle.run_id):
                await trio.sleep(0.02)
            print(address, handle.run_id, flush=True)
            result = await handle.wait()
            print(result.outputs["render"], flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


@pytest.mark.parametrize(("button", "rendered"), [("edit", "{'lights': 5}"), ("reject", "None")])
def test_a_gate_is_answered_from_its_runs_page(
    page: Any, tmp_path: Path, button: str, rendered: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SERVING, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        address, run_id = child.stdout.readline().split()
        page.goto(f"{address}/runs/{run_id}")
        request = page.locator('.gate-request[data-stage="approve"]')
        playwright_api.expect(request).to_contain_text("approve: Render?")
        editor = request.locator("textarea")
        playwright_api.expect(editor).to_have_value(re.compile(r'"lights": 3'))
        editor.fill('{"lights": 5}')
        request.locator(f'button[data-action="{button}"]').click()
        # (The request says "answered at" until the run goes on and the page drops it:
        # on a busy machine that can come first, so the run's end is what is awaited.)
        playwright_api.expect(page.locator("#status")).to_have_text("succeeded", timeout=15_000)
        assert child.stdout.readline().strip() == rendered
        playwright_api.expect(page.locator("#waiting-section")).to_be_hidden()
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


STREAMING = textwrap.dedent(
    """
    import functools, sys, trio
    from fixtures.http import served_trio
    from fixtures.llm_server import ChatServer
    from twinklr.core.pipeline import (
        PipelineContext, PipelineDefinition, PipelineExecutor, RunStore, StageDefinition, llm,
    )
    from twinklr.core.pipeline.ui import RunsView, serve

    store = RunStore(sys.argv[1])
    server = ChatServer()
    released = trio.Event()
    server.hold = released.wait  # the last piece waits for a line on stdin

    async def narrate(song, context):
        stream = context.provider.stream(f"plan the lights for {song}", context)
        return "".join([piece async for piece in stream])

    async def main():
        view = RunsView(store)
        pipeline = PipelineDefinition("narrated", [StageDefinition("narrate", narrate)])
        async with served_trio(server.app) as url, trio.open_nursery() as nursery:
            (address,) = await nursery.start(functools.partial(serve, view, port=0))
            provider = llm.OpenAIProvider("local-model", base_url=f"{url}/v1", api_key="x")
            context = PipelineContext(provider=provider)
            handle = await PipelineExecutor(runs=store).start(nursery, pipeline, "carol", context)
            view.track(handle)
            while not await trio.to_thread.run_sync(store.stages, handle.run_id):
                await trio.sleep(0.02)
            print(address, handle.run_id, flush=True)
            await trio.to_thread.run_sync(sys.stdin.readline)
            released.set()
            print((await handle.wait()).outputs["narrate"], flush=True)
            await provider.aclose()
            await trio.sleep_forever()

    trio.run(main)
    """
)


def test_a_running_llm_calls_text_grows_on_its_runs_page(page: Any, tmp_path: Path) -> None:
    tests = str(Path(__file__).resolve().parents[1])
    child = subprocess.Popen(
        [sys.executable, "-c", STREAMING, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, *sys.path])},
    )
    try:
        assert child.stdin is not None
        assert child.stdout is not None
        address, run_id = child.stdout.readline().split()
        page.goto(f"{address}/runs/{run_id}")
        text = page.locator('#streamed .stream[data-key="narrate"] pre')
        # Everything but the last piece, which the server holds back: the run goes on.
        playwright_api.expect(text).to_have_text("Twinkle the roof, then fade the ")
        playwright_api.expect(page.locator("#status")).to_have_text("running")
        child.stdin.write("go on\n")
        child.stdin.flush()
        playwright_api.expect(text).to_have_text("Twinkle the roof, then fade the tree.")
        playwright_api.expect(page.locator("#status")).to_have_text("succeeded")
        assert child.stdout.readline().strip() == "Twinkle the roof, then fade the tree."
    finally:
        child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


TYPED_GATE = textwrap.dedent(
    """
    import sys, trio, pydantic
    from twinklr.core.pipeline import (
        PipelineDefinition, PipelineExecutor, RunStore, StageDefinition, WaitForInput,
    )

    class Plan(pydantic.BaseModel):
        lights: int
        song: str
        loud: bool = False

    store = RunStore(sys.argv[1])

    async def plan(value):
        return {"lights": 3, "song": "Carol " + "la " * 1000}

    async def main():
        pipeline = PipelineDefinition("typed", [
            StageDefinition("plan", plan),
            StageDefinition("approve", WaitForInput("Render?", answer_type=Plan), inputs=["plan"]),
        ])
        async with trio.open_nursery() as nursery:
            handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
            while not await trio.to_thread.run_sync(store.waiting, handle.run_id):
                await trio.sleep(0.02)
            print(handle.run_id, flush=True)
            result = await handle.wait()
            print(repr(result.outputs["approve"])[:40], flush=True)

    trio.run(main)
    """
)


def test_a_gate_of_a_run_in_another_process_is_answered_from_a_form(
    page: Any, ui: Ui, tmp_path: Path
) -> None:
    with spawned(TYPED_GATE, str(tmp_path)) as child:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        page.goto(f"{ui(tmp_path)}/runs/{run_id}")
        request = page.locator('.gate-request[data-stage="approve"]')
        playwright_api.expect(request).to_contain_text("approve: Render?")
        playwright_api.expect(request).to_contain_text("the answer must be a Plan")
        shown = request.locator("pre.gate-input")
        playwright_api.expect(shown).to_contain_text('"lights": 3')
        assert shown.inner_text().endswith("…")  # a long input is cut, with a way to see it
        request.locator("button.show-all").click()
        playwright_api.expect(shown).to_contain_text('la "\n}')
        # A wrong answer, edited as JSON, is refused naming the field; the gate waits on.
        request.locator("summary").click()
        request.locator("textarea").fill('{"lights": "many", "song": "x"}')
        request.locator("button", has_text="Send the edited answer").click()
        playwright_api.expect(request.locator("[role=status]")).to_contain_text(
            "field 'lights': must be integer, not str 'many'"
        )
        # The form, drawn from the type's schema and filled from the input.
        lights = request.locator('input[name="lights"]')
        playwright_api.expect(lights).to_have_value("3")
        assert request.locator('input[name="loud"]').get_attribute("type") == "checkbox"
        lights.fill("5")
        request.locator("button", has_text="Send the form").click()
        playwright_api.expect(request.locator("[role=status]")).to_contain_text("answered at")
        assert child.stdout.readline().startswith("Plan(lights=5, song='Carol la la")
        playwright_api.expect(page.locator("#status")).to_have_text("succeeded")


def test_a_big_run_is_summed_up_paged_and_a_fan_out_is_one_row(
    page: Any, ui: Ui, tmp_path: Path
) -> None:
    from twinklr.core.pipeline import ExecutionPattern  # noqa: PLC0415

    chain = PipelineDefinition(
        "big",
        [StageDefinition(f"s{n}", stub(n), inputs=[f"s{n - 1}"] if n else []) for n in range(600)],
    )
    big = record(tmp_path, chain)

    async def maybe(item: int) -> int:
        if item == 250:  # (the stage fails, its items still going are cancelled)
            raise ValueError(f"item {item} refused")
        return item

    fanned = PipelineDefinition(
        "fanned",
        [
            StageDefinition("items", stub(list(range(400)))),
            StageDefinition(
                "each", maybe, inputs=["items"], pattern=ExecutionPattern.FAN_OUT, critical=False
            ),
        ],
    )
    fan = record(tmp_path, fanned)
    address = ui(tmp_path)
    page.goto(f"{address}/runs/{big}")
    summary = page.locator("#graph-summary")
    playwright_api.expect(summary).to_contain_text("600 stages, too many to draw quickly")
    playwright_api.expect(summary.locator(".badge.succeeded")).to_have_text("600 succeeded")
    playwright_api.expect(page.locator("#stages tbody tr")).to_have_count(200)
    playwright_api.expect(page.locator("#gantt rect.bar")).to_have_count(200)
    pager = page.locator("#stage-pager")
    playwright_api.expect(pager).to_contain_text("stages 1-200 of 600")
    pager.locator("button", has_text="next").click()
    playwright_api.expect(pager).to_contain_text("stages 201-400 of 600")
    playwright_api.expect(page.locator('#stages tr[data-stage="s200"]')).to_have_count(1)
    page.locator("#draw-graph").click()  # drawn on demand
    playwright_api.expect(page.locator("#graph .node.succeeded")).to_have_count(600)
    page.goto(f"{address}/runs/{fan}")
    row = page.locator('#stages tr[data-stage="each"]')
    playwright_api.expect(row).to_contain_text("failed items: 250")
    playwright_api.expect(row).to_contain_text(re.compile(r" \d+/400"))
    assert row.locator("progress").get_attribute("max") == "400"
    playwright_api.expect(page.locator("#stages tbody tr")).to_have_count(2)  # not 400
    node = page.locator('#graph .node[data-stage="each"]')  # one node, with its items' bar
    playwright_api.expect(node.locator("rect.items-bar")).to_have_count(1)
    ended = int(node.locator("rect.items-bar").get_attribute("data-ended") or 0)
    assert 0 < ended <= 400


def test_a_resumed_runs_page_shows_its_whole_history(page: Any, ui: Ui, tmp_path: Path) -> None:
    tests = Path(__file__).resolve().parents[1]

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "twinklr.core.pipeline.cli", *args],
            cwd=tests,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return done.stdout + done.stderr

    store = str(tmp_path)
    said = cli("run", "fixtures.cli_pipelines:gated", "--cache", store, "--suspend", "--quiet")
    run_id = said.split("runs resume ")[1].split()[0]
    cli("runs", "respond", run_id, "approve", "--value", "5", "--store", store)
    cli("runs", "resume", run_id, "--store", store, "--quiet")
    page.goto(f"{ui(tmp_path)}/runs/{run_id}")
    history = page.locator("#history-section")
    playwright_api.expect(history).to_be_visible()
    first = history.locator('li[data-segment="1"]')
    playwright_api.expect(first).to_contain_text("waiting after")
    playwright_api.expect(first).to_contain_text("ran a (succeeded)")
    playwright_api.expect(first.locator('[data-gate="approve"]')).to_contain_text(
        re.compile(r"approve waited for input from .*, answered .* \(waited [\d.]+ (ms|s)\)")
    )
    playwright_api.expect(history.locator('li[data-segment="2"]')).to_contain_text("succeeded")
