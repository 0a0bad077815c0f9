"""Stage outputs as plain JSON: readable by people and other programs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import pathlib
import uuid

import attrs
import numpy as np
import pydantic

from twinklr.core.pipeline._cache._export import to_plain


class Mood(enum.Enum):
    WILD = "wild"


@attrs.frozen
class Cue:
    at: float
    names: tuple[str, ...]


@dataclasses.dataclass
class Scene:
    title: str
    cues: list[Cue]


class Plan(pydantic.BaseModel):
    group: str
    at: dt.date


def test_every_kind_a_stage_returns_becomes_plain_json() -> None:
    value = {
        "array": np.arange(6, dtype=np.int16).reshape(2, 3),
        "scalar": np.float64(2.5),
        "model": Plan(group="roof", at=dt.date(2026, 12, 2)),
        "scene": Scene("intro", [Cue(0.5, ("a", "b"))]),
        "mood": Mood.WILD,
        "when": dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.UTC),
        "length": dt.timedelta(minutes=2),
        "raw": b"\x00\xff",
        "path": pathlib.PurePosixPath("/songs/carol.wav"),
        "id": uuid.UUID(int=1),
        "price": decimal.Decimal("2.50"),
        "odd": [float("nan"), float("inf"), -float("inf")],
        "tags": {"b", "a"},
        "by_number": {1: "one"},
        "thing": object,
    }
    plain = to_plain(value)
    assert json.loads(json.dumps(plain, allow_nan=False)) == plain  # strict JSON
    assert plain == {
        "array": [[0, 1, 2], [3, 4, 5]],
        "scalar": 2.5,
        "model": {"group": "roof", "at": "2026-12-02"},
        "scene": {"title": "intro", "cues": [{"at": 0.5, "names": ["a", "b"]}]},
        "mood": "wild",
        "when": "2026-12-02T08:30:00+00:00",
        "length": 120.0,
        "raw": "AP8=",
        "path": "/songs/carol.wav",
        "id": "00000000-0000-0000-0000-000000000001",
        "price": "2.50",
        "odd": ["NaN", "Infinity", "-Infinity"],
        "tags": ["a", "b"],
        "by_number": {"1": "one"},
        "thing": "<class 'object'>",
    }
