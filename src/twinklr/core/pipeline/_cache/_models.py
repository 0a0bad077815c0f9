"""pydantic models as the cache keeps them: through pydantic's JSON mode when that gives
them back exactly (the fields they were given, so ``model_fields_set`` comes back at
every depth), else field by field through the codec (a numpy field, a tuple in an
``Any`` field, a zoned datetime, which pydantic's JSON would flatten to an offset).
Validators run on load either way. pydantic is the program's own: never imported here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import typing
import weakref
from collections.abc import Callable
from typing import Any

import attrs

#: Whether a model class's JSON mode keeps every value exactly, by class (held weakly).
_exact: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def encode_model(value: Any, blobs: list[Any], encode: Callable[[Any, list[Any]], Any]) -> Any:
    """``value`` (a model) as JSON values: ``{"json": ...}`` or ``{"fields": ...,
    "set": [...]}``, its fields described by ``encode``."""
    kind: Any = type(value)
    if json_exact(kind):
        try:
            text = value.model_dump_json(exclude_unset=True)
            if kind.model_validate_json(text) == value:
                return {"json": text}
        except Exception:  # noqa: BLE001, S110 - pydantic's own errors: field by field
            pass
    fields = {name: encode(member, blobs) for name, member in model_fields(value).items()}
    return {"fields": fields, "set": sorted(value.model_fields_set)}


def decode_model(kind: Any, data: Any, blobs: Any, decode: Callable[[Any, Any], Any]) -> Any:
    """The ``kind`` model `encode_model` described, validated; ValueError for anything
    else."""
    if "json" in data:
        return kind.model_validate_json(data["json"])
    given = set(data["set"])
    if not given <= set(data["fields"]) or not all(isinstance(name, str) for name in given):
        msg = f"a stored {kind.__qualname__}'s set fields {sorted(given)} are not its fields"
        raise ValueError(msg)
    fields = {name: decode(member, blobs) for name, member in data["fields"].items()}
    try:
        made = kind.model_validate(fields, by_name=True)
    except TypeError:  # pragma: no cover (pydantic before 2.11: by alias or by name)
        made = kind.model_validate(fields)
    object.__setattr__(made, "__pydantic_fields_set__", given)
    return made


def model_fields(value: Any) -> dict[str, Any]:
    """A model's fields and extra fields by name, as they are."""
    fields = {name: getattr(value, name) for name in type(value).model_fields}
    return {**fields, **(value.__pydantic_extra__ or {})}


def is_model(value: Any) -> bool:
    """Whether ``value`` is a pydantic model (pydantic never imported for it)."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def is_model_class(kind: type) -> bool:
    """Whether ``kind`` is a pydantic model class."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(kind, pydantic.BaseModel)


def json_exact(kind: type) -> bool:
    """Whether no field of ``kind`` (nested models, dataclasses and attrs classes too)
    can hold what pydantic's JSON gives back otherwise: a datetime or time (its zone
    becomes an offset), or anything (``Any``, ``object``, an unresolved name)."""
    known = _exact.get(kind)
    if known is None:
        known = _exact[kind] = _exact_fields(kind, set())
    return known


def _exact_fields(kind: Any, seen: set[int]) -> bool:
    if id(kind) in seen:
        return True
    seen.add(id(kind))
    try:
        if attrs.has(kind) or dataclasses.is_dataclass(kind):
            hints = list(typing.get_type_hints(kind).values())
        else:
            hints = [field.annotation for field in kind.model_fields.values()]
    except Exception:  # noqa: BLE001 - annotations that do not resolve: not known exact
        return False
    return all(_exact_type(hint, seen) for hint in hints)


def _exact_type(hint: Any, seen: set[int]) -> bool:
    if hint is Any or hint is object or isinstance(hint, str | typing.ForwardRef | typing.TypeVar):
        return False
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    if isinstance(hint, type) and origin is None:
        if issubclass(hint, dt.datetime | dt.time):
            return False
        nested = attrs.has(hint) or dataclasses.is_dataclass(hint) or hasattr(hint, "model_fields")
        return _exact_fields(hint, seen) if nested else True
    return all(_exact_type(arg, seen) for arg in typing.get_args(hint))
