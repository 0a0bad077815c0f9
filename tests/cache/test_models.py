"""pydantic models in the cache: JSON mode only where it gives the model back exactly,
field by field through the codec otherwise; validators run on load, set fields kept."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import zoneinfo
from typing import Any, Literal

import numpy as np
import pydantic

from conftest import cache_warnings
from twinklr.core.pipeline import (
    CacheStore,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from twinklr.core.pipeline._cache._codec import Blob, decode, encode
from twinklr.core.pipeline._cache._models import json_exact

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


@dataclasses.dataclass
class Cue:
    at: dt.time


class Plain(pydantic.BaseModel):
    name: str
    levels: list[float] = []
    mode: Literal["calm", "wild"] = "calm"
    nested: Plain | None = None


class Timed(pydantic.BaseModel):
    at: dt.datetime


class Loose(pydantic.BaseModel):
    extra: dict[str, Any] = {}


class WithCue(pydantic.BaseModel):
    cue: Cue


def test_json_mode_only_for_models_whose_json_keeps_every_value() -> None:
    assert json_exact(Plain)  # (a model that holds itself too)
    assert not json_exact(Timed)  # a zoned datetime would come back at an offset
    assert not json_exact(Loose)  # Any may hold one
    assert not json_exact(WithCue)  # through a dataclass's fields too


def test_a_zoned_datetime_in_a_model_keeps_its_zone() -> None:
    value = Timed(at=dt.datetime(2026, 3, 28, 20, tzinfo=BERLIN))
    blobs: list[Blob] = []
    data = encode(value, blobs)
    back = decode(json.loads(json.dumps(data)), blobs)
    assert back.at.tzinfo is BERLIN
    assert (back.at + dt.timedelta(days=1)).isoformat() == "2026-03-29T20:00:00+02:00"
    plain = Plain(name="roof", levels=[0.5])
    assert "json" in encode(plain, [])  # the fast path where it is exact


async def test_a_model_class_defined_in_a_function_is_kept_through_its_declared_type(
    store: CacheStore,
) -> None:
    class Analysis(pydantic.BaseModel):  # not found by name: read back as the declared type
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

        spectrum: np.ndarray
        at: dt.datetime
        label: str = "bass"

    calls: list[str] = []

    async def analyse(song: str) -> Analysis:
        calls.append(song)
        return Analysis(spectrum=np.arange(3.0), at=dt.datetime(2026, 3, 28, 20, tzinfo=BERLIN))

    pipeline = PipelineDefinition(
        "local", [StageDefinition("analyse", analyse, output_type=Analysis)]
    )
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, "carol")
    again = await executor.execute(pipeline, "carol")
    assert (calls, again.cached_stages) == (["carol"], ("analyse",))
    found = again.outputs["analyse"]
    assert type(found) is Analysis
    assert np.array_equal(found.spectrum, np.arange(3.0))
    assert found.at.tzinfo is BERLIN
    assert found.model_fields_set == {"spectrum", "at"}


async def test_a_local_dataclass_is_kept_through_its_declared_type_only_when_exact(
    store: CacheStore,
) -> None:
    @dataclasses.dataclass
    class Slot:
        at: dt.datetime

    async def book(day: int) -> Slot:
        return Slot(dt.datetime(2026, 3, day, 20, tzinfo=BERLIN))

    pipeline = PipelineDefinition("slots", [StageDefinition("book", book, output_type=Slot)])
    with cache_warnings() as said:  # cattrs would turn the zone into an offset: not cached
        result = await PipelineExecutor(cache=store).execute(pipeline, 28)
    assert result.uncached_stages == ("book",)
    assert "does not come back equal" in said[0]
