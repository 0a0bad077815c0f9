"""JSON with cattrs: canonical fingerprints, typed round trips, never pickle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
import subprocess
import sys
import zoneinfo
from collections.abc import AsyncIterator
from typing import Any

import attrs
import numpy as np
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinklr.core.pipeline import (
    CacheStore,
    PipelineContext,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
    StageResult,
)
from twinklr.core.pipeline._cache._serialize import (
    NotSerializableError,
    check_round_trip,
    declared_output_type,
    fingerprint,
    from_json,
    tagged_round_trip,
    to_json,
)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: float


@attrs.frozen
class Scene:
    name: str
    color: Color
    at: dt.datetime
    points: tuple[Point, ...]
    tags: frozenset[str]
    extra: dict[str, list[int]]


SCENE = Scene(
    name="roof",
    color=Color.RED,
    at=dt.datetime(2026, 12, 24, 18, 30, tzinfo=dt.UTC),
    points=(Point(1, 2.5), Point(3, 4.0)),
    tags=frozenset({"b", "a"}),
    extra={"k": [1, 2]},
)


def test_typed_values_come_back_equal() -> None:
    data = check_round_trip(SCENE, Scene)
    assert data["tags"] == ["a", "b"]
    assert from_json(to_json(SCENE), Scene) == SCENE


def test_without_a_type_only_plain_json_values_are_accepted() -> None:
    assert check_round_trip({"a": [1, "x", None, True]}, Any) == {"a": [1, "x", None, True]}
    with pytest.raises(NotSerializableError, match="does not come back equal"):
        check_round_trip(SCENE, Any)
    with pytest.raises(NotSerializableError, match="does not come back equal"):
        check_round_trip((1, 2), Any)  # a tuple would come back a list


@pytest.mark.parametrize("value", [object(), float("nan"), {1: 2, "a": 3}, {1, 2j}])
def test_what_json_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(NotSerializableError):
        to_json(value)


def test_fingerprints_of_sets_are_the_same_in_every_process() -> None:
    # str hashing (so set order) differs between processes: fingerprints must not.
    code = (
        "from twinklr.core.pipeline._cache._serialize import fingerprint;"
        "print(fingerprint({'tags': {'roof', 'tree', 'arch', 'yard', 'window', 'matrix'}}))"
    )
    prints = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in range(4)
    }
    assert len(prints) == 1


@given(st.sets(st.text()))
def test_a_set_and_a_frozenset_of_the_same_members_agree(words: set[str]) -> None:
    assert fingerprint(words) == fingerprint(frozenset(words))


def test_fingerprints_tell_values_apart() -> None:
    assert fingerprint([1, 2]) != fingerprint([2, 1])
    assert fingerprint({"a": 1}) == fingerprint({"a": 1})
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert len(fingerprint(SCENE)) == 64


def test_values_that_are_not_equal_never_share_a_fingerprint() -> None:
    @attrs.frozen
    class Left:
        x: int

    @attrs.frozen
    class Right:
        x: int

    different = [
        ((1, 2), [1, 2]),  # a tuple and a list
        ({1: "x"}, {"1": "x"}),  # int and str keys
        (["tuple", [1]], (1,)),  # a list that looks like a tagged tuple
        (Left(1), Right(1)),  # two classes with the same fields
        (Left(1), {"x": 1}),
        (1, "1"),
        (None, "None"),
        (float("nan"), "nan"),
        (float("inf"), float("-inf")),
    ]
    for one, other in different:
        assert fingerprint(one) != fingerprint(other), (one, other)
    assert fingerprint(float("nan")) == fingerprint(float("nan"))
    assert fingerprint({1, 2}) == fingerprint(frozenset({2, 1}))  # equal values


def test_what_cannot_be_fingerprinted_says_so() -> None:
    deep: list[Any] = []
    for _ in range(5000):
        deep = [deep]
    loop: list[Any] = []
    loop.append(loop)
    for value in (deep, loop):
        with pytest.raises(NotSerializableError, match=r"too deeply \(or holding itself\) to fing"):
            fingerprint(value)
    with pytest.raises(NotSerializableError, match="has no fingerprint"):
        fingerprint(object())


def test_stored_data_is_only_data() -> None:
    # A pickle-looking payload is just a string to JSON: nothing is imported or run.
    evil = "\"cos\\nsystem\\n(S'echo pwned'\\ntR.\""
    assert from_json(evil, Any) == "cos\nsystem\n(S'echo pwned'\ntR."
    with pytest.raises(NotSerializableError):
        from_json('{"name": 1}', Scene)


class Typed:
    name = "typed"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[Scene]:
        raise NotImplementedError


class Streams:
    name = "streams"

    async def execute(self, input: Any, context: PipelineContext) -> AsyncIterator[Point]:
        yield Point(1, 2)


class Untyped:
    name = "untyped"

    async def execute(self, input, context):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
        return StageResult.success(1)


class Unresolvable:
    name = "unresolvable"

    async def execute(self, input: Any, context: PipelineContext) -> StageResult[NoSuchType]:  # type: ignore[name-defined]  # noqa: F821
        raise NotImplementedError


def test_the_output_type_comes_from_the_return_annotation() -> None:
    assert declared_output_type(Typed()) is Scene
    assert declared_output_type(Streams()) == list[Point]
    assert declared_output_type(Untyped()) is Any
    assert declared_output_type(Unresolvable()) is Any
    assert declared_output_type(object()) is Any


@attrs.define(eq=False)
class NoEquality:
    x: int


@dataclasses.dataclass
class Doubling:
    count: int

    def __post_init__(self) -> None:
        self.count *= 2  # rebuilt from its stored fields, it is not the same value


@dataclasses.dataclass
class Counted:
    name: str
    count: int = dataclasses.field(init=False, default=0)


def test_a_value_without_a_declared_type_must_come_back_equal() -> None:
    with pytest.raises(NotSerializableError, match="does not come back equal"):
        tagged_round_trip(Doubling(1), [])
    back = from_tagged(tagged_round_trip(NoEquality(1), []))  # compared by identity: the
    assert (type(back), back.x) == (NoEquality, 1)  # same fields are what can come back
    with pytest.raises(NotSerializableError, match="cannot be stored without a declared type"):
        tagged_round_trip(object(), [])
    counted = Counted("a")
    counted.count = 3
    assert from_tagged(tagged_round_trip(counted, [])) == counted  # an init=False field too


def from_tagged(data: Any) -> Any:
    from twinklr.core.pipeline._cache._codec import decode  # noqa: PLC0415

    return decode(data, [])


async def test_numpy_and_pydantic_outputs_are_inputs_the_cache_can_key(
    store: CacheStore,
) -> None:
    import numpy as np  # noqa: PLC0415 (this test's own libraries)
    import pydantic  # noqa: PLC0415

    class Features(pydantic.BaseModel):
        peak: float

    calls: list[str] = []

    async def analyse(song: str) -> np.ndarray:
        calls.append("analyse")
        return np.linspace(0, 1, 200_000)  # 1.6 MB: a file beside the SQLite database

    async def features(samples: np.ndarray) -> Features:
        calls.append("features")
        return Features(peak=float(samples.max()))

    async def plan(found: Features) -> str:
        calls.append("plan")
        return f"peak {found.peak}"

    pipeline = PipelineDefinition(
        "typed",
        [
            StageDefinition("analyse", analyse),
            # A class defined in a function: its annotation cannot be resolved here (and
            # the class cannot be found by name), so the type is declared; it is then
            # read back through pydantic's JSON mode as that class.
            StageDefinition("features", features, inputs=["analyse"], output_type=Features),
            StageDefinition("plan", plan, inputs=["features"]),
        ],
    )
    executor = PipelineExecutor(cache=store)
    await executor.execute(pipeline, "carol")
    again = await executor.execute(pipeline, "carol")
    assert again.cached_stages == ("analyse", "features", "plan")
    assert calls == ["analyse", "features", "plan"]
    assert again.outputs["plan"] == "peak 1.0"
    assert type(again.outputs["features"]) is Features
    assert np.array_equal(again.outputs["analyse"], np.linspace(0, 1, 200_000))


def test_fingerprints_see_zones_set_fields_and_numpy_fields() -> None:
    berlin = dt.datetime(2026, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
    paris = berlin.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert berlin == paris  # one instant, two zones that may part: two fingerprints
    assert fingerprint(berlin) != fingerprint(paris)
    assert fingerprint(berlin) == fingerprint(berlin.replace())

    class Light(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
        level: float = 1.0
        curve: np.ndarray | None = None

    # Equal models that differ in what was set: exclude_unset downstream tells them apart.
    assert Light() == Light(level=1.0)
    assert fingerprint(Light()) != fingerprint(Light(level=1.0))
    with_curve = Light(curve=np.arange(3.0))
    assert fingerprint(with_curve) == fingerprint(Light(curve=np.arange(3.0)))
    assert fingerprint(with_curve) != fingerprint(Light(curve=np.arange(4.0)))


class Band(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    samples: np.ndarray
    at: dt.datetime
    label: str = "bass"


async def test_a_model_with_a_numpy_field_and_a_zoned_time_is_cached_exactly(
    store: CacheStore,
) -> None:
    calls: list[str] = []
    zone = zoneinfo.ZoneInfo("America/New_York")

    async def analyse(song: str) -> Band:
        calls.append(song)
        return Band(samples=np.arange(4.0), at=dt.datetime(2026, 3, 7, 20, tzinfo=zone))

    async def level(band: Band) -> dict[str, Any]:
        return band.model_dump(exclude_unset=True, exclude={"samples"})

    pipeline = PipelineDefinition(
        "bands",
        [StageDefinition("analyse", analyse), StageDefinition("level", level, inputs=["analyse"])],
    )
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(pipeline, "carol")
    again = await executor.execute(pipeline, "carol")
    assert calls == ["carol"]
    assert again.cached_stages == ("analyse", "level")
    band = again.outputs["analyse"]
    assert type(band) is Band
    assert np.array_equal(band.samples, np.arange(4.0))
    assert band.at.tzinfo is zone
    assert band.model_fields_set == {"samples", "at"}
    assert again.outputs["level"] == first.outputs["level"] == {"at": band.at}


def test_fingerprints_look_inside_dataclasses_and_models_field_by_field() -> None:
    @dataclasses.dataclass
    class Slot:
        at: dt.datetime
        span: Any

    berlin = dt.datetime(2026, 1, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
    paris = berlin.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    assert Slot(berlin, (1, 2)) == Slot(paris, (1, 2))  # equal, yet not the same input
    assert fingerprint(Slot(berlin, (1, 2))) != fingerprint(Slot(paris, (1, 2)))
    assert fingerprint(Slot(berlin, (1, 2))) != fingerprint(Slot(berlin, [1, 2]))
    assert fingerprint(Slot(berlin, (1, 2))) == fingerprint(Slot(berlin, (1, 2)))

    class Meeting(pydantic.BaseModel):
        at: dt.datetime

    assert fingerprint(Meeting(at=berlin)) != fingerprint(Meeting(at=paris))
