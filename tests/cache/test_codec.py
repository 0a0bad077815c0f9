"""Values stored without a declared type come back as the same type and an equal value;
reading a payload never imports or runs anything."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import pathlib
import subprocess
import sys
import textwrap
import uuid
import zoneinfo
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pydantic
import pytest

from twinklr.core.pipeline._cache._codec import Blob, CodecError, decode
from twinklr.core.pipeline._cache._codec import encode as encode_into
from twinklr.core.pipeline._cache._payload import MAGIC, pack, unpack


class Mood(enum.Enum):
    CALM = "calm"
    WILD = "wild"


class Level(enum.IntEnum):
    LOW = 1


@attrs.frozen
class Cue:
    at: float
    names: tuple[str, ...]
    _secret: int = attrs.field(default=0, alias="secret")
    derived: int = attrs.field(init=False, default=7)


@dataclasses.dataclass(frozen=True)
class Scene:
    title: str
    cues: list[Cue]
    mood: Mood = Mood.CALM


VALUES: list[Any] = [
    None,
    True,
    3,
    "text",
    1.5,
    float("inf"),
    float("-inf"),
    [1, "a", None],
    (1, (2, "b")),
    {3, 1, 2},
    frozenset({"x", "y"}),
    {"a": 1, "$": "not a tag"},
    {1: "int key", (1, 2): "tuple key", "s": "str key"},
    b"\x00\xffbytes",
    pathlib.Path("/srv/show/file.txt"),
    pathlib.PurePosixPath("a/b"),
    pathlib.PureWindowsPath("C:/a"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("1.10"),
    dt.datetime(2026, 12, 2, 1, 2, 3, 456789, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    dt.datetime(2026, 12, 2, 1, 2, 3),  # noqa: DTZ001 (a naive datetime is a value too)
    dt.date(2026, 12, 2),
    dt.time(23, 59, 1, 5),
    dt.timedelta(days=-1, seconds=3, microseconds=7),
    Mood.WILD,
    Level.LOW,
    Cue(1.5, ("roof", "tree"), secret=4),
    Scene("intro", [Cue(0.0, ("a",))], Mood.WILD),
    {"nested": [(Mood.CALM, {b"k": {1.0, 2.0}})]},
]


def encode(value: Any) -> Any:
    """The JSON part of ``value``'s description (its blobs dropped)."""
    return encode_into(value, [])


def through_json(value: Any) -> Any:
    """``value`` through a whole payload: described, framed, read back."""
    blobs: list[Blob] = []
    data = encode_into(value, blobs)
    document, views = unpack(pack({"v": json.loads(json.dumps(data, allow_nan=False))}, blobs))
    return decode(document["v"], views)


@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ for v in VALUES])
def test_every_supported_value_comes_back_the_same(value: Any) -> None:
    back = through_json(value)
    assert type(back) is type(value)
    assert back == value


def test_nan_comes_back_nan() -> None:
    back = through_json([float("nan")])
    assert math.isnan(back[0])


def test_what_cannot_be_found_again_or_described_is_refused() -> None:
    @attrs.frozen
    class Local:
        x: int

    class Plain:
        pass

    class Floaty(float):
        pass

    with pytest.raises(CodecError, match="cannot be found again by its name"):
        encode(Local(1))
    with pytest.raises(CodecError, match="a Plain cannot be stored without a declared type"):
        encode(Plain())
    with pytest.raises(CodecError, match="a Floaty cannot be stored"):
        encode(Floaty(1.0))  # a float subclass (numpy's float64 is one) is not a float


def test_reading_never_imports_and_accepts_only_value_classes() -> None:
    assert "antigravity" not in sys.modules
    for payload in (
        {"$": "attrs", "cls": "antigravity:Anything", "fields": {}},  # not imported
        {"$": "attrs", "cls": "os:system", "fields": {}},  # not an attrs class
        {"$": "enum", "cls": "subprocess:Popen", "v": "x"},
        {"$": "dataclass", "cls": f"{__name__}:Cue", "fields": {}},  # not a dataclass
        {"$": "pickle", "v": "gASVAAAAAAAAAAB9lC4="},
    ):
        with pytest.raises(CodecError, match="cannot be read back"):
            decode(payload)
    assert "antigravity" not in sys.modules


