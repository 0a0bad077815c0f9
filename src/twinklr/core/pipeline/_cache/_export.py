"""Stage outputs as plain JSON, for people and other programs (``run --outputs``).

The cache keeps exact values (``_codec``); this is a one-way export: readable, and
never read back.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import pathlib
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from ._libraries import is_model, numpy_of


def to_plain(value: Any) -> Any:
    """``value`` as plain JSON values for people and other programs to read (a stage's
    output in ``run --outputs``): arrays as nested lists, models and attrs or dataclass
    instances as objects, dates as ISO text, bytes as base64, NaN and infinities as the
    strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; anything else as its ``repr``.
    Not read back (the cache keeps exact values; this is an export)."""
    kind = type(value)
    if value is None or kind is str or kind is bool or kind is int:
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else _NON_FINITE[repr(float(value))]
    if isinstance(value, list | tuple):
        return [to_plain(member) for member in value]
    if isinstance(value, set | frozenset):
        return sorted((to_plain(member) for member in value), key=_canonical_text)
    if isinstance(value, dict):
        return {_plain_key(key): to_plain(member) for key, member in value.items()}
    return _plain_object(value, kind)


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _canonical_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _plain_key(key: Any) -> str:
    plain = to_plain(key)
    return plain if isinstance(plain, str) else json.dumps(plain, sort_keys=True)


#: Kinds with one plain form each, tried in order.
_SIMPLE: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    (enum.Enum, lambda value: to_plain(value.value)),
    ((bytes, bytearray), lambda value: base64.b64encode(value).decode("ascii")),
    ((dt.date, dt.time), lambda value: value.isoformat()),
    (dt.timedelta, lambda value: value.total_seconds()),
    ((decimal.Decimal, uuid.UUID, pathlib.PurePath), str),
)


def _plain_object(value: Any, kind: type) -> Any:
    if numpy_of(value) is not None:
        return to_plain(value.tolist())
    if is_model(value):
        return value.model_dump(mode="json")
    for kinds, convert in _SIMPLE:
        if isinstance(value, kinds):
            return convert(value)
    if attrs.has(kind):
        return {f.name: to_plain(getattr(value, f.name)) for f in attrs.fields(kind)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return repr(value)
