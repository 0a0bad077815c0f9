"""Stores named by URL: ``postgresql://`` builds the shared PostgreSQL stores; a plain
path is still refused with the call that makes a store there."""

from __future__ import annotations

import pytest

from fixtures.postgres import postgres
from twinklr.core.pipeline import (
    PipelineDefinition,
    PipelineExecutor,
    PostgresCacheStore,
    PostgresRunStore,
    StageDefinition,
)
from twinklr.core.pipeline._engine._stores import is_postgres_url

__all__ = ["postgres"]  # (the fixture)


async def double(value: int) -> int:
    return value * 2


def test_only_a_postgres_url_names_a_shared_store() -> None:
    assert is_postgres_url("postgresql://app@db/shows")
    assert is_postgres_url("postgres://app@db/shows")
    assert not is_postgres_url("postgresql.db")
    assert not is_postgres_url(7)


async def test_an_executor_given_urls_caches_and_records_in_postgres(postgres: str) -> None:
    pytest.importorskip("psycopg")
    url = postgres.replace("postgresql://", "postgres://")  # (either scheme)
    executor = PipelineExecutor(cache=url, runs=postgres)
    assert isinstance(executor.cache, PostgresCacheStore)
    assert isinstance(executor.runs, PostgresRunStore)
    pipeline = PipelineDefinition("urls", [StageDefinition("double", double)])
    first = await executor.execute(pipeline, 21)
    again = await PipelineExecutor(cache=postgres, runs=postgres).execute(pipeline, 21)
    assert (first.outputs["double"], again.outputs["double"]) == (42, 42)
    assert again.cached_stages == ("double",)
    record = executor.runs.get(first.run_id)
    assert record is not None
    assert record.status == "succeeded"


def test_a_plain_path_is_still_refused_with_the_call_to_make() -> None:
    with pytest.raises(TypeError, match=r"cache=SQLiteCacheStore\('cache-dir'\)"):
        PipelineExecutor(cache="cache-dir")
    with pytest.raises(TypeError, match=r"runs=RunStore\('runs-dir'\)"):
        PipelineExecutor(runs="runs-dir")
