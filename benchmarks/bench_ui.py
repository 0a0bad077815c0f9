"""How fast the web view shows a big run: a run's page in headless Chromium.

Records one run of bench_executor's random DAG (--stages, 1,000 by default) and one of
a fan-out of --items items (10,000 by default) into a store in a temporary directory,
serves it with ``twinklr-pipeline ui`` (its own process, as users run it) and opens
each run's page in Debian's Chromium through Playwright, timing from the navigation to
the page shown whole: the graph drawn with every stage coloured (past 500 stages, its
summary by status instead), the stage table's first page (200 rows), the timeline of
those stages, and a fan-out stage's item bar. Best and worst of --repeat fresh page
loads. Targets: under 2 s for 1,000 stages, under 3 s for 10,000 stages and for a
10,000-item fan-out. Also times the ``/api/runs/{id}`` answer the page starts from.

    python benchmarks/bench_ui.py [--stages 1000] [--items 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import structlog
import trio

from bench_executor import definition, fan_out, random_dag
from twinklr.core.pipeline import PipelineExecutor, RunStore

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: What the page shows once it is whole (its graph or summary, table, timeline, items).
SHOWN = """([stages, rows, drawn]) =>
    (drawn ? document.querySelectorAll("#graph .node.succeeded").length === stages
           : document.querySelectorAll("#graph-summary .badge.succeeded").length === 1)
    && document.querySelectorAll("#stages tbody tr").length === rows
    && document.querySelectorAll("#gantt rect.bar").length === rows
    && document.querySelectorAll("#stages tbody progress").length
        === document.querySelectorAll("#stages tbody span.items").length"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=1000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("bench_ui needs Chromium (apt-get install chromium)")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as directory:
        store = RunStore(directory)
        runs = []
        for shape in (random_dag(args.stages), fan_out(args.items)):
            run_id = trio.run(PipelineExecutor(runs=store).execute, definition(shape)).run_id
            stages = len(shape.deps)
            runs.append((shape.name, run_id, stages))
        store.close()
        command = [sys.executable, "-m", "twinklr.core.pipeline.cli", "ui", "--port", "0"]
        server = subprocess.Popen(  # noqa: S603
            [*command, "--store", directory], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None  # noqa: S101
            base = server.stdout.readline().split(" at ")[1].strip().rstrip("/")
            for name, run_id, stages in runs:
                api, loads = _timed(base, run_id, stages, args.repeat, chromium)
                print(
                    f"run page of a {name} run: {min(loads) * 1000:.0f}-"
                    f"{max(loads) * 1000:.0f} ms to its graph (or summary), table and "
                    f"timeline; its /api/runs/{{id}} {min(api) * 1000:.0f}-"
                    f"{max(api) * 1000:.0f} ms"
                )
        finally:
            server.terminate()
            server.wait()


def _timed(
    base: str, run_id: str, stages: int, repeat: int, chromium: str
) -> tuple[list[float], list[float]]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (a dev dependency)

    api = []
    for _ in range(repeat):
        start = time.perf_counter()
        with urllib.request.urlopen(f"{base}/api/runs/{run_id}") as response:  # noqa: S310
            response.read()
        api.append(time.perf_counter() - start)
    loads = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
        for _ in range(repeat):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            start = time.perf_counter()
            page.goto(f"{base}/runs/{run_id}")
            shown = [stages, min(stages, 200), stages <= 500]
            page.wait_for_function(SHOWN, arg=shown, timeout=60_000)
            loads.append(time.perf_counter() - start)
            page.close()
        browser.close()
    return api, loads


if __name__ == "__main__":
    main()
