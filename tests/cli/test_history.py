"""``twinklr-pipeline runs``: what ``run`` and ``demo`` record, listed, shown and pruned."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.commands import spawned
from fixtures.postgres import postgres
from twinklr.core.pipeline import RunStore
from twinklr.core.pipeline.cli import main

__all__ = ["postgres"]  # (the fixture)

TESTS = Path(__file__).parents[1]
FIXTURES = "fixtures.cli_pipelines"


@pytest.fixture(autouse=True)
def in_tests_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTS)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def recorded_id(out: str) -> str:
    found = re.search(r"recorded as run (\w+) in ", out)
    assert found, out
    return found.group(1)


def test_run_with_a_cache_records_into_its_directory_and_says_how_to_look(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(
        capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--cache", str(tmp_path)
    )
    assert code == 0
    run_id = recorded_id(out)
    assert f"twinklr-pipeline runs show {run_id} --store {tmp_path}" in out
    (record,) = RunStore(tmp_path).runs()
    assert (record.run_id, record.pipeline, record.status) == (run_id, "numbers", "succeeded")


def test_run_records_nothing_without_a_directory_or_with_runs_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = cli(capsys, "run", f"{FIXTURES}:numbers", "--input", "1")
    assert code == 0
    assert "recorded as run" not in out
    code, out, _ = cli(
        capsys,
        "run",
        f"{FIXTURES}:numbers",
        "--input",
        "1",
        "--cache",
        str(tmp_path),
        "--runs",
        "none",
    )
    assert code == 0
    assert "recorded as run" not in out
    assert RunStore(tmp_path).runs() == []


def test_runs_list_shows_the_newest_first_and_filters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = str(tmp_path / "history")
    _, out, _ = cli(capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--runs", store)
    ok = recorded_id(out)
    _, out, _ = cli(capsys, "run", f"{FIXTURES}:failing", "--input", "1", "--runs", store)
    bad = recorded_id(out)

    code, out, _ = cli(capsys, "runs", "list", "--store", store)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["RUN", "ID", "PIPELINE", "STATUS"]
    assert [line.split()[:3] for line in lines[1:]] == [
        [bad, "failing", "failed"],
        [ok, "numbers", "succeeded"],
    ]
    assert "this stage always fails" in lines[1]

    _, out, _ = cli(capsys, "runs", "list", "--store", store, "--status", "succeeded", "--json")
    (listed,) = json.loads(out)
    assert {"run_id", "pipeline", "status", "started_at", "finished_at"} <= set(listed)
    assert (listed["run_id"], listed["status"]) == (ok, "succeeded")
    _, out, _ = cli(capsys, "runs", "list", "--store", store, "--pipeline", "failing", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [bad]
    _, out, _ = cli(capsys, "runs", "list", "--store", store, "--limit", "1", "--json")
    assert [r["run_id"] for r in json.loads(out)] == [bad]
    _, out, _ = cli(capsys, "runs", "list", "--store", store, "--pipeline", "ghost")
    where = tmp_path / "history" / "twinklr-runs.sqlite3"
    assert out.strip() == f"no runs recorded at {where} matching --pipeline ghost"


def test_runs_show_gives_the_stage_table_with_the_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, out, _ = cli(capsys, "run", f"{FIXTURES}:failing", "--input", "1", "--runs", str(tmp_path))
    run_id = recorded_id(out)
    code, out, _ = cli(capsys, "runs", "show", run_id[:6], "--store", str(tmp_path))
    assert code == 0
    assert out.startswith(f"run {run_id}  failing  FAILED\n")
    rows = {
        line.split()[0]: line.split()[1] for line in out.splitlines() if line[:2] in ("a ", "b ")
    }
    assert rows == {"a": "succeeded", "b": "failed"}
    assert "== b: failed" in out
    assert "error: this stage always fails" in out

    code, out, _ = cli(capsys, "runs", "show", run_id, "--store", str(tmp_path), "--json")
    shown = json.loads(out)
    assert shown["run_id"] == run_id
    assert [(s["id"], s["status"], s["attempts"], s["error"]) for s in shown["stages"]] == [
        ("a", "succeeded", 1, None),
        ("b", "failed", 1, "this stage always fails"),
    ]


def test_runs_show_of_an_unknown_run_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = cli(capsys, "runs", "show", "nope", "--store", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "no run 'nope'" in err
    cli(capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--runs", str(tmp_path))
    code, _, err = cli(capsys, "runs", "show", "nope", "--store", str(tmp_path))
    assert code == 2
    assert "twinklr-pipeline runs list shows them" in err


def test_a_store_that_is_not_a_database_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bogus = tmp_path / "twinklr-runs.sqlite3"
    bogus.write_text("hello, not sqlite " * 100)
    code, out, err = cli(capsys, "runs", "list", "--store", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert f"cannot record runs: {bogus} is not a SQLite database" in err


def test_runs_prune_forgets_old_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for _ in range(2):
        cli(capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--runs", str(tmp_path))
    store = RunStore(tmp_path)
    old = store.runs()[-1].run_id
    db = sqlite3.connect(store.path)
    with db:
        db.execute(
            "UPDATE runs SET started_at = started_at - 3 * 86400, "
            "finished_at = finished_at - 3 * 86400 WHERE run_id = ?",
            (old,),
        )
    db.close()
    code, out, _ = cli(capsys, "runs", "prune", "--store", str(tmp_path), "--older-than", "30d")
    assert (code, out) == (0, f"removed 0 runs from {store.path}\n")
    code, out, _ = cli(capsys, "runs", "prune", "--store", str(tmp_path), "--older-than", "2d")
    assert (code, out) == (0, f"removed 1 runs from {store.path}\n")
    assert old not in {r.run_id for r in store.runs()}
    with pytest.raises(SystemExit) as exited:
        main(["runs", "prune", "--store", str(tmp_path), "--older-than", "soon"])
    assert exited.value.code == 2
    assert "not 'soon'" in capsys.readouterr().err


def test_the_demo_records_when_given_a_cache(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "twinklr.core.pipeline.cli"]
    done = subprocess.run(
        [*command, "demo", "--cache", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [*command, "runs", "list", "--store", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (record,) = json.loads(listed.stdout)
    assert record["status"] == "succeeded"
    assert record["stage_count"] > 5


GATED = """
import sys, trio
from twinklr.core.pipeline import (
    PipelineDefinition, PipelineExecutor, RunStore, StageDefinition, WaitForInput,
)