def test_a_malformed_payload_is_an_error_not_a_crash() -> None:
    for payload in (
        {"$": "bytes", "blob": 0},  # no such blob
        {"$": "ndarray", "blob": "0"},
        {"$": "timedelta", "v": [1]},
        {"$": "date", "v": "yesterday"},
        {"$": "decimal", "v": "one"},
        {"$": "attrs", "cls": f"{__name__}:Cue", "fields": {"at": 1.0}},  # fields missing
        {"$": "dataclass", "cls": f"{__name__}:Scene", "fields": {"title": "x"}},
    ):
        with pytest.raises(CodecError):
            decode(payload)


STAGES = """
import dataclasses, datetime as dt, decimal, enum, pathlib, uuid
import attrs, numpy, pydantic

class Mood(enum.Enum):
    WILD = "wild"

@attrs.frozen
class Cue:
    at: float
    names: tuple

@dataclasses.dataclass(frozen=True)
class Scene:
    title: str
    cues: list

class Plan(pydantic.BaseModel):
    group: str
    effects: list[str]

VALUES = {
    "tuple": (1, "a"), "set": {1, 2}, "frozenset": frozenset({"x"}), "bytes": b"\\x00",
    "path": pathlib.Path("/tmp/x"), "uuid": uuid.UUID(int=7), "decimal": decimal.Decimal("2.50"),
    "datetime": dt.datetime(2026, 12, 2, 1, 2), "date": dt.date(2026, 1, 1),
    "time": dt.time(1, 2), "timedelta": dt.timedelta(seconds=90), "enum": Mood.WILD,
    "attrs": Cue(1.0, ("a",)), "dataclass": Scene("x", [Cue(2.0, ())]),
    "nan": float("nan"), "int_keys": {1: "a"},
    "array": numpy.arange(6, dtype=numpy.int16).reshape(2, 3), "np_float": numpy.float64(2.5),
    "model": Plan(group="roof", effects=["twinkle"]), "models": [Plan(group="x", effects=[])],
    "big_array": numpy.linspace(0, 1, 100_000),  # 800 KB: a file beside the database
}

# The same values from stages that declare their return type.
TYPES = {
    "tuple": tuple, "set": set[int], "frozenset": frozenset[str], "bytes": bytes,
    "path": pathlib.Path, "uuid": uuid.UUID, "decimal": decimal.Decimal,
    "datetime": dt.datetime, "date": dt.date, "time": dt.time, "timedelta": dt.timedelta,
    "enum": Mood, "attrs": Cue, "dataclass": Scene, "nan": float, "int_keys": dict[int, str],
    "array": numpy.ndarray, "np_float": float, "model": Plan, "models": list[Plan],
    "big_array": numpy.ndarray,
}

def stage_for(name, typed=False):
    async def produce(input):
        return VALUES[name]
    produce.__qualname__ = produce.__name__ = f"produce_{name}_{typed}"
    if typed:
        produce.__annotations__ = {"return": TYPES[name]}
    return produce
"""

RUN = """
import json, math, sys, trio
sys.path.insert(0, sys.argv[1])
import numpy, stages
from twinklr.core.pipeline import (
    PipelineDefinition, PipelineExecutor, SQLiteCacheStore, StageDefinition,
)
pipeline = PipelineDefinition(
    "types",
    [StageDefinition(name, stages.stage_for(name)) for name in stages.VALUES]
    + [StageDefinition(f"{name}:typed", stages.stage_for(name, True)) for name in stages.VALUES],
)
result = trio.run(PipelineExecutor(cache=SQLiteCacheStore(sys.argv[1])).execute, pipeline)
same = {}
for stage_id, back in result.outputs.items():
    value = stages.VALUES[stage_id.removesuffix(":typed")]
    if isinstance(value, numpy.ndarray):
        equal = back.dtype == value.dtype and numpy.array_equal(back, value)
    else:
        equal = bool(back == value) or (isinstance(value, float) and math.isnan(back))
    same[stage_id] = type(back) is type(value) and equal
print(json.dumps({"cached": sorted(result.cached_stages), "same": same}))
"""


def test_a_second_process_reads_every_type_back(tmp_path: Path) -> None:
    (tmp_path / "stages.py").write_text(textwrap.dedent(STAGES))

    def run() -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", RUN, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    first, second = run(), run()
    names = sorted(first["same"])
    assert len(names) == 2 * 21  # every type, with and without an annotation
    assert first["cached"] == []
    assert all(first["same"].values())
    assert second["cached"] == names  # a fresh interpreter served every one
    assert second["same"] == dict.fromkeys(names, True)


