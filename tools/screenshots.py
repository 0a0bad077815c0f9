"""Remake the web view's screenshots in docs/images (needs Chromium: apt-get install
chromium). Records the demo failing at ``macro`` and then resuming, serves the store
and examples/tangled.py with ``twinklr-pipeline ui``, and photographs the runs list, the
failed run's page and the definition page in headless Chromium.

    python3 tools/dev.py screenshots      (or: .venv/bin/python tools/screenshots.py)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
CLI = [sys.executable, "-m", "twinklr.core.pipeline.cli"]
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    chromium = shutil.which("chromium")
    if chromium is None:
        print("screenshots: needs Chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 (a dev dependency)

    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as store:
        demo = [*CLI, "demo", "--cache", store, "--fail-at", "macro", "--quiet"]
        # (run from the project, so the failure's traceback names its files relative to it)
        subprocess.run(demo, check=False, capture_output=True, cwd=ROOT)
        ui = [*CLI, "ui", "--port", "0", "--store", store, "--pipeline", "tangled:pipeline"]
        server = subprocess.Popen(ui, cwd=ROOT / "examples", stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None  # noqa: S101
            base = server.stdout.readline().split(" at ")[1].strip().rstrip("/")
            with urllib.request.urlopen(f"{base}/api/runs?status=failed") as response:  # noqa: S310
                failed = json.load(response)[0]["run_id"]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 800})
                page.goto(f"{base}/")
                page.wait_for_selector("#runs tbody tr")
                page.screenshot(path=IMAGES / "ui-runs.png")
                page.goto(f"{base}/runs/{failed}")
                page.wait_for_selector(".failure")
                page.screenshot(path=IMAGES / "ui-run.png", full_page=True)
                page.goto(f"{base}/definition")
                page.wait_for_selector("#problems li")
                page.screenshot(path=IMAGES / "ui-definition.png", full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait()
    for name in ("ui-runs.png", "ui-run.png", "ui-definition.png"):
        print(IMAGES / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
