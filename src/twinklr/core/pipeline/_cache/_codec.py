"""Self-describing JSON for values stored without a declared type: each value says what
it is, so it comes back as the same type and an equal value.

Covered: JSON's own values, floats that JSON cannot write (NaN, infinities), tuples,
sets and frozensets, dicts with any hashable keys, bytes, ``pathlib`` paths, UUIDs,
decimals, dates, times, datetimes and timedeltas, enums, attrs and dataclass instances
of classes that can be found again by name, and, when the program uses them, numpy
arrays and scalars (the ``.npy`` format without pickle: dtype and shape exact, object
arrays refused) and pydantic models (through pydantic's JSON mode, so validators run on
load). Anything else is refused.

Reading never imports and never unpickles: a class is looked up by its qualified name
only among modules the process has already imported, and only an enum, attrs or
dataclass class is accepted; any other payload is an error (a miss for the cache).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import io
import math
import pathlib
import sys
import uuid
from collections.abc import Callable
from typing import Any

import attrs

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


def encode(value: Any) -> Any:
    """``value`` as JSON values that say what it is (see the module docstring)."""
    kind = type(value)
    if value is None or kind in _SCALARS:
        return value
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value)
    text = _TEXT.get(kind)
    if text is not None:
        shown = value.isoformat() if isinstance(value, dt.date | dt.time) else str(value)
        return {TAG: text[0], "v": shown}
    return _encode_object(value, kind)


def _encode_float(value: float) -> Any:
    return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}


def _encode_dict(value: dict[Any, Any]) -> Any:
    if all(type(key) is str for key in value) and TAG not in value:
        return {key: encode(member) for key, member in value.items()}
    return {TAG: "dict", "items": [[encode(k), encode(v)] for k, v in value.items()]}


def _encode_members(value: Any) -> Any:
    return {TAG: type(value).__name__, "items": [encode(member) for member in value]}


_ENCODERS: dict[type, Callable[[Any], Any]] = {
    float: _encode_float,
    list: lambda value: [encode(member) for member in value],
    dict: _encode_dict,
    tuple: _encode_members,
    set: _encode_members,
    frozenset: _encode_members,
    bytes: lambda value: {TAG: "bytes", "b64": base64.b64encode(value).decode("ascii")},
    dt.timedelta: lambda value: {
        TAG: "timedelta",
        "v": [value.days, value.seconds, value.microseconds],
    },
}


def _encode_object(value: Any, kind: type) -> Any:
    numpy = sys.modules.get("numpy")  # handled when the program uses it; never imported
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return _encode_numpy(numpy, value)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return {TAG: "pydantic", "cls": _name_of(kind), "json": value.model_dump_json()}
    if isinstance(value, enum.Enum):
        return {TAG: "enum", "cls": _name_of(kind), "v": encode(value.value)}
    if attrs.has(kind):
        fields = {f.name: encode(getattr(value, f.name)) for f in attrs.fields(kind)}
        return {TAG: "attrs", "cls": _name_of(kind), "fields": fields}
    if dataclasses.is_dataclass(value):
        fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {TAG: "dataclass", "cls": _name_of(kind), "fields": fields}
    msg = f"a {kind.__name__} cannot be stored without a declared type"
    raise CodecError(msg)


def _encode_numpy(numpy: Any, value: Any) -> Any:
    """An array or a numpy scalar in the ``.npy`` format (dtype and shape exact), which
    refuses object arrays (they would need pickle)."""
    buffer = io.BytesIO()
    try:
        numpy.save(buffer, numpy.asarray(value), allow_pickle=False)
    except ValueError as exc:
        msg = f"a numpy {value.dtype} value cannot be stored without pickle"
        raise CodecError(msg) from exc
    tag = "ndarray" if isinstance(value, numpy.ndarray) else "numpy_scalar"
    return {TAG: tag, "npy": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _decode_numpy(data: dict[str, Any]) -> Any:
    numpy = sys.modules.get("numpy")
    if numpy is None:
        msg = "a stored numpy value needs numpy, which this program has not imported"
        raise CodecError(msg)
    raw = base64.b64decode(data["npy"], validate=True)
    array = numpy.load(io.BytesIO(raw), allow_pickle=False)
    return array[()] if data[TAG] == "numpy_scalar" else array


def _decode_pydantic(data: dict[str, Any]) -> Any:
    """A pydantic model through pydantic's own JSON mode (its validators run)."""
    pydantic = sys.modules.get("pydantic")
    kind = _find(data.get("cls"))
    if pydantic is None or not (isinstance(kind, type) and issubclass(kind, pydantic.BaseModel)):
        msg = f"a stored pydantic model ({data.get('cls')!r}) cannot be read back"
        raise CodecError(msg)
    return kind.model_validate_json(data["json"])  # type: ignore[attr-defined]