def test_numpy_arrays_and_scalars_keep_their_dtype_and_shape() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = through_json(array)
    assert (type(back), back.dtype, back.shape) == (np.ndarray, np.float32, (3, 4))
    assert np.array_equal(back, array)
    for scalar in (np.float64(1.5), np.int8(-3), np.bool_(1)):
        restored = through_json(scalar)
        assert type(restored) is type(scalar)
        assert restored == scalar
    with pytest.raises(CodecError, match="cannot be stored without pickle"):
        encode(np.array([object()]))


def test_a_stored_array_needs_numpy_already_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    blobs: list[Blob] = []
    document, views = unpack(pack({"v": encode_into(np.zeros(2), blobs)}, blobs))
    monkeypatch.setitem(sys.modules, "numpy", None)  # as if the program never imported it
    with pytest.raises(CodecError, match="needs numpy"):
        decode(document["v"], views)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.int16).reshape(2, 3, 4).transpose(2, 0, 1),  # not contiguous
        np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        np.arange(10)[::3],
        np.zeros((0, 3)),
        np.array([(1, 2.5)], dtype=[("id", "<i4"), ("at", ">f8")]),  # fields, big-endian
        np.array(["2026-12-02"], dtype="datetime64[D]"),
        np.array(7, dtype=np.uint64),  # 0-d
    ],
    ids=["transposed", "fortran", "strided", "empty", "structured", "datetime", "0-d"],
)
def test_arrays_of_every_layout_come_back_exact_and_writable(array: Any) -> None:
    back = through_json(array)
    assert (type(back), back.dtype, back.shape) == (np.ndarray, array.dtype, array.shape)
    assert np.array_equal(back, array)
    assert back.flags.writeable  # not a view of the payload
    assert back.flags.owndata


def test_binary_values_are_framed_beside_the_json_not_base64_in_it() -> None:
    array = np.arange(1000, dtype=np.float64)
    blobs: list[Blob] = []
    data = encode_into({"audio": array, "raw": b"\x00\xff" * 10}, blobs)
    payload = bytes(pack({"v": data}, blobs))
    assert payload.startswith(MAGIC)
    assert array.tobytes() in payload
    assert b"\x00\xff" * 10 in payload
    assert len(payload) < array.nbytes + 1024  # no base64 (4/3 the size)
    assert pack({"v": encode_into([1, "a"], [])}, []) == b'{"v":[1,"a"]}'  # plain JSON


def test_an_ndarray_subclass_is_refused_not_stored_as_a_plain_array() -> None:
    with pytest.raises(CodecError, match="an ndarray subclass"):
        encode(np.ma.masked_array([1, 2], mask=[False, True]))


def read_back(payload: bytes) -> Any:
    document, views = unpack(payload)
    return decode(document["v"], views)


def test_a_damaged_frame_or_blob_is_an_error_not_a_crash() -> None:
    blobs: list[Blob] = []
    whole = bytes(pack({"v": encode_into(np.arange(64.0), blobs)}, blobs))
    header_end = len(MAGIC) + 8 + int.from_bytes(whole[len(MAGIC) : len(MAGIC) + 8], "little")
    for damaged in (
        whole[:-8],  # cut short: the blob runs past the end
        whole[: len(MAGIC) + 4],
        whole[: len(MAGIC)] + (10**9).to_bytes(8, "little") + whole[len(MAGIC) + 8 :],
        whole.replace(b"NUMPY", b"NUMPX"),  # not the .npy format
        whole.replace(b"'<f8'", b"'|O'"),  # an object dtype: would need pickle
        whole.replace(b"(64,)", b"(65,)"),  # the shape says more than there is
        whole[:header_end].replace(b'"blobs":[[0,', b'"blobs":[[-1,') + whole[header_end:],
        b"[1, 2]",
        b"not json",
    ):
        with pytest.raises((CodecError, ValueError)):
            read_back(damaged)


class PlanModel(pydantic.BaseModel):
    group: str
    effects: list[str]


def test_pydantic_models_round_trip_through_their_own_json_mode() -> None:
    plan = PlanModel(group="roof", effects=["twinkle", "fade"])
    assert through_json(plan) == plan
    nested = {"plans": [plan, PlanModel(group="tree", effects=[])]}
    assert through_json(nested) == nested
    # Validators run on load: a tampered payload that breaks them is refused.
    tampered = encode(plan)
    tampered["json"] = '{"group": 3, "effects": "not a list"}'
    with pytest.raises(CodecError, match="malformed"):
        decode(tampered)
    # Only a pydantic model class is built from a stored model.
    for cls in (f"{__name__}:Cue", "os:system"):
        with pytest.raises(CodecError, match="cannot be read back"):
            decode({**encode(plan), "cls": cls})


