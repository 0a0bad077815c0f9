"""``twinklr-pipeline ui`` as a user starts it: a real second process serving HTTP."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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


def test_ui_in_process_serves_the_store_and_a_definition_until_sigint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a free port (the server binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, Any] = {}

    def client() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "/api/runs", timeout=5) as response:  # noqa: S310
                    answers["runs"] = json.load(response)
                with urllib.request.urlopen(base + "/api/definition", timeout=5) as response:  # noqa: S310
                    answers["definition"] = json.load(response)
                break
            except OSError:
                time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    helper = threading.Thread(target=client)
    helper.start()
    code = main(
        [
            *("ui", "--store", str(tmp_path), "--port", str(port)),
            *("--pipeline", "fixtures.cli_pipelines:invalid"),
        ]
    )
    helper.join()
    out, _ = capsys.readouterr()
    assert code == 0
    assert out.splitlines() == [
        f"serving the runs of {tmp_path / 'twinklr-runs.sqlite3'} at {base}/",
        f"the definition fixtures.cli_pipelines:invalid at {base}/definition",
    ]
    assert answers["runs"] == []
    concerns = {p["message"]: p["stages"] for p in answers["definition"]["problems"]}
    assert concerns == {
        "stage 'a' depends on unknown stage 'ghost'": ["a"],
        "pipeline 'invalid' has no entry stage (every stage has inputs)": [],
    }


def test_ui_without_its_extra_says_how_to_install_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "starlette" else real(name, *a),
    )
    code = main(["ui", "--store", str(tmp_path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert 'the web view needs starlette: pip install "twinklr-pipeline[ui]"' in err


def test_ui_refuses_a_malformed_pipeline_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(["ui", "--store", str(tmp_path), "--pipeline", "no-colon-here"])
    assert code == 2
    assert "expected MODULE:ATTR" in capsys.readouterr().err


def test_ui_on_a_busy_port_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["ui", "--store", str(tmp_path), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"cannot serve on 127.0.0.1:{port}" in line