def _name_of(kind: type) -> str:
    name = f"{kind.__module__}:{kind.__qualname__}"
    if _find(name) is not kind:
        msg = f"{kind.__qualname__} cannot be found again by its name (defined in a function?)"
        raise CodecError(msg)
    return name


def decode(data: Any) -> Any:
    """The value :func:`encode` described; :class:`CodecError` for anything else."""
    if isinstance(data, list):
        return [decode(member) for member in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {key: decode(member) for key, member in data.items()}
    try:
        return _decode_tagged(tag, data)
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, decimal.InvalidOperation) as exc:
        msg = f"a stored {tag!r} value is malformed: {exc}"
        raise CodecError(msg) from exc


def _decode_tagged(tag: Any, data: dict[str, Any]) -> Any:
    decoder = _DECODERS.get(tag)
    if decoder is not None:
        return decoder(data)
    parse = _FROM_TEXT.get(tag)
    if parse is not None:
        return parse(data["v"])
    return _decode_object(tag, data)


def _decode_timedelta(data: dict[str, Any]) -> dt.timedelta:
    days, seconds, microseconds = data["v"]
    return dt.timedelta(days=days, seconds=seconds, microseconds=microseconds)


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda data: float(data["v"]),  # "nan", "inf", "-inf"
    "dict": lambda data: {decode(key): decode(member) for key, member in data["items"]},
    "tuple": lambda data: tuple(decode(member) for member in data["items"]),
    "set": lambda data: {decode(member) for member in data["items"]},
    "frozenset": lambda data: frozenset(decode(member) for member in data["items"]),
    "bytes": lambda data: base64.b64decode(data["b64"], validate=True),
    "timedelta": _decode_timedelta,
    "ndarray": _decode_numpy,
    "numpy_scalar": _decode_numpy,
    "pydantic": _decode_pydantic,
}


def _decode_object(tag: Any, data: dict[str, Any]) -> Any:
    kind = _find(data.get("cls"))
    if tag == "enum" and isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(decode(data["v"]))
    if tag == "attrs" and isinstance(kind, type) and attrs.has(kind):
        fields = attrs.fields(kind)
        return _rebuild(kind, data["fields"], {f.name: f.alias if f.init else None for f in fields})
    if tag == "dataclass" and isinstance(kind, type) and dataclasses.is_dataclass(kind):
        arguments = {f.name: f.name if f.init else None for f in dataclasses.fields(kind)}
        return _rebuild(kind, data["fields"], arguments)
    msg = f"a stored value of kind {tag!r} ({data.get('cls')!r}) cannot be read back"
    raise CodecError(msg)


def _rebuild(kind: type, stored: dict[str, Any], arguments: dict[str, str | None]) -> Any:
    """An attrs or dataclass instance from its stored fields. ``arguments`` maps each
    field to its ``__init__`` argument (an attrs alias), or None for a field set after."""
    if set(stored) != set(arguments):
        msg = f"stored fields {sorted(stored)} are not {kind.__qualname__}'s"
        raise CodecError(msg)
    values = {name: decode(member) for name, member in stored.items()}
    given = {argument: values[name] for name, argument in arguments.items() if argument}
    made = kind(**given)
    for name, value in values.items():
        if arguments[name] is None:
            object.__setattr__(made, name, value)
    return made


def _find(name: object) -> Any:
    """The object called ``module:qualname``, among modules already imported only."""
    if not isinstance(name, str) or ":" not in name:
        return None
    module_name, _, qualname = name.partition(":")
    found: Any = sys.modules.get(module_name)
    for part in qualname.split("."):
        if found is None or part.startswith("<"):
            return None
        found = getattr(found, part, None)
    return found
