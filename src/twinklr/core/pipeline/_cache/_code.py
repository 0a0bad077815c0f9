"""What a cache key says about a stage's code: the code that produces its output.

That is a function stage's function; for any other stage its class, every class it
inherits from (an inherited ``execute`` counts), and whatever the stage declares it
runs with ``cache_code()`` (a ``SyncStage``'s function, a ``RefineStage``'s planner and
judge). Editing any of it changes the key, so an old output is never served for new code.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import linecache
import types
import weakref
from typing import Any

from .._kinds._function import FunctionStage

#: Modules whose classes are plumbing, not a stage's code (``object``, ``Generic``, ...).
_PLUMBING = frozenset({"builtins", "typing", "typing_extensions", "abc", "collections.abc"})

# Per piece of code (a class or a function), held weakly: code made per run is not kept.
_hashes: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
# A stage class's (or a function stage's function's) name and hash, held weakly too.
_identities: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()


def owner(stage: object) -> Any:
    """What a stage's code belongs to: a function stage's function, else its class
    (what per-stage facts such as its declared output type are kept by)."""
    return _as_code(stage.fn) if isinstance(stage, FunctionStage) else type(stage)


def code_parts(stage: object) -> tuple[Any, ...]:
    """The classes and functions whose source determines ``stage``'s output."""
    if isinstance(stage, FunctionStage):
        return (_as_code(stage.fn),)
    declared = getattr(stage, "cache_code", None)
    extra = tuple(_as_code(part) for part in declared()) if callable(declared) else ()
    return (type(stage), *extra)


def code_identity(stage: object) -> tuple[str, str]:
    """The qualified names of the stage's code and a SHA-256 over the source of all of
    it: what a key says about the code. Kept per class (per function, for a function
    stage) unless the stage declares ``cache_code()``: a key is made per stage run."""
    if not isinstance(stage, FunctionStage) and getattr(stage, "cache_code", None) is not None:
        return _identity(stage)
    memo = owner(stage)
    try:
        return _identities[memo]
    except KeyError:
        known = _identities[memo] = _identity(stage)
        return known
    except TypeError:  # pragma: no cover (not weakly referenceable: computed every time)
        return _identity(stage)


def _identity(stage: object) -> tuple[str, str]:
    parts = code_parts(stage)
    digests = "".join(_hash(part) for part in parts)
    return (
        ",".join(qualified_name(part) for part in parts),
        hashlib.sha256(digests.encode()).hexdigest(),
    )


def qualified_name(code: Any) -> str:
    """``module.qualname`` of a class or function (its repr when it has neither); a
    partial's function's, with its arguments."""
    if isinstance(code, functools.partial):
        return f"{qualified_name(_as_code(code.func))}{_arguments_of(code)}"
    qualname = getattr(code, "__qualname__", None)
    return f"{code.__module__}.{qualname}" if qualname else repr(code)


def _as_code(part: Any) -> Any:
    """A function, class or partial as it is (a partial's arguments decide its output
    too); a bound method's function; any other object's class."""
    if isinstance(part, functools.partial):
        return part
    if inspect.ismethod(part):
        return part.__func__
    if inspect.isroutine(part) or isinstance(part, type):
        return part
    return type(part)


def _hash(code: Any) -> str:
    try:
        return _hashes[code]
    except KeyError:
        pass
    except TypeError:  # pragma: no cover (not weakly referenceable: computed every time)
        return _digest(code)
    known = _hashes[code] = _digest(code)
    return known


def _arguments_of(call: functools.partial[Any]) -> str:
    # Reprs of plain values are stable; one that shows an address makes a key that never
    # matches again (a miss, never a stale hit).
    return repr((call.args, sorted(call.keywords.items())))


