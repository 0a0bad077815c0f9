"""Typed answers to gates: `WaitForInput(prompt, answer_type=...)` takes only a value
of that type, checked where the answer is given (a run's handle, a run store, the web
view, the command line) so whoever sent a wrong one is told, naming the field.

In the run's own process the type itself validates (and converts) the answer: pydantic
for its models, dataclasses and plain types when it is installed, cattrs (attrs
classes, and everything without pydantic) otherwise. Another process has only what the
run recorded: the type's JSON schema, which `schema_problem` checks a JSON answer
against (the common part of JSON Schema pydantic writes: types, properties, required,
items, enums, constants, unions and references), so a wrong answer is refused before it
is stored; the run's process validates it again with the type when it takes it.
"""

from __future__ import annotations

import functools
import typing
from typing import Any

import attrs

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def type_name(answer_type: Any) -> str:
    """How an answer type is named in messages: ``Plan``, ``list[int]``."""
    if typing.get_origin(answer_type) is not None:  # list[int], Plan | None
        return repr(answer_type).replace("typing.", "")
    return getattr(answer_type, "__name__", None) or repr(answer_type)


def validate_answer(stage_id: str, answer_type: Any, value: Any) -> Any:
    """``value`` as ``answer_type`` (validated, converted: a model from its JSON), or
    `ValueError` naming the stage, the type and the field that is wrong."""
    if answer_type is None:
        return value
    adapter = _adapter(answer_type)
    try:
        if adapter is not None:
            return adapter.validate_python(value)
        return _converter().structure(value, answer_type)
    except Exception as exc:
        problem = _problem_of(exc)
        msg = f"the answer to gate '{stage_id}' is not a valid {type_name(answer_type)}: {problem}"
        raise ValueError(msg) from exc


def answer_schema(answer_type: Any) -> dict[str, Any] | None:
    """The JSON schema of ``answer_type`` (pydantic writes it), or None when there is
    none to write (no pydantic, or a type it cannot describe)."""
    if answer_type is None:
        return None
    adapter = _adapter(answer_type)
    if adapter is None:
        return None
    try:
        schema: dict[str, Any] = adapter.json_schema()
    except Exception:  # noqa: BLE001 - a type pydantic cannot describe: no form, no check
        return None
    return schema


def schema_problem(schema: dict[str, Any], value: Any) -> str | None:
    """What is wrong with the JSON ``value`` by ``schema`` (naming the field), or None."""
    return _check(schema, value, "", schema.get("$defs", {}))


def _check(schema: dict[str, Any], value: Any, where: str, defs: dict[str, Any]) -> str | None:
    if "$ref" in schema:
        return _check(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), value, where, defs)
    return _own_problem(schema, value, where, defs) or _inner_problem(schema, value, where, defs)


def _own_problem(
    schema: dict[str, Any], value: Any, where: str, defs: dict[str, Any]
) -> str | None:
    """What is wrong with ``value`` itself: its form, constant, choices or JSON type."""
    at = f"field '{where.lstrip('.')}': " if where else ""
    problem = None
    options = schema.get("anyOf") or schema.get("oneOf")
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else kind or []
    if options and all(_check(option, value, where, defs) for option in options):
        problem = f"{value!r} matches none of the {len(options)} forms it may take"
    elif "const" in schema and value != schema["const"]:
        problem = f"must be {schema['const']!r}, not {value!r}"
    elif "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(repr(option) for option in schema["enum"])
        problem = f"must be one of {allowed}, not {value!r}"
    elif kinds and not any(_is(value, name) for name in kinds):
        problem = f"must be {' or '.join(kinds)}, not {type(value).__name__} {value!r:.60}"
    return None if problem is None else at + problem


def _inner_problem(
    schema: dict[str, Any], value: Any, where: str, defs: dict[str, Any]
) -> str | None:
    """What is wrong inside an object (a field missing or wrong) or an array (an item)."""
    if isinstance(value, dict):
        missing = [name for name in schema.get("required", ()) if name not in value]
        if missing:
            return f"field '{(where + '.' + missing[0]).lstrip('.')}' is missing"
        for name, field in schema.get("properties", {}).items():
            if name in value and (found := _check(field, value[name], f"{where}.{name}", defs)):
                return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for number, item in enumerate(value):
            if found := _check(schema["items"], item, f"{where}[{number}]", defs):
                return found
    return None


def _is(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False  # (JSON's true is no number)
    return isinstance(value, _JSON_TYPES.get(name, (object,)))


@functools.cache
def _converter() -> Any:
    """The cattrs converter answers of attrs classes go through (loaded when one does:
    cattrs costs a run nothing until then)."""
    import cattrs  # noqa: PLC0415

    return cattrs.Converter()


def _adapter(answer_type: Any) -> Any:
    """pydantic's adapter of ``answer_type`` (made once per type; a type that cannot be
    hashed, each time), or None: see `_made_adapter`."""
    try:
        return _cached_adapter(answer_type)
    except TypeError:  # an unhashable type (Annotated with a list in it, say)
        return _made_adapter(answer_type)


def _made_adapter(answer_type: Any) -> Any:
    """pydantic's adapter of ``answer_type`` when pydantic is installed and the type is
    not an attrs class (cattrs knows those); else None."""
    if attrs.has(answer_type):
        return None
    try:
        import pydantic  # noqa: PLC0415 (optional: the models users bring)
    except ImportError:  # pragma: no cover (installed in the suite)
        return None
    try:
        return pydantic.TypeAdapter(answer_type)
    except Exception:  # noqa: BLE001 - a type pydantic cannot take: cattrs then
        return None


def _problem_of(exc: Exception) -> str:
    """A validation error in a line: the first wrong field and why."""
    errors = getattr(exc, "errors", None)
    if callable(errors):  # pydantic's ValidationError
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"field '{where}': {first['msg']}" if where else str(first["msg"])
    import cattrs  # noqa: PLC0415 (loaded already: the error is one of its)

    if isinstance(exc, cattrs.BaseValidationError):
        first = cattrs.transform_error(exc)[0]  # "invalid value ... @ $.lights"
        why, _, where = first.rpartition(" @ $")
        return f"field '{where.lstrip('.')}': {why}" if where.strip(".") else first
    return f"{type(exc).__name__}: {exc}"


_cached_adapter = functools.cache(_made_adapter)
