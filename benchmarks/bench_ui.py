"""How fast the web view shows a big run: a 1,000-stage run's page in headless Chromium.

Records one run of bench_executor's random DAG (1,000 stages by default) into a store
in a temporary directory, serves it with ``twinklr-pipeline ui`` (its own process, as
users run it) and opens the run's page in Debian's Chromium through Playwright, timing
from the navigation to the graph drawn with every stage coloured, the stage table
filled and the timeline drawn. Best and worst of --repeat fresh page loads. Target:
under 2 s. Also times the ``/api/runs/{id}`` answer the page starts from.

    python benchmarks/bench_ui.py [--stages 1000] [--repeat 5]
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

from bench_executor import definition, random_dag
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("bench_ui needs Chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (a dev dependency)

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as directory:
        store = RunStore(directory)
        pipeline = definition(random_dag(args.stages))
        run_id = trio.run(PipelineExecutor(runs=store).execute, pipeline).run_id
        store.close()
        command = [sys.executable, "-m", "twinklr.core.pipeline.cli", "ui", "--port", "0"]
        server = subprocess.Popen(  # noqa: S603
            [*command, "--store", directory], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None  # noqa: S101
            base = server.stdout.readline().split(" at ")[1].strip().rstrip("/")
            api = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                with urllib.request.urlopen(f"{base}/api/runs/{run_id}") as response:  # noqa: S310
                    response.read()
                api.append(time.perf_counter() - start)
            loads = []
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
                for _ in range(args.repeat):
                    page = browser.new_page(viewport={"width": 1280, "height": 900})
                    start = time.perf_counter()
                    page.goto(f"{base}/runs/{run_id}")
                    page.wait_for_function(
                        """count => document.querySelectorAll("#graph .node.succeeded").length
                                === count
                            && document.querySelectorAll("#stages tbody tr").length === count
                            && document.querySelectorAll("#gantt rect.bar").length === count""",
                        arg=args.stages,
                        timeout=60_000,
                    )
                    loads.append(time.perf_counter() - start)
                    page.close()
                browser.close()
        finally:
            server.terminate()
            server.wait()
    print(
        f"run page of a {args.stages:,}-stage run: {min(loads) * 1000:.0f}-"
        f"{max(loads) * 1000:.0f} ms to a coloured graph, table and timeline (target < 2000 ms);"
        f" its /api/runs/{{id}} {min(api) * 1000:.0f}-{max(api) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
