"""A run's cache notices: one `CacheWarning` per stage and per problem, said when the
run ends (so ``-W error`` raises from ``execute`` once everything is saved)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import structlog

from conftest import cache_warnings
from twinklr.core.pipeline import (
    CacheStore,
    CacheWarning,
    MemoryCacheStore,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from twinklr.core.pipeline._cache._notices import Notices


def test_each_stage_and_each_problem_is_said_once_when_told() -> None:
    notices = Notices("show", structlog.get_logger())
    for _ in range(3):
        notices.stage_uncached("plan", "cache_output_not_serializable", "output: why")
        notices.problem("cache_unreadable", "the cache could not be read")
    notices.mark_uncached(["plan", "render"])
    assert notices.uncached["render"] is None  # said by a problem of the run's
    with cache_warnings() as said:
        notices.tell()
        notices.tell()
    assert said == [
        "pipeline 'show': the cache could not be read",
        (
            "stage 'plan' of pipeline 'show' was not cached: output: why. It ran as usual; "
            "set cache=False on the stage to run it uncached without this warning"
        ),
    ]


class Spectrum:
    """A value the cache cannot store (no value equality, no fields it knows)."""


async def test_the_warning_names_the_part_of_the_output_that_cannot_be_stored(
    store: CacheStore,
) -> None:
    import numpy as np  # noqa: PLC0415 (this test's own library)

    async def analyse(song: str) -> dict[str, Any]:
        return {"tempo": 120, "spectrum": np.array([Spectrum()], dtype=object)}

    pipeline = PipelineDefinition(
        "audio",
        [
            StageDefinition("analyse", analyse),
            StageDefinition("opted_out", analyse, cache=False),  # never warned, never listed
        ],
    )
    with cache_warnings() as said:
        result = await PipelineExecutor(cache=store).execute(pipeline, "carol")
    assert result.success
    assert result.uncached_stages == ("analyse",)
    (text,) = said
    assert text.startswith(
        "stage 'analyse' of pipeline 'audio' was not cached: output['spectrum']: a numpy "
        "object value cannot be stored without pickle; as the declared dict[str, typing.Any]"
    )
    assert text.endswith(
        "It ran as usual; return a supported type, or set cache=False on the stage to run it "
        "uncached without this warning"
    )


async def test_under_w_error_the_run_raises_after_saving_what_it_could() -> None:
    async def opaque(_value: int) -> Spectrum:
        return Spectrum()

    async def plain(value: int) -> int:
        return value + 1

    store = MemoryCacheStore()
    pipeline = PipelineDefinition(
        "p", [StageDefinition("opaque", opaque), StageDefinition("plain", plain)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        with pytest.raises(CacheWarning, match="stage 'opaque' of pipeline 'p' was not cached"):
            await PipelineExecutor(cache=store).execute(pipeline, 1)
    assert [entry.stage for entry in await store.entries()] == ["plain"]
