"""``twinklr-pipeline ui`` as a user starts it: a real second process serving HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from twinklr.core.pipeline.cli import main

TESTS = Path(__file__).parents[1]


def start_ui(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "twinklr.core.pipeline.cli", "ui", "--port", "0", *args],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ui_serves_the_store_until_ctrl_c(tmp_path: Path) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "twinklr.core.pipeline.cli"),
            *("run", "fixtures.cli_pipelines:numbers", "--input", "1"),
            *("--runs", str(tmp_path), "--quiet"),
        ],
        cwd=TESTS,
        check=True,
        timeout=120,
    )
    server = start_ui("--store", str(tmp_path))
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving the runs of "), line
        url = line.split(" at ")[1].strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/runs", timeout=30) as response:  # noqa: S310
            (run,) = json.load(response)
        assert (run["pipeline"], run["status"]) == ("numbers", "succeeded")
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
        server.wait()
        for pipe in (server.stdout, server.stderr):
            if pipe is not None:
                pipe.close()


def test_ui_with_a_token_prints_the_url_that_carries_it(tmp_path: Path) -> None:
    env = {**os.environ, "TWINKLR_UI_TOKEN": "tok-123"}
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "twinklr.core.pipeline.cli", "ui", "--port", "0"),
            *("--store", str(tmp_path), "--host", "0.0.0.0"),  # noqa: S104
        ],
        cwd=TESTS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.rstrip().endswith("/?token=tok-123"), line
        port = line.split(" at ")[1].split("/")[2].rsplit(":", 1)[1]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=30)
        assert refused.value.code == 401
        refused.value.close()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/runs", headers={"Authorization": "Bearer tok-123"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert json.load(response) == []
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        for pipe in (server.stdout, server.stderr):
            if pipe is not None:
                pipe.close()


def test_ui_refuses_a_public_address_without_a_token(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWINKLR_UI_TOKEN", raising=False)
    code = main(["ui", "--store", str(tmp_path), "--host", "0.0.0.0"])  # noqa: S104
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "refusing to serve on 0.0.0.0 without --token" in err


def test_ui_refuses_a_pipeline_module_that_is_nowhere(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["ui", "--store", str(tmp_path), "--pipeline", "no_such_module_here:p"])
    _, err = capsys.readouterr()
    assert code == 2
    assert "no module 'no_such_module_here'" in err
