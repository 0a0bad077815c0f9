"""``twinklr-pipeline cache list|stats|clear|prune``: the entries of a cache."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Sequence
from typing import Any

import trio

from .._base._database import DEFAULT_DIRECTORY
from .._cache._postgres import PostgresCacheStore
from .._cache._sqlite import SQLiteCacheStore
from ._common import EXIT_OK, UsageError, file_of, open_cache, parse_age, parse_size


def add_cache_command(commands: Any, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    cache = commands.add_parser(
        "cache", parents=[common], help="list, count, clear or prune cached entries"
    )
    cache.add_argument(
        "action", choices=["list", "stats", "clear", "prune"], help="what to do with the entries"
    )
    cache.add_argument(
        "--cache",
        default=DEFAULT_DIRECTORY,
        help="the cache directory or file, or a postgresql:// URL",
    )
    cache.add_argument("--pipeline", help="only this pipeline's entries (list, stats, clear)")
    cache.add_argument("--stage", help="only this stage's entries (clear)")
    cache.add_argument(
        "--max-bytes",
        type=parse_size,
        metavar="N",
        help="prune: evict the least recently used entries beyond N bytes (500M, 2G: K, M, G"
        " are powers of 1024)",
    )
    cache.add_argument(
        "--older-than",
        type=parse_age,
        metavar="AGE",
        help="prune: remove entries not used for AGE (30s, 15m, 12h, 7d, 2w)",
    )
    cache.set_defaults(handler=cmd_cache)


def cmd_cache(args: argparse.Namespace) -> int:
    store = open_cache(args.cache)

    async def act() -> int:
        try:
            return await acted()
        finally:
            await store.aclose()

    async def acted() -> int:
        if args.action == "clear":
            await _check_known(store, args.pipeline, args.stage)
            removed = await store.clear(args.pipeline, stage=args.stage)
            print(f"removed {removed} entries from {store.location}")
            return EXIT_OK
        if args.action == "prune":
            removed = await store.prune(max_bytes=args.max_bytes, older_than=args.older_than)
            left = await store.entries()
            size = sum(entry.size for entry in left)
            print(f"removed {removed} entries from {store.location}")
            print(f"{len(left)} entries, {size} bytes left")
            return EXIT_OK
        entries = await store.entries(args.pipeline)
        if args.action == "stats":
            size = sum(entry.size for entry in entries)
            pipelines = sorted({entry.pipeline for entry in entries})
            print(f"{len(entries)} entries, {size} bytes, pipelines: {', '.join(pipelines) or '-'}")
            for pipeline in pipelines:
                own = [entry for entry in entries if entry.pipeline == pipeline]
                print(f"  {pipeline}: {len(own)} entries, {sum(e.size for e in own)} bytes")
            return EXIT_OK
        for entry in entries:
            item = "" if entry.item is None else f"[{entry.item}]"
            print(
                f"{entry.pipeline:<24}{entry.stage + item:<24}{entry.size:>10} B  {entry.key[:12]}"
            )
        return EXIT_OK

    path = file_of(store)
    if path is not None and not path.exists():
        msg = f"no cache at {path}"
        raise UsageError(msg)
    try:
        return trio.run(act)
    except sqlite3.DatabaseError as exc:
        msg = f"{store.location} is not a twinklr cache: {exc}"
        raise UsageError(msg) from exc
    except (ConnectionError, TimeoutError) as exc:  # a server's cache
        raise UsageError(str(exc)) from exc


async def _check_known(
    store: SQLiteCacheStore | PostgresCacheStore, pipeline: str | None, stage: str | None
) -> None:
    """Refuse a ``--pipeline`` or ``--stage`` the cache has no entry of, listing those it
    has (a typo would otherwise clear nothing, silently)."""
    if pipeline is None and stage is None:
        return
    entries = await store.entries()
    pipelines = sorted({entry.pipeline for entry in entries})
    if pipeline is not None and pipeline not in pipelines:
        msg = f"--pipeline {pipeline!r}: the cache has none; it has {_listed(pipelines)}"
        raise UsageError(msg)
    stages = sorted({e.stage for e in entries if pipeline is None or e.pipeline == pipeline})
    if stage is not None and stage not in stages:
        msg = f"--stage {stage!r}: the cache has none; it has {_listed(stages)}"
        raise UsageError(msg)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "no entries"
