"""Self-describing JSON for values stored without a declared type: each value says what
it is, so it comes back as the same type and an equal value.

Covered: JSON's own values, floats that JSON cannot write (NaN, infinities), tuples,
sets and frozensets, dicts with any hashable keys, bytes, ``pathlib`` paths, UUIDs,
decimals, dates, times, datetimes (in their ``zoneinfo`` zone) and timedeltas, enums,
attrs and dataclass instances of classes that can be found again by name, and, when the
program uses them, numpy arrays and scalars (see ``_npy``) and pydantic models (through
pydantic's JSON mode, or field by field when that cannot give them back, such as a numpy
field; validators run on load, and ``model_fields_set`` is kept). Anything else is
refused.

Binary values (bytes, numpy arrays and scalars) are not put in the JSON: each becomes a
`Blob`, kept beside it (see ``_payload``), and the JSON says which one.

Reading never imports and never unpickles: a class is looked up by its qualified name
only among modules the process has already imported, and only an enum, attrs or
dataclass class is accepted; any other payload is an error (a miss for the cache).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import math
import pathlib
import sys
import types
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from . import _models, _npy

#: The key a tagged value's kind is stored under (a dict that has it is tagged too).
TAG = "$"

_SCALARS = (str, int, bool)

#: Kinds stored as a string: encode with ``str`` (or ``isoformat``), decode with these.
_TEXT: dict[type, tuple[str, Callable[[str], Any]]] = {
    pathlib.PurePosixPath: ("posix_path", pathlib.PurePosixPath),
    pathlib.PureWindowsPath: ("windows_path", pathlib.PureWindowsPath),
    pathlib.PosixPath: ("path", pathlib.Path),
    pathlib.WindowsPath: ("path", pathlib.Path),
    uuid.UUID: ("uuid", uuid.UUID),
    decimal.Decimal: ("decimal", decimal.Decimal),
    dt.datetime: ("datetime", dt.datetime.fromisoformat),
    dt.date: ("date", dt.date.fromisoformat),
    dt.time: ("time", dt.time.fromisoformat),
}
_FROM_TEXT = dict(_TEXT.values())


class CodecError(TypeError):
    """A value that cannot be described, or a payload that does not describe one."""


@attrs.frozen(eq=False)
class Blob:
    """A binary value kept beside the JSON: its bytes, in ``chunks`` (views of the value,
    not copies: the payload that takes them is the copy), and the value itself."""

    source: Any
    """The value (it stands for itself when an encoding is checked: exact by making)."""
    chunks: tuple[Any, ...]
    """Buffers whose bytes, one after another, are the blob."""

    @property
    def size(self) -> int:
        return sum(memoryview(chunk).nbytes for chunk in self.chunks)


def encode(value: Any, blobs: list[Blob]) -> Any:
    """``value`` as JSON values that say what it is (see the module docstring); its
    binary parts are appended to ``blobs``."""
    kind = type(value)
    if value is None or kind in _SCALARS:
        return value
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value, blobs)
    text = _TEXT.get(kind)
    if text is not None:
        if isinstance(value, dt.date | dt.time):
            return _encode_moment(value, text[0])
        return {TAG: text[0], "v": str(value)}
    return _encode_object(value, kind, blobs)


def _encode_moment(value: dt.date | dt.time, tag: str) -> Any:
    """A date, time or datetime in ISO form; one in a named ``zoneinfo`` zone as its wall
    time, fold and zone key (an offset alone would be wrong across a DST change). Any
    other kind of zone (pytz, dateutil) is refused: it would come back a fixed offset."""
    zone = getattr(value, "tzinfo", None)
    if zone is None or type(zone) is dt.timezone:
        return {TAG: tag, "v": value.isoformat()}
    zoneinfo = sys.modules.get("zoneinfo")
    key = getattr(zone, "key", None)
    if zoneinfo is None or type(zone) is not zoneinfo.ZoneInfo or not isinstance(key, str):
        msg = f"a {tag} in a {type(zone).__name__} zone ({zone!s}) cannot be stored exactly"
        raise CodecError(msg)
    assert isinstance(value, dt.datetime | dt.time)  # noqa: S101 (a date has no zone)
    wall = value.replace(tzinfo=None, fold=0).isoformat()
    return {TAG: tag, "v": wall, "zone": key, "fold": value.fold}


def locate(value: Any) -> str:
    """Where in ``value`` the first part `encode` refuses is (``.spectrum``, ``[2]``,
    ``['key']``; "" for the value itself): what a warning names. Only called once
    encoding has failed, so the common path pays nothing for it."""
    path = ""
    for _ in range(20):  # deep enough to name; a deeper value is named this far
        for step, member in _members(value):
            try:
                encode(member, [])
            except (CodecError, TypeError, ValueError, RecursionError):
                path += step
                value = member
                break
        else:
            return path
    return f"{path}..."


def _members(value: Any) -> list[tuple[str, Any]]:
    """A value's parts as `encode` meets them, each with its step in a path."""
    kind = type(value)
    if kind in (list, tuple):
        return [(f"[{index}]", member) for index, member in enumerate(value)]
    if kind is dict:
        return [(f"[{key!r}]", member) for key, member in value.items()]
    if kind in (set, frozenset):
        return [("[...]", member) for member in value]
    if _models.is_model(value):
        fields = _models.model_fields(value)
    elif attrs.has(kind):
        fields = {f.name: getattr(value, f.name) for f in attrs.fields(kind)}
    elif dataclasses.is_dataclass(value):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    else:
        fields = {}
    return [(f".{name}", member) for name, member in fields.items()]


