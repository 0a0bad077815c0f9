"""Values to JSON and back with cattrs, and canonical fingerprints. Never pickle.

Only data comes back from a cache entry: JSON is parsed and structured into the type the
stage declares, so a tampered entry can at worst fail to load (a miss), never run code.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import functools
import hashlib
import inspect
import json
import math
import sys
import typing
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any

import attrs

from .._kinds._function import FunctionStage, StreamingFunctionStage
from .._values._results import StageResult
from . import _codec, _models
from ._store import UTF8

if TYPE_CHECKING:
    import cattrs


@functools.cache
def converter() -> cattrs.Converter:
    """The JSON converter, made on first use (cattrs is imported by the first cached
    value, not with the package)."""
    from cattrs.preconf.json import make_converter  # noqa: PLC0415

    made = make_converter()
    made.register_unstructure_hook_func(_is_set_type, _sorted_set)
    return made


def _sorted_set(value: set[Any] | frozenset[Any]) -> list[Any]:
    # Sets have no order (and str hashing differs between processes): sort the
    # unstructured members by their JSON text so fingerprints are canonical.
    members = [converter().unstructure(member) for member in value]
    return sorted(members, key=lambda member: json.dumps(member, sort_keys=True))


_SET_TYPES = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)


def _is_set_type(kind: Any) -> bool:
    origin: object = typing.get_origin(kind)
    return (origin if origin is not None else kind) in _SET_TYPES


class NotSerializableError(TypeError):
    """A value cannot be turned into JSON and back into an equal value."""


def to_json(value: Any) -> str:
    """Canonical JSON text of ``value`` (sorted keys, no spaces, no NaN)."""
    try:
        return json.dumps(
            converter().unstructure(value),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
    except (TypeError, ValueError) as exc:
        msg = f"{type(value).__name__} value is not JSON-serializable: {exc}"
        raise NotSerializableError(msg) from exc


def fingerprint(value: Any) -> str:
    """A SHA-256 of the canonical, type-tagged JSON of ``value``: equal values, equal
    fingerprints; values that are not equal (a tuple and a list, ``{1: x}`` and
    ``{"1": x}``, two classes with the same fields) never share one."""
    try:
        text = _canonical(_tagged(value))
    except RecursionError as exc:
        msg = f"a {type(value).__name__} value nested too deeply (or holding itself) to fingerprint"
        raise NotSerializableError(msg) from exc
    except Exception as exc:
        # resolving an attrs class's annotations): no fingerprint
        msg = f"{type(value).__name__} value has no fingerprint: {exc}"
        raise NotSerializableError(msg) from exc
    return hashlib.sha256(text.encode(*UTF8)).hexdigest()


def _tagged(value: Any) -> Any:
    """``value`` as JSON in which every container is ``[tag, ...]`` (so no two kinds of
    value can read alike): JSON's own scalars stand for themselves."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else ["float", repr(value)]
    if kind is list or kind is tuple:
        return [kind.__name__, [_tagged(member) for member in value]]
    if kind is dict:
        return _tagged_dict(value)
    if kind is set or kind is frozenset:  # a set equals the frozenset of its members
        return ["set", sorted((_tagged(member) for member in value), key=_canonical)]
    return _tagged_object(value, kind)


def _tagged_object(value: Any, kind: type) -> Any:
    """Any other value: its class, and its form as numpy, pydantic or cattrs gives it."""
    numpy = sys.modules.get("numpy")  # handled when the program uses it; never imported
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return _tagged_numpy(numpy, value)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        return _tagged_model(value, kind)
    if isinstance(value, dt.tzinfo):  # a zone (a stage may close over one): by its name
        return [_qualified(kind), getattr(value, "key", None) or str(value)]
    if isinstance(value, dt.datetime | dt.time) and type(value.tzinfo) not in _PLAIN_ZONES:
        # a named zone (its offset alone would equate two zones that part at a DST change)
        zone = getattr(value.tzinfo, "key", None) or str(value.tzinfo)
        return [_qualified(kind), [value.isoformat(), zone, value.fold]]
    if attrs.has(kind) or dataclasses.is_dataclass(value):  # field by field: exact inside
        fields = attrs.fields(kind) if attrs.has(kind) else dataclasses.fields(value)
        tagged = {f.name: _tagged(getattr(value, f.name)) for f in fields}
        return [_qualified(kind), ["fields", tagged]]
    unstructured = converter().unstructure(value)
    if type(unstructured) is kind:  # cattrs knows nothing better than the value itself
        msg = f"cattrs cannot turn a {kind.__name__} into JSON values"
        raise TypeError(msg)
    return [_qualified(kind), _tagged(unstructured)]


