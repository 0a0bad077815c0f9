"""``twinklr-pipeline runs``: list, show and prune the runs a run store recorded."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from .._base._database import DEFAULT_DIRECTORY
from .._observe._contract import RunStoreProtocol
from .._observe._reading import parse_limit
from .._observe._records import RUN_STATES, RecordedStage, run_json
from ._common import UsageError, file_of, open_runs, parse_age, store_hint, store_place
from ._resume import add_resume_options

STATUSES = RUN_STATES
RUN_ID_HELP = "the run's id (a unique prefix of 4+ characters will do)"


def add_runs_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """``runs list|show|prune|respond|resume`` on the command line."""
    runs = commands.add_parser(
        "runs", parents=[common], help="list, show or prune the recorded runs"
    )
    actions = runs.add_subparsers(dest="action", required=True, help="what to do with them")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store",
        default=DEFAULT_DIRECTORY,
        metavar="DIR|URL",
        help=f"the run store: a directory or its file, or a postgresql:// URL (default"
        f" {DEFAULT_DIRECTORY})",
    )
    listing = actions.add_parser("list", parents=[common, store], help="the runs, newest first")
    listing.add_argument("--pipeline", help="only this pipeline's runs")
    listing.add_argument("--status", choices=STATUSES, help="only runs that ended so")
    listing.add_argument("--limit", type=_limit, default=50, help="at most N (default 50)")
    listing.add_argument("--json", action="store_true", help="a JSON list")
    show = actions.add_parser(
        "show", parents=[common, store], help="one run: its stages, errors included"
    )
    show.add_argument(
        "run_id",
        metavar="RUN_ID",
        help=RUN_ID_HELP,
    )
    show.add_argument("--json", action="store_true", help="the run and its stages as JSON")
    prune = actions.add_parser("prune", parents=[common, store], help="forget old runs")
    prune.add_argument(
        "--older-than",
        type=parse_age,
        default=30 * 86400.0,
        metavar="AGE",
        help="forget runs that ended more than AGE ago (30s, 15m, 12h, 7d, 2w; default 30d)",
    )
    respond = actions.add_parser(
        "respond",
        parents=[common, store],
        help="answer a running or suspended run's gate (WaitForInput)",
    )
    respond.add_argument(
        "run_id",
        metavar="RUN_ID",
        help=RUN_ID_HELP,
    )
    respond.add_argument("stage", metavar="STAGE", help="the gate's stage id")
    answer = respond.add_mutually_exclusive_group(required=True)
    answer.add_argument(
        "--approve",
        action="store_true",
        help="answer with the gate's input as it is (what 'runs show' lists)",
    )
    answer.add_argument("--reject", action="store_true", help="answer None (null)")
    answer.add_argument(
        "--value",
        metavar="JSON",
        help="the answer, as JSON: the gate's output ('true', '\"yes\"', '{\"lights\": 4}')",
    )
    resume: argparse.ArgumentParser = actions.add_parser(
        "resume",
        parents=[common, store],
        help="go on with a run suspended waiting for input (run --suspend)",
    )
    resume.add_argument(
        "run_id",
        metavar="RUN_ID",
        help=RUN_ID_HELP,
    )
    add_resume_options(resume)
    runs.set_defaults(handler=cmd_runs)


def _limit(text: str) -> int:
    try:
        return parse_limit(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_runs(args: argparse.Namespace) -> int:
    """List, show or prune the runs of ``--store``."""
    store = open_runs(args.store)
    try:
        if args.action == "respond":
            return _respond(store, args)
        if args.action == "prune":
            removed = store.prune(older_than=args.older_than)
            print(f"removed {removed} runs from {store.location}")
            return 0
        path = file_of(store)
        if path is not None and not path.exists():
            missing = f"nothing is recorded at {path}"
            msg = f"no run {args.run_id!r}: {missing}" if args.action == "show" else missing
            raise UsageError(msg)
        if args.action == "list":
            return _list(store, args)
        try:
            return _show(store, args)
        except ValueError as exc:  # a row another program wrote over, or a cut file
            msg = f"run {args.run_id} at {store.location} is damaged: {exc}"
            raise UsageError(msg) from exc
    except sqlite3.DatabaseError as exc:
        msg = f"{store.location} is not a twinklr run store: {exc}"
        raise UsageError(msg) from exc
    except (ConnectionError, TimeoutError) as exc:  # a server's store
        raise UsageError(str(exc)) from exc
    finally:
        store.close()


def _respond(store: RunStoreProtocol, args: argparse.Namespace) -> int:
    value = None
    if args.value is not None:
        try:
            value = json.loads(args.value)
        except ValueError as exc:
            msg = f"--value must be JSON, not {args.value!r} ({exc})"
            raise UsageError(msg) from exc
    try:
        if args.approve:  # the gate's input as it is
            value = store.recorded_input(args.run_id, args.stage)
        run_id = store.respond(args.run_id, args.stage, value)
    except (LookupError, ValueError) as exc:  # no such gate, or not of its answer type
        raise UsageError(str(exc.args[0])) from exc
    record = store.get(run_id)
    if record is not None and record.status == "waiting":
        print(
            f"answered {args.stage} of run {run_id}: it is suspended, go on with "
            f"twinklr-pipeline runs resume {run_id} --store {store_place(store)}"
        )
    else:
        print(f"answered {args.stage} of run {run_id}: the run takes it with its next batch")
    return 0


def _list(store: RunStoreProtocol, args: argparse.Namespace) -> int:
    records = store.runs(pipeline=args.pipeline, status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([record.as_json() for record in records], indent=2))
        return 0
    if not records:
        print(f"no runs recorded at {store.location}" + _filters(args))
        return 0
    rows = [
        (
            record.run_id,
            record.pipeline,
            record.status,
            record.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
            _duration(record.duration_ms),
            str(record.stage_count),
            _short(record.error or "", 60),
        )
        for record in records
    ]
    _table(("RUN ID", "PIPELINE", "STATUS", "STARTED", "TOOK", "STAGES", "ERROR"), rows)
    return 0


def _filters(args: argparse.Namespace) -> str:
    parts = [
        f"--{name} {value}" for name in ("pipeline", "status") if (value := getattr(args, name))
    ]
    return f" matching {' '.join(parts)}" if parts else ""


def _show(store: RunStoreProtocol, args: argparse.Namespace) -> int:
    record = store.get(args.run_id)
    if record is None:
        msg = f"no run {args.run_id!r} at {store.location} (twinklr-pipeline runs list shows them)"
        raise UsageError(msg)
    stages = store.stages(record.run_id)
    waiting = store.waiting(record.run_id)
    segments = store.segments(record.run_id)
    if args.json:
        shown = {**run_json(record, stages), "waiting": waiting, "segments": segments}
        print(json.dumps(shown, indent=2))
        return 0
    print(f"run {record.run_id}  {record.pipeline}  {record.status.upper()}")
    started = record.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    print(f"started {started}, took {_duration(record.duration_ms)}, {record.stage_count} stages")
    print(f"definition {record.definition}, input {record.input_fingerprint or '-'}")
    if record.error:
        print(f"error: {record.error}")
    for number, segment in enumerate(segments, start=1):
        ran = ", ".join(stage["id"] for stage in segment["stages"]) or "nothing"
        print(f"part {number}: started {segment['started_at']}, {segment['status']}; ran {ran}")
        for gate in segment["waiting"]:
            answered = segment["answers"].get(gate["stage_id"])
            print(
                f"  {gate['stage_id']} waited for input from {gate['since']}"
                + (f", answered {answered}" if answered else "")
            )
    if segments:
        print(f"part {len(segments) + 1}: resumed, below")
    for gate in waiting:
        _show_gate(record.run_id, gate, store)
    if record.status == "waiting":
        print(f"suspended: go on with twinklr-pipeline runs resume {record.run_id}")
    print()
    _table(
        ("STAGE", "STATUS", "QUEUED", "STARTED", "FINISHED", "TOOK", "ATTEMPTS", "NOTE"),
        [_stage_row(stage) for stage in stages],
    )
    for stage in stages:
        if stage.error or stage.attempt_errors:
            print(f"\n== {stage.id}: {stage.status}")
            for number, error in enumerate(stage.attempt_errors, start=1):
                print(f"attempt {number}: {error}")
            if stage.error:
                print(f"error: {stage.error}")
            if stage.traceback:
                print(stage.traceback.rstrip())
    return 0


#: How much of a gate's input ``runs show`` prints (``--json`` has all of it).
SHOWN_INPUT_CHARS = 400


def _show_gate(run_id: str, gate: dict[str, Any], store: RunStoreProtocol) -> None:
    """A waiting gate: its prompt, its input (cut), what its answer must be, how to
    answer it."""
    stage_id = gate["stage_id"]
    print(f"waiting for input: {stage_id}: {gate['prompt']} (since {gate['since']})")
    shown = json.dumps(gate.get("input"), ensure_ascii=False)
    whole = gate.get("input_chars", len(shown))
    if len(shown) > SHOWN_INPUT_CHARS or gate.get("input_cut"):
        shown = f"{shown[:SHOWN_INPUT_CHARS]}… ({whole} characters: --json shows it whole)"
    print(f"  input: {shown}")
    if "answer_type" in gate:
        print(f"  the answer must be a {gate['answer_type']}")
    if "refused" in gate:
        print(f"  refused: {gate['refused']}")
    where = store_hint(store)
    print(
        f"  answer: twinklr-pipeline runs respond {run_id} {stage_id}{where} "
        "--approve | --reject | --value JSON"
    )


def _stage_row(stage: RecordedStage) -> tuple[str, ...]:
    notes = []
    if stage.items_total is not None:
        done = sum(item.status.value not in ("failed", "cancelled") for item in stage.items)
        notes.append(f"items {done}/{stage.items_total}")
    if stage.error:
        notes.append(_short(stage.error, 50))
    return (
        stage.id,
        stage.status,
        _ms(stage.queued_ms),
        _ms(stage.started_ms),
        _ms(stage.finished_ms),
        _duration(stage.duration_ms),
        str(stage.attempts or "-"),
        "; ".join(notes),
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:  # noqa: PLR2004
        return f"{ms:.1f}ms"
    return f"{ms / 1000:.2f}s"


def _short(text: str, width: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