def _digest(code: Any) -> str:
    if isinstance(code, functools.partial):
        return hashlib.sha256(
            (_digest(_as_code(code.func)) + _arguments_of(code)).encode()
        ).hexdigest()
    pieces = (
        [k for k in inspect.getmro(code) if k.__module__ not in _PLUMBING]
        if isinstance(code, type)
        else [code]
    )
    texts = []
    for piece in pieces:
        try:
            texts.append(
                _class_source(piece) if isinstance(piece, type) else inspect.getsource(piece)
            )
        except (OSError, TypeError):  # no source to read (typed into a REPL): its name
            texts.append(qualified_name(piece))
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def _class_source(cls: type) -> str:
    """``inspect.getsource(cls)``, the same text, without parsing the class's whole
    module again for every class (``inspect`` does: 10 ms a class of a big module, paid
    by a run's set-up). A module's class lines are found once per version of its file."""
    file = inspect.getsourcefile(cls)
    if not file:
        return inspect.getsource(cls)  # (a file-less class: inspect says why not)
    linecache.checkcache(file)
    module = inspect.getmodule(cls, file)
    lines = linecache.getlines(file, module.__dict__ if module else None)
    source = "".join(lines)
    key = (file, hash(source))
    starts = _class_lines.get(key)
    if starts is None:
        starts = _class_lines[key] = _ClassLines.of(source)
    first = starts.get(cls.__qualname__)
    if first is None:
        msg = "could not find class definition"
        raise OSError(msg)
    return "".join(inspect.getblock(lines[first:]))


#: Per source file version: each class's qualified name -> its first line (0-based,
#: decorators included), as ``inspect`` finds it.
_class_lines: dict[tuple[str, int], dict[str, int]] = {}


class _ClassLines(ast.NodeVisitor):
    """Where each class of a module begins, walked once (as ``inspect``'s own finder
    walks for one class: the first class of a qualified name wins)."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.starts: dict[str, int] = {}

    @classmethod
    def of(cls, source: str) -> dict[str, int]:
        finder = cls()
        finder.visit(ast.parse(source))
        return finder.starts

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.stack += [node.name, "<locals>"]
        self.generic_visit(node)
        del self.stack[-2:]

    visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(node.name)
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        self.starts.setdefault(".".join(self.stack), first - 1)
        self.generic_visit(node)
        self.stack.pop()


def captured(code: Any) -> list[tuple[str, Any]]:
    """What a function (one of `code_parts`) sees besides its input and its source: the
    values it closes over and its default arguments, each named as a warning names it
    (``'client' it closes over``, ``the default of 'k'``); a function among them stands
    for its name, source and own captures, a class for its name and source. They go
    into the key: two closures of one function with other values are other code."""
    return [] if isinstance(code, type) else _captures(code, set())


def _captures(code: Any, seen: set[int]) -> list[tuple[str, Any]]:
    if isinstance(code, functools.partial):  # its arguments are in its name already
        return _captures(_as_code(code.func), seen)
    body = getattr(code, "__code__", None)
    if body is None or id(code) in seen:  # a builtin, or a function met before
        return []
    seen.add(id(code))
    named: list[tuple[str, Any]] = []
    for name, cell in zip(body.co_freevars, code.__closure__ or (), strict=True):
        try:
            value = cell.cell_contents
        except ValueError:  # a name the enclosing function has not bound yet
            continue
        named.append((f"{name!r} it closes over", _as_value(value, seen)))
    positional = body.co_varnames[: body.co_argcount]
    defaults = code.__defaults__ or ()
    named.extend(
        (f"the default of {name!r}", _as_value(value, seen))
        for name, value in zip(positional[len(positional) - len(defaults) :], defaults, strict=True)
    )
    keywords = code.__kwdefaults__ or {}
    named.extend((f"the default of {k!r}", _as_value(v, seen)) for k, v in keywords.items())
    return named


def _as_value(value: Any, seen: set[int]) -> Any:
    """A captured value as it is, or code as what identifies it."""
    if isinstance(value, types.ModuleType):
        return ("module", value.__name__)
    if isinstance(value, type):
        return ("class", qualified_name(value), _hash(value))
    if inspect.isroutine(value) or isinstance(value, functools.partial):
        code = _as_code(value)
        return ("code", qualified_name(code), _hash(code), _captures(code, seen))
    return value