def _encode_float(value: float, _blobs: list[Blob]) -> Any:
    return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}


def _encode_dict(value: dict[Any, Any], blobs: list[Blob]) -> Any:
    if all(type(key) is str for key in value) and TAG not in value:
        return {key: encode(member, blobs) for key, member in value.items()}
    pairs = [[encode(key, blobs), encode(member, blobs)] for key, member in value.items()]
    return {TAG: "dict", "items": pairs}


def _encode_members(value: Any, blobs: list[Blob]) -> Any:
    return {TAG: type(value).__name__, "items": [encode(member, blobs) for member in value]}


def _encode_bytes(value: bytes, blobs: list[Blob]) -> Any:
    blobs.append(Blob(value, (value,)))
    return {TAG: "bytes", "blob": len(blobs) - 1}


_ENCODERS: dict[type, Callable[[Any, list[Blob]], Any]] = {
    float: _encode_float,
    list: lambda value, blobs: [encode(member, blobs) for member in value],
    dict: _encode_dict,
    tuple: _encode_members,
    set: _encode_members,
    frozenset: _encode_members,
    bytes: _encode_bytes,
    dt.timedelta: lambda value, _blobs: {
        TAG: "timedelta",
        "v": [value.days, value.seconds, value.microseconds],
    },
}


def _encode_object(value: Any, kind: type, blobs: list[Blob]) -> Any:
    numpy = sys.modules.get("numpy")  # handled when the program uses it; never imported
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        try:
            blobs.append(Blob(value, _npy.chunks(numpy, value)))
        except _npy.NpyError as exc:
            raise CodecError(str(exc)) from None
        tag = "ndarray" if isinstance(value, numpy.ndarray) else "numpy_scalar"
        return {TAG: tag, "blob": len(blobs) - 1}
    if _models.is_model(value):
        name = _name_of(kind)
        return {TAG: "pydantic", "cls": name, **_models.encode_model(value, blobs, encode)}
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "cls": _name_of(kind), "v": encode(value.value, blobs)}
    if attrs.has(kind):
        fields = {f.name: encode(getattr(value, f.name), blobs) for f in attrs.fields(kind)}
        return {TAG: "attrs", "cls": _name_of(kind), "fields": fields}
    if dataclasses.is_dataclass(value):
        fields = {f.name: encode(getattr(value, f.name), blobs) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "cls": _name_of(kind), "fields": fields}
    msg = f"a {kind.__name__} cannot be stored without a declared type"
    raise CodecError(msg)


def _decode_pydantic(data: dict[str, Any], blobs: Blobs) -> Any:
    """A pydantic model, validated (its validators run) from its JSON or its fields."""
    found = _find(data.get("cls"))
    if not (isinstance(found, type) and _models.is_model_class(found)):
        msg = f"a stored pydantic model ({data.get('cls')!r}) cannot be read back"
        raise CodecError(msg)
    return _models.decode_model(found, data, blobs, decode)


def _name_of(kind: type) -> str:
    name = f"{kind.__module__}:{kind.__qualname__}"
    if _find(name) is not kind:
        msg = f"{kind.__qualname__} cannot be found again by its name (defined in a function?)"
        raise CodecError(msg)
    return name


#: What a blob reference resolves against: the payload's blobs, or (when an encoding is
#: checked) the `Blob` values just made, which stand for themselves.
Blobs = Sequence[memoryview] | Sequence[Blob]


def decode(data: Any, blobs: Blobs = ()) -> Any:
    """The value `encode` described (its blobs in ``blobs``); `CodecError`
    for anything else."""
    if isinstance(data, list):
        return [decode(member, blobs) for member in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {key: decode(member, blobs) for key, member in data.items()}
    try:
        return _decode_tagged(tag, data, blobs)
    except CodecError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, decimal.InvalidOperation) as exc:
        msg = f"a stored {tag!r} value is malformed: {exc}"
        raise CodecError(msg) from exc