_PLAIN_ZONES = (type(None), dt.timezone)


def _tagged_model(value: Any, kind: type) -> Any:
    """A pydantic model by its class, its JSON form where that is exact (field by field
    otherwise, such as a numpy field or a zoned datetime) and the fields it was given
    (``exclude_unset`` sees them)."""
    form = None
    if _models.json_exact(kind):
        try:
            form = _tagged(value.model_dump(mode="json"))
        except (TypeError, ValueError):  # pydantic's serialization errors are ValueErrors
            form = None
    if form is None:
        form = ["fields", _tagged(_models.model_fields(value))]
    return [_qualified(kind), form, sorted(value.model_fields_set)]


def _qualified(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def _tagged_numpy(numpy: Any, value: Any) -> Any:
    """An array or numpy scalar by its type, dtype, shape and a hash of its memory."""
    array = numpy.ascontiguousarray(value)
    if array.dtype.hasobject:
        msg = f"a numpy {array.dtype} value has no fingerprint"
        raise TypeError(msg)
    memory = hashlib.sha256(array.reshape(-1).view(numpy.uint8)).hexdigest()
    dtype = numpy.lib.format.dtype_to_descr(array.dtype)
    return [_qualified(type(value)), [dtype, list(array.shape), memory]]


def _tagged_dict(value: dict[Any, Any]) -> Any:
    if all(type(key) is str for key in value):  # the common case: JSON sorts its keys
        return ["dict", {key: _tagged(member) for key, member in value.items()}]
    pairs = [[_tagged(key), _tagged(member)] for key, member in value.items()]
    return ["pairs", sorted(pairs, key=_canonical)]


def _canonical(tagged: Any) -> str:
    return json.dumps(
        tagged, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def _print(value: Any) -> str | None:
    try:
        return fingerprint(value)
    except NotSerializableError:
        return None


def from_json(text: str, kind: Any) -> Any:
    """Parse ``text`` and structure it as ``kind`` (``Any``: plain JSON values)."""
    return structure(json.loads(text), kind)


def structure(data: Any, kind: Any) -> Any:
    """Structure already-parsed JSON ``data`` as ``kind``."""
    if kind is Any:
        return data
    made = converter()
    import cattrs  # noqa: PLC0415 (loaded with the converter)

    try:
        return made.structure(data, kind)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        msg = f"cannot read the stored value as {kind!r}: {exc}"
        raise NotSerializableError(msg) from exc


def tagged_round_trip(value: Any, blobs: list[_codec.Blob], *, model: Any = None) -> Any:
    """``value`` in the self-describing form of ``_codec`` (for a value stored without a
    declared type), its binary parts appended to ``blobs``, once it is known to come back
    as the same type and an equal value. (A blob is exact by making: the check takes it
    as read instead of copying it out again.) ``model``: ``value`` is an instance of
    that pydantic model class, which the reader knows (one defined in a function).

    Raises `NotSerializableError`, saying what to do, when it would not.
    """
    encode, decode = _codec.encode, _codec.decode
    if model is not None:
        encode = functools.partial(_models.encode_model, encode=_codec.encode)
        decode = functools.partial(_models.decode_model, model, decode=_codec.decode)
    before = len(blobs)
    try:
        data = encode(value, blobs)
        back = decode(json.loads(json.dumps(data, allow_nan=False)), blobs)
        again = encode(back, blobs[:before])  # its blobs numbered as the first time
    except RecursionError as exc:
        del blobs[before:]
        msg = f"a {type(value).__name__} value nested too deeply (or holding itself) to store"
        raise NotSerializableError(msg) from exc
    except (_codec.CodecError, TypeError, ValueError) as exc:
        del blobs[before:]
        raise NotSerializableError(str(exc)) from exc
    # The descriptions compared first: they are exact for NaN and arrays (whose ==
    # answers element by element).
    if type(back) is not type(value) or not (again == data or _equal(back, value)):
        del blobs[before:]
        msg = f"a {type(value).__name__} value does not come back equal from the cache"
        raise NotSerializableError(msg)
    return data


def _equal(back: Any, value: Any) -> bool:
    try:
        return bool(back == value)
    except (TypeError, ValueError):  # an array's == answers element by element
        return False


def check_round_trip(value: Any, kind: Any) -> Any:
    """The unstructured form of ``value``, once it is known to come back equal.

    Raises `NotSerializableError` when it would not (an object with no value
    equality, a tuple where only ``Any`` is known, a set of unhashable things, ...).
    """
    text = to_json(value)
    data = json.loads(text)
    back = structure(data, kind)
    # (fingerprints too: == misses a zone turned into an offset, a tuple into a list)
    if type(back) is not type(value) or back != value or _print(back) != _print(value):
        msg = f"{type(value).__name__} value does not come back equal from JSON as {kind!r}"
        raise NotSerializableError(msg)
    return data


def _model_class(kind: Any) -> Any:
    """``kind`` when it is a pydantic model class (pydantic never imported for it)."""
    return kind if isinstance(kind, type) and _models.is_model_class(kind) else None


def model_round_trip(value: Any, kind: Any, blobs: list[_codec.Blob]) -> Any:
    """``value`` described as an instance of the declared pydantic model class ``kind``
    (through its JSON mode, or field by field) when it is one and comes back equal;
    None otherwise."""
    model = _model_class(kind)
    if model is None or type(value) is not model:
        return None
    try:
        return tagged_round_trip(value, blobs, model=model)
    except NotSerializableError:
        return None


def model_from_stored(data: Any, blobs: _codec.Blobs, kind: Any) -> Any:
    """The declared model class's instance from what `model_round_trip` described (or,
    from older entries, its JSON); its validators run."""
    model = _model_class(kind)
    if model is None:
        msg = f"a stored model cannot be read back as {kind!r}"
        raise NotSerializableError(msg)
    if isinstance(data, str):
        return model.model_validate_json(data)
    return _models.decode_model(model, data, blobs, _codec.decode)


_STREAM_ORIGINS = (AsyncGenerator, AsyncIterator, AsyncIterable)


def declared_output_type(stage: Any) -> Any:
    """The ``T`` of ``execute``'s ``StageResult[T]`` annotation (``list[T]`` for an async
    generator of ``T``); for a function stage, its function's return annotation (``T``
    or ``StageResult[T]``); ``Any`` when it is not declared or cannot be resolved."""
    if isinstance(stage, FunctionStage):
        return _returned_type(stage.fn, plain=not isinstance(stage, StreamingFunctionStage))
    execute = getattr(stage, "execute", None)
    if execute is None:
        return Any
    return _returned_type(execute, plain=False)


def _returned_type(function: Any, *, plain: bool) -> Any:
    """What ``function`` is declared to produce (``plain``: it may return a bare value)."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # noqa: BLE001 - unresolved annotations: fall back to Any
        return Any
    returned = hints.get("return", Any)
    origin = typing.get_origin(returned)
    args = typing.get_args(returned)
    if origin is StageResult:
        return args[0] if args else Any
    if inspect.isasyncgenfunction(function) and origin in _STREAM_ORIGINS and args:
        return list[args[0]]  # type: ignore[valid-type]
    return returned if plain else Any