def test_reading_a_class_name_never_imports_a_module() -> None:
    # numpy imports its submodules lazily, through the module's __getattr__: a payload
    # naming one must not make the reader import it.
    code = textwrap.dedent(
        """
        import sys, numpy
        from twinklr.core.pipeline._cache._codec import CodecError, decode
        for kind in ("attrs", "dataclass", "enum", "pydantic"):
            try:
                decode({"$": kind, "cls": "numpy:f2py.crackfortran", "fields": {}, "v": 1,
                        "json": "{}"})
            except CodecError:
                pass
        print("numpy.f2py" in sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


class Lazy(type(sys)):  # type: ignore[misc]
    """A module whose attributes come from ``__getattr__`` (as lazily importing ones do)."""

    asked: list[str]

    def __getattr__(self, name: str) -> Any:
        self.asked.append(name)
        return Cue


def test_a_class_is_found_through_module_and_class_namespaces_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lazy = Lazy("lazy_for_codec")
    lazy.asked = []
    monkeypatch.setitem(sys.modules, "lazy_for_codec", lazy)
    with pytest.raises(CodecError):
        decode({"$": "attrs", "cls": "lazy_for_codec:Cue", "fields": {}})
    assert lazy.asked == []


def test_a_datetime_keeps_its_zoneinfo_zone_across_a_dst_change() -> None:
    zone = zoneinfo.ZoneInfo("Europe/Berlin")
    evening = dt.datetime(2026, 3, 28, 20, 0, tzinfo=zone)  # the day before summer time
    back = through_json(evening)
    assert back == evening
    assert back.tzinfo is zone
    # A day later the zone's offset has changed: a fixed offset would say 20:00+01:00.
    assert (back + dt.timedelta(days=1)).isoformat() == "2026-03-29T20:00:00+02:00"
    # The second 02:30 of the autumn change (fold=1) is kept, as is a zoned time.
    second = dt.datetime(2026, 10, 25, 2, 30, tzinfo=zone, fold=1)
    assert through_json(second).utcoffset() == dt.timedelta(hours=1)
    assert through_json(dt.time(2, 30, tzinfo=zone)).tzinfo is zone


class Fixed(dt.tzinfo):
    """A zone of a kind the codec cannot name (as pytz's and dateutil's are)."""

    def utcoffset(self, _moment: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=2)

    def dst(self, _moment: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)

    def tzname(self, _moment: dt.datetime | None) -> str:
        return "FIXED"


def test_a_datetime_in_a_zone_the_codec_cannot_name_is_refused() -> None:
    with pytest.raises(CodecError, match="in a Fixed zone"):
        encode(dt.datetime(2026, 1, 1, tzinfo=Fixed()))
    stored = encode(dt.datetime(2026, 1, 1, tzinfo=zoneinfo.ZoneInfo("UTC")))
    for zone, fold in (("../../etc/passwd", 0), ("No/Such_Zone", 0), (3, 0), ("UTC", 2)):
        with pytest.raises(CodecError):
            decode({**stored, "zone": zone, "fold": fold})


class Settings(pydantic.BaseModel):
    name: str = "roof"
    brightness: float = 1.0
    plan: PlanModel | None = None


def test_a_pydantic_model_keeps_which_fields_were_set_at_every_depth() -> None:
    value = Settings(brightness=0.5, plan=PlanModel(group="tree", effects=[]))
    back = through_json({"models": [value, Settings()]})
    assert back["models"][0].model_fields_set == {"brightness", "plan"}
    assert back["models"][1].model_fields_set == set()
    assert back["models"][0].model_dump(exclude_unset=True) == value.model_dump(exclude_unset=True)


class Spectrum(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)

    bins: np.ndarray
    label: str = "bass"
    points: Any = (1, 2)


def test_a_pydantic_model_with_a_numpy_field_is_stored_field_by_field() -> None:
    value = Spectrum(bins=np.linspace(0.0, 1.0, 5), points=(3, 4))
    back = through_json(value)
    assert type(back) is Spectrum
    assert back.bins.dtype == value.bins.dtype
    assert np.array_equal(back.bins, value.bins)
    assert back.points == (3, 4)  # a tuple, not the list JSON would give
    assert back.model_fields_set == {"bins", "points"}
    # Validators still run: fields that break them are refused.
    stored = encode(value)
    tampered = {**stored, "fields": {**stored["fields"], "bins": 3}}
    with pytest.raises(CodecError, match=r"malformed.*validation error"):
        decode(tampered)
    with pytest.raises(CodecError, match="set fields"):
        decode({**encode(value), "set": ["nonsense"]})