def _decode_tagged(tag: Any, data: dict[str, Any], blobs: Blobs) -> Any:
    decoder = _DECODERS.get(tag)
    if decoder is not None:
        return decoder(data, blobs)
    binary = _BINARY.get(tag)
    if binary is not None:
        index = data["blob"]
        if type(index) is not int or not 0 <= index < len(blobs):
            msg = f"a stored {tag!r} value names no blob ({index!r})"
            raise CodecError(msg)
        blob = blobs[index]
        if isinstance(blob, Blob):
            return blob.source
        return binary(data, blob)
    parse = _FROM_TEXT.get(tag)
    if parse is not None:
        made = parse(data["v"])
        return made if "zone" not in data else _in_zone(made, data["zone"], data["fold"])
    return _decode_object(tag, data, blobs)


def _in_zone(wall: Any, key: Any, fold: Any) -> Any:
    """A datetime (or time) read as wall time, put back in its ``zoneinfo`` zone."""
    import zoneinfo  # noqa: PLC0415 (the standard library's, never a name a payload gives)

    if not isinstance(wall, dt.datetime | dt.time) or wall.tzinfo is not None:
        msg = "a stored zoned value is not a wall time"
        raise CodecError(msg)
    if not isinstance(key, str) or fold not in (0, 1):
        msg = f"a stored zone ({key!r}, fold {fold!r}) is malformed"
        raise CodecError(msg)
    try:
        return wall.replace(tzinfo=zoneinfo.ZoneInfo(key), fold=fold)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:  # an unknown or bad key
        msg = f"a stored zone {key!r} is not known here: {exc}"
        raise CodecError(msg) from exc


def _decode_timedelta(data: dict[str, Any], _blobs: Blobs) -> dt.timedelta:
    days, seconds, microseconds = data["v"]
    return dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)


def _decode_pairs(data: dict[str, Any], blobs: Blobs) -> dict[Any, Any]:
    return {decode(key, blobs): decode(member, blobs) for key, member in data["items"]}


_DECODERS: dict[str, Callable[[dict[str, Any], Blobs], Any]] = {
    "float": lambda data, _blobs: float(data["v"]),  # "nan", "inf", "-inf"
    "dict": _decode_pairs,
    "tuple": lambda data, blobs: tuple(decode(member, blobs) for member in data["items"]),
    "set": lambda data, blobs: {decode(member, blobs) for member in data["items"]},
    "frozenset": lambda data, blobs: frozenset(decode(m, blobs) for m in data["items"]),
    "timedelta": _decode_timedelta,
    "pydantic": _decode_pydantic,
}

#: Kinds kept in a blob: decode from its bytes.
_BINARY: dict[str, Callable[[dict[str, Any], memoryview], Any]] = {
    "bytes": lambda _data, blob: bytes(blob),
    "ndarray": lambda _data, blob: _npy.read(blob),
    "numpy_scalar": lambda _data, blob: _npy.read(blob)[()],
}


def _decode_object(tag: Any, data: dict[str, Any], blobs: Blobs) -> Any:
    kind = _find(data.get("cls"))
    if tag == "enum" and isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(decode(data["v"], blobs))
    if tag == "attrs" and isinstance(kind, type) and attrs.has(kind):
        fields = attrs.fields(kind)
        arguments = {f.name: f.alias if f.init else None for f in fields}
        return _rebuild(kind, data["fields"], arguments, blobs)
    if tag == "dataclass" and isinstance(kind, type) and dataclasses.is_dataclass(kind):
        arguments = {f.name: f.name if f.init else None for f in dataclasses.fields(kind)}
        return _rebuild(kind, data["fields"], arguments, blobs)
    msg = f"a stored value of kind {tag!r} ({data.get('cls')!r}) cannot be read back"
    raise CodecError(msg)


def _rebuild(
    kind: type, stored: dict[str, Any], arguments: dict[str, str | None], blobs: Blobs
) -> Any:
    """An attrs or dataclass instance from its stored fields. ``arguments`` maps each
    field to its ``__init__`` argument (an attrs alias), or None for a field set after."""
    if set(stored) != set(arguments):
        msg = f"stored fields {sorted(stored)} are not {kind.__qualname__}'s"
        raise CodecError(msg)
    values = {name: decode(member, blobs) for name, member in stored.items()}
    given = {argument: values[name] for name, argument in arguments.items() if argument}
    made = kind(**given)
    for name, value in values.items():
        if arguments[name] is None:
            object.__setattr__(made, name, value)
    return made


def _find(name: object) -> Any:
    """The object called ``module:qualname``, among modules already imported only, read
    from the module's and each class's own namespace: never through a module's
    ``__getattr__`` (which may import a submodule) or a descriptor (which may run)."""
    if not isinstance(name, str) or ":" not in name:
        return None
    module_name, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if found is None or not part.isidentifier():
            return None
        if isinstance(found, types.ModuleType):
            found = vars(found).get(part)
        else:
            found = inspect.getattr_static(found, part, None)
    return found
