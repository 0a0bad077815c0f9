"""twinklr-pipeline cache."""

from __future__ import annotations

from pathlib import Path

from fixtures.commands import (
    GOOD,
    in_tests_dir,  # noqa: F401 (the module's autouse fixture)
    installed,
    one_line_usage_error,
)


def test_a_cache_that_is_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.db").write_text("my shopping list" * 100)
    for action in ("list", "stats", "clear", "prune"):
        done = installed("cache", action, "--cache", str(tmp_path / "notes.db"), cwd=tmp_path)
        one_line_usage_error(done, "notes.db is not a twinklr cache")


def test_unknown_ids_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    one_line_usage_error(
        installed("demo", "--fail-at", "nosuch", cwd=tmp_path),
        "--fail-at 'nosuch': no such stage; the demo's stages are audio, ",
    )
    one_line_usage_error(
        installed("demo", "--fail-at", "groups:99", cwd=tmp_path), "groups has items 0 to 5"
    )
    one_line_usage_error(
        installed("demo", "--fail-at", "audio:1", cwd=tmp_path),
        "audio has no items (fan-out stages: groups)",
    )
    (tmp_path / "good.py").write_text(GOOD)
    cache = str(tmp_path / "cache")
    assert installed("run", "good:pipeline", "--cache", cache, cwd=tmp_path).returncode == 0
    one_line_usage_error(
        installed("cache", "clear", "--cache", cache, "--stage", "dubble", cwd=tmp_path),
        "--stage 'dubble': the cache has none; it has double",
    )
    one_line_usage_error(
        installed("cache", "clear", "--cache", cache, "--pipeline", "god", cwd=tmp_path),
        "--pipeline 'god': the cache has none; it has good",
    )
    cleared = installed("cache", "clear", "--cache", cache, "--stage", "double", cwd=tmp_path)
    assert "removed 1 entries" in cleared.stdout