store = RunStore(sys.argv[1])

async def plan(value):
    return "the plan"

async def main():
    pipeline = PipelineDefinition("gated", [
        StageDefinition("plan", plan),
        StageDefinition("approve", WaitForInput("Render?"), inputs=["plan"]),
    ])
    async with trio.open_nursery() as nursery:
        handle = await PipelineExecutor(runs=store).start(nursery, pipeline)
        while not await trio.to_thread.run_sync(store.waiting, handle.run_id):
            await trio.sleep(0.02)
        print(handle.run_id, flush=True)
        result = await handle.wait()
        print(repr(result.outputs["approve"]), flush=True)

trio.run(main)
"""


def test_runs_respond_answers_a_gate_of_a_run_in_another_process(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", GATED, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        code, out, _ = cli(capsys, "runs", "show", run_id, "--store", str(tmp_path))
        assert code == 0
        assert "waiting for input: approve: Render? (since " in out
        assert 'input: "the plan"' in out
        assert f"runs respond {run_id} approve --store {tmp_path} --approve | --reject" in out
        code, _, err = cli(
            capsys, "runs", "respond", run_id, "approve", "--value", "{", "--store", str(tmp_path)
        )
        assert code == 2
        assert "--value must be JSON" in err
        code, _, err = cli(
            capsys, "runs", "respond", run_id, "plan", "--value", "1", "--store", str(tmp_path)
        )
        assert code == 2
        assert "no gate 'plan' waits for input (waiting: 'approve')" in err
        code, out, _ = cli(
            capsys,
            *("runs", "respond", run_id[:8], "approve", "--value", '{"lights": 4}'),
            *("--store", str(tmp_path)),
        )
        assert (code, out) == (
            0,
            f"answered approve of run {run_id}: the run takes it with its next batch\n",
        )
        assert child.stdout.readline().strip() == "{'lights': 4}"
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_run_suspend_then_runs_respond_and_runs_resume_go_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    store = str(tmp_path)
    code, _, err = cli(capsys, "run", f"{FIXTURES}:gated", "--suspend", "--quiet")
    assert code == 2
    assert "--suspend needs --cache DIR" in err
    code, out, err = cli(
        capsys, "run", f"{FIXTURES}:gated", "--input", "1", "--cache", store, "--suspend"
    )
    assert code == 0
    assert "WAITING for input at approve" in out
    run_id = recorded_id(out)
    assert f"runs respond {run_id} approve --store {store} --approve | --reject | --value" in err
    assert f"twinklr-pipeline runs resume {run_id} --store {store}" in err
    code, out, _ = cli(capsys, "runs", "list", "--status", "waiting", "--store", store)
    assert run_id in out
    code, out, _ = cli(capsys, "runs", "show", run_id, "--store", store)
    assert re.search(r"^approve\s+waiting", out, re.MULTILINE)
    assert f"suspended: go on with twinklr-pipeline runs resume {run_id}" in out
    code, out, _ = cli(
        capsys, "runs", "respond", run_id, "approve", "--value", "5", "--store", store
    )
    assert code == 0
    assert f"it is suspended, go on with twinklr-pipeline runs resume {run_id}" in out
    code, out, _ = cli(capsys, "runs", "resume", run_id, "--store", store)
    assert code == 0, out
    assert f"pipeline gated, run {run_id}: succeeded" in out
    assert re.search(r"^a\s+cached", out, re.MULTILINE)  # served from the cache
    record = RunStore(store).get(run_id)
    assert record is not None
    assert record.status == "succeeded"
    # Its whole history: the part before the suspension, and the gate's real wait.
    code, out, _ = cli(capsys, "runs", "show", run_id, "--json", "--store", store)
    (before,) = json.loads(out)["segments"]
    assert before["status"] == "waiting"
    assert [stage["id"] for stage in before["stages"]] == ["a"]
    (gate,) = before["waiting"]
    assert gate["stage_id"] == "approve"
    assert before["answers"]["approve"] > gate["since"]  # (ISO times, UTC: in order)
    code, out, _ = cli(capsys, "runs", "show", run_id, "--store", store)
    assert "part 1: started " in out
    assert "; ran a\n  approve waited for input from " in out
    assert "part 2: resumed, below" in out
    code, _, err = cli(capsys, "runs", "resume", run_id, "--store", store)
    assert code == 2
    assert "is not suspended (succeeded)" in err


def test_runs_resume_of_a_run_not_started_by_the_cli_needs_its_pipeline(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import trio  # noqa: PLC0415

    from fixtures.cli_pipelines import gated  # noqa: PLC0415
    from twinklr.core.pipeline import (  # noqa: PLC0415
        PipelineDefinition,
        PipelineExecutor,
        SQLiteCacheStore,
    )

    executor = PipelineExecutor(
        cache=SQLiteCacheStore(tmp_path), runs=RunStore(tmp_path), suspend_on_wait=True
    )
    unnamed = PipelineDefinition("gated", gated.stages)  # built here, not loaded by the CLI
    run_id = trio.run(executor.execute, unnamed, 2).run_id
    code, _, err = cli(capsys, "runs", "resume", run_id, "--store", str(tmp_path))
    assert code == 2
    assert "say which definition to go on with (--pipeline MODULE:ATTR)" in err
    code, out, _ = cli(
        capsys,
        *("runs", "resume", run_id, "--store", str(tmp_path)),
        *("--pipeline", f"{FIXTURES}:gated", "--quiet"),
    )
    assert (code, out) == (0, "")
    assert RunStore(tmp_path).get(run_id).status == "waiting"  # type: ignore[union-attr]


@pytest.mark.parametrize("limit", ["0", "-1", "\u00b2", "1" * 23])
def test_a_bad_limit_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, limit: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["runs", "list", "--store", str(tmp_path), "--limit", limit])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--limit" in err
    assert "not a twinklr run store" not in err


@pytest.mark.parametrize(
    ("column", "damage"), [("progress", b"cut"), ("details", "{not json")], ids=["blob", "json"]
)
def test_runs_show_of_a_damaged_run_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, column: str, damage: object
) -> None:
    code, out, _ = cli(
        capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--cache", str(tmp_path)
    )
    run_id = recorded_id(out)
    with sqlite3.connect(RunStore(tmp_path).path) as db:
        db.execute(f"UPDATE runs SET {column} = ?", (damage,))  # noqa: S608 (the test's own)
    code, _, err = cli(capsys, "runs", "show", run_id, "--store", str(tmp_path))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"run {run_id}" in line
    assert "damaged" in line


def test_a_run_that_could_not_be_recorded_is_not_said_to_be(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = tmp_path / "runs.db"
    runs.write_text("not a database at all, " * 100)  # a file the run store cannot use
    code, out, err = cli(capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--runs", str(runs))
    assert (code, out) == (2, "")  # said before the run, in one line
    assert f"cannot record runs: {runs} is not a SQLite database" in err
    runs.unlink()

    def broken(*_args: object, **_kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(RunStore, "write", broken)  # a store that breaks during the run
    code, out, err = cli(capsys, "run", f"{FIXTURES}:numbers", "--input", "1", "--runs", str(runs))
    assert code == 0  # the run itself went well
    assert "recorded as run" not in out
    assert f"the run was not recorded in {runs}" in err


TYPED = (
    GATED.replace(
        "store = RunStore(sys.argv[1])",
        "import pydantic\n\nclass Plan(pydantic.BaseModel):\n    lights: int\n    song: str\n\n"
        "store = RunStore(sys.argv[1])",
    )
    .replace('return "the plan"', 'return {"lights": 3, "song": "x" * 1000}')
    .replace('WaitForInput("Render?")', 'WaitForInput("Render?", answer_type=Plan)')
)


def test_a_typed_gate_shows_its_input_and_refuses_a_wrong_answer_from_the_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with spawned(TYPED, str(tmp_path)) as child:
        assert child.stdout is not None
        run_id = child.stdout.readline().strip()
        store = ("--store", str(tmp_path))
        code, out, _ = cli(capsys, "runs", "show", run_id, *store)
        assert code == 0
        assert '  input: {"lights": 3, "song": "xxx' in out
        assert "… (1025 characters: --json shows it whole)" in out
        assert "  the answer must be a Plan" in out
        code, out, _ = cli(capsys, "runs", "show", run_id, "--json", *store)
        (gate,) = json.loads(out)["waiting"]
        assert gate["input"] == {"lights": 3, "song": "x" * 1000}
        assert gate["answer_schema"]["required"] == ["lights", "song"]
        code, _, err = cli(
            capsys, "runs", "respond", run_id, "approve", "--value", '{"lights": "many"}', *store
        )
        assert code == 2
        assert "the answer to gate 'approve' is not a valid Plan: field 'song' is missing" in err
        wrong = '{"lights": "many", "song": "a"}'
        code, _, err = cli(capsys, "runs", "respond", run_id, "approve", "--value", wrong, *store)
        assert code == 2
        assert "Plan: field 'lights': must be integer, not str 'many'" in err
        code, out, _ = cli(capsys, "runs", "respond", run_id, "approve", "--approve", *store)
        assert code == 0, out
        assert child.stdout.readline().strip() == f"Plan(lights=3, song='{'x' * 1000}')"
        assert child.wait(timeout=30) == 0


def test_the_commands_take_a_postgres_url_for_the_cache_and_the_runs(
    capsys: pytest.CaptureFixture[str], postgres: str
) -> None:
    pytest.importorskip("psycopg")
    url = postgres.replace("postgresql://", "postgres://")  # (either scheme)
    code, out, err = cli(
        capsys, "run", f"{FIXTURES}:gated", "--input", "1", "--cache", url, "--suspend"
    )
    assert code == 0, err
    run_id = recorded_id(out)
    assert f"twinklr-pipeline runs resume {run_id} --store {url}" in err
    code, out, _ = cli(capsys, "runs", "list", "--status", "waiting", "--store", postgres)
    assert run_id in out
    code, out, _ = cli(capsys, "runs", "respond", run_id, "approve", "--value", "5", "--store", url)
    assert code == 0
    assert f"go on with twinklr-pipeline runs resume {run_id} --store {url}" in out
    code, out, _ = cli(capsys, "runs", "resume", run_id, "--store", url)
    assert code == 0, out
    assert f"pipeline gated, run {run_id}: succeeded" in out
    assert re.search(r"^a\s+cached", out, re.MULTILINE)  # from the shared cache
    code, out, _ = cli(capsys, "cache", "stats", "--cache", url, "--pipeline", "gated")
    assert code == 0
    assert out.startswith("2 entries, ")  # (a, and b after the answer)


def test_a_server_that_cannot_be_reached_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://app:s3cret@/shows?host={tmp_path}&port=5999"
    for args in (("runs", "list", "--store", url), ("cache", "stats", "--cache", url)):
        code, out, err = cli(capsys, *args)
        assert code == 2
        assert err.startswith(
            "twinklr-pipeline: cannot reach PostgreSQL at postgresql://app@/shows"
        )
        assert "s3cret" not in out + err
