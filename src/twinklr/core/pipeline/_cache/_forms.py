"""The form a cached output takes: self-describing when it can be, else as the type
the stage declares; and the copies a streaming stage's items are cached from."""

from __future__ import annotations

import copy
import weakref
from typing import TYPE_CHECKING, Any

from .._kinds._function import FunctionStage
from . import _codec, _serialize
from ._code import captured, code_parts, owner

if TYPE_CHECKING:
    from ..definition import StageDefinition

# Keyed by a stage's class, or a function stage's function (held weakly).
_output_types: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def output_type(sdef: StageDefinition[Any]) -> Any:
    """The type a cached output is read back as."""
    if sdef.output_type is not None and not isinstance(sdef.output_type, str):
        return sdef.output_type  # a string is documentation (as in the original Twinklr)
    code = owner(sdef.stage)
    known = _output_types.get(code, _UNKNOWN)
    if known is _UNKNOWN:
        known = _output_types[code] = _serialize.declared_output_type(sdef.stage)
    return known


_UNKNOWN = object()


# A function stage's captures_print, held weakly by its function: read the first time
# the process keys it, so a list it appends to (calls counted in a test) keeps its key.
_captures: weakref.WeakKeyDictionary[Any, str | _serialize.NotSerializableError] = (
    weakref.WeakKeyDictionary()
)


def captures_print(stage: object) -> str:
    """The fingerprint of what ``stage``'s functions capture ("" for nothing): a
    function stage's function as it was the first time this process keyed it; the
    functions a stage declares in ``cache_code()`` as they are.

    Raises `NotSerializableError` naming the value that has none."""
    if not isinstance(stage, FunctionStage):
        if getattr(stage, "cache_code", None) is None:
            return ""  # a class: its source is all there is
        return _known(_stage_print(stage))
    try:
        known = _captures.get(stage.fn)
        if known is None:
            known = _captures[stage.fn] = _stage_print(stage)
    except TypeError:  # not weakly referenceable, or unhashable: every time
        known = _stage_print(stage)
    return _known(known)


def _known(found: str | _serialize.NotSerializableError) -> str:
    if isinstance(found, _serialize.NotSerializableError):
        raise found
    return found


def _stage_print(stage: object) -> str | _serialize.NotSerializableError:
    prints = []
    for part in code_parts(stage):
        found = _print_of(part)
        if isinstance(found, _serialize.NotSerializableError):
            return found
        prints.append(found)
    return "".join(prints)


def _print_of(code: Any) -> str | _serialize.NotSerializableError:
    named = captured(code)
    if not named:
        return ""
    try:
        return _serialize.fingerprint(named)
    except _serialize.NotSerializableError as whole:
        for name, value in named:
            try:
                _serialize.fingerprint(value)
            except _serialize.NotSerializableError as exc:
                msg = f"{name} has no fingerprint ({exc}), so the key cannot tell it apart"
                return _serialize.NotSerializableError(msg)
        return whole


def read_output(data: Any, blobs: _codec.Blobs, sdef: StageDefinition[Any]) -> Any:
    """The output an entry's document ``data`` (its blobs ``blobs``) holds."""
    form = data.get("form")
    if form == "tagged":  # stored without a declared type
        return _codec.decode(data["output"], blobs)
    if form == "model":  # a pydantic model of the declared class
        return _serialize.model_from_stored(data["output"], blobs, output_type(sdef))
    return _serialize.structure(data["output"], output_type(sdef))


def stored_output(output: Any, kind: Any, blobs: list[_codec.Blob]) -> dict[str, Any]:
    """How ``output`` is stored: self-describing (the same type and an equal value come
    back, binary values in blobs), or, when that cannot describe it (a class defined in
    a function), as its declared type: a pydantic model class as the codec keeps models
    (its class taken from the declaration), anything else as cattrs JSON of that type."""
    try:
        return {"output": _serialize.tagged_round_trip(output, blobs), "form": "tagged"}
    except _serialize.NotSerializableError as undescribed:
        if kind is Any:
            raise
        model = _serialize.model_round_trip(output, kind, blobs)
        if model is not None:
            return {"output": model, "form": "model"}
        try:
            return {"output": _serialize.check_round_trip(output, kind)}
        except _serialize.NotSerializableError as exc:
            msg = f"{undescribed}; as the declared {kind!r}: {exc}"
            raise _serialize.NotSerializableError(msg) from exc


class Snapshots:
    """The items a cached streaming stage yields, each copied as it is yielded: the
    stages reading them as they come may change them before the stage finishes, and the
    cache keeps what the stage produced."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.error: Exception | None = None

    def take(self, item: Any) -> None:
        """Keep a copy of ``item`` (one that cannot be copied: the output is not cached)."""
        if self.error is None:
            try:
                self.items.append(copy.deepcopy(item))
            except Exception as exc:  # noqa: BLE001 - whatever deepcopy raises: not cached
                why = f"{type(exc).__name__}: {exc}"
                self.error = _serialize.NotSerializableError(
                    f"a yielded {type(item).__name__} cannot be copied: {why}"
                )
