"""Declarative pipeline definitions: what runs, on which inputs, with which policy.

Definitions are frozen values. Constructing an invalid one does not raise; ``validate()``
and ``validate_pipeline()`` report every problem at once, and executing an invalid one
raises `PipelineValidationError` before any stage runs.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import traceback
import weakref
from collections.abc import Iterable
from typing import Any, TypeVar

import attrs

from ._base._graph import waves
from ._kinds._stage import StageDefinition, StageOptions
from ._kinds._subpipeline import Pipeline
from ._kinds._validation import check, find_problems
from ._values._policy import ExecutionPattern, RetryConfig

__all__ = ["ExecutionPattern", "PipelineDefinition", "RetryConfig", "StageDefinition"]

# The stage definition and the policy values are defined below (the stage kinds and the
# values read them) but are the definition's vocabulary: users import, see and pickle
# them from here.
ExecutionPattern.__module__ = RetryConfig.__module__ = __name__
StageDefinition.__module__ = StageOptions.__module__ = __name__


# Every definition alive in this process, and where some came from (MODULE:ATTR, for
# the command line), so a suspended run can be resumed without being handed its own.
_defined: weakref.WeakValueDictionary[int, PipelineDefinition] = weakref.WeakValueDictionary()
_sources: dict[int, tuple[weakref.ref[PipelineDefinition], str]] = {}


def _to_stages(value: Iterable[StageDefinition[Any]] | None) -> tuple[Any, ...]:
    # Never raises: what is wrong with the stages is validation's to report.
    given: object = value
    if given is None:
        return ()
    if isinstance(given, Iterable):
        return tuple(given)
    return (given,)


def definitions_named(name: str) -> list[PipelineDefinition]:
    """The definitions called ``name`` alive in this process."""
    return [found for found in list(_defined.values()) if found.name == name]


def remember_source(pipeline: PipelineDefinition, target: str) -> None:
    """Note that ``pipeline`` was loaded from ``target`` (MODULE:ATTR)."""
    key = id(pipeline)
    _sources[key] = (weakref.ref(pipeline, lambda _: _sources.pop(key, None)), target)


def source_of(pipeline: PipelineDefinition) -> str | None:
    """Where ``pipeline`` was loaded from (`remember_source`), if known."""
    known = _sources.get(id(pipeline))
    return known[1] if known is not None and known[0]() is pipeline else None


def split_target(target: str) -> tuple[str, str]:
    """``MODULE:ATTR`` as its two parts; `ValueError` when it is not of that form."""
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        msg = f"expected MODULE:ATTR, got {target!r}"
        raise ValueError(msg)
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules in the current directory
    return module, attribute


def load_definition(target: str) -> PipelineDefinition:
    """The definition at ``MODULE:ATTR`` (or returned by the factory found there);
    `ValueError` says in a line why there is none (whatever importing the module or
    calling the factory raised, with where)."""
    return load_target(target, PipelineDefinition)


Loaded = TypeVar("Loaded")


def load_target(target: str, kind: type[Loaded]) -> Loaded:
    """The ``kind`` instance at ``MODULE:ATTR``, or returned by the function found there
    (called without arguments); `ValueError` says in a line why there is none, and, for
    a name the module does not have, which ones it has."""
    module_name, attribute = split_target(target)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"cannot import {module_name!r}: {exc}"
        if module_name.endswith(".py"):
            dotted = module_name.removesuffix(".py").replace("/", ".").strip(".")
            msg += f" (name the module, not its file: {dotted}:{attribute})"
        raise ValueError(msg) from exc
    except SyntaxError as exc:
        msg = f"cannot import {module_name!r}: {exc.msg} ({exc.filename}, line {exc.lineno})"
        raise ValueError(msg) from exc
    except Exception as exc:
        msg = f"importing {module_name!r} raised {_raised(exc)}"
        raise ValueError(msg) from exc
    try:
        found = getattr(module, attribute)
    except AttributeError as exc:
        known = _instances_in(module, attribute, kind)
        msg = f"module {module_name!r} has no attribute {attribute!r}; {known}"
        raise ValueError(msg) from exc
    if not isinstance(found, kind) and callable(found):
        try:
            found = found()
        except Exception as exc:
            msg = f"calling {target}() raised {_raised(exc)}"
            raise ValueError(msg) from exc
    if not isinstance(found, kind):
        name = kind.__name__
        msg = f"{target} is a {type(found).__name__}, not a {name} (or a function making one)"
        raise ValueError(msg)  # noqa: TRY004 (a wrong target, like every error here)
    return found


def _instances_in(module: object, wanted: str, kind: type[Any]) -> str:
    """The ``kind`` instances ``module`` has (and functions annotated to return one),
    the closest to ``wanted`` first, as a clause."""
    names = []
    for name, value in vars(module).items():
        returns = getattr(value, "__annotations__", {}).get("return") if callable(value) else None
        if isinstance(value, kind) or returns in (kind, kind.__name__):
            names.append(name)
    if not names:
        return f"it has no {kind.__name__} (nor a function annotated to return one)"

    def likeness(name: str) -> float:
        return difflib.SequenceMatcher(None, wanted.lower(), name.lower()).ratio()

    ordered = ", ".join(sorted(names, key=lambda name: -likeness(name)))
    return f"its {kind.__name__}s: {ordered}"


def _raised(exc: BaseException) -> str:
    """``exc`` in a line: its type, message and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


@attrs.frozen
class PipelineDefinition(Pipeline):
    """A named set of stages; their ``inputs`` form the DAG."""

    name: str
    """The pipeline's name (also used in cache keys and logs)."""
    stages: tuple[StageDefinition[Any], ...] = attrs.field(converter=_to_stages)
    """The stages, in any order consistent with your reading; execution follows data."""
    description: str | None = None
    """Free text for people and graphs."""
    fail_fast: bool = True
    """Cancel everything on the first critical failure (the default).
    With False, independent branches run on and only dependents of the failure are
    cancelled (never started)."""
    _plan: Any = attrs.field(default=None, init=False, eq=False, repr=False)
    # The engine's compiled plan, kept on the definition once it is first run or
    # validated (derived from the fields, it never changes them).

    def __attrs_post_init__(self) -> None:
        _defined[id(self)] = self  # (`PipelineExecutor.resume` looks a run's one up)

    def validate_pipeline(self) -> list[str]:
        """Every problem with this definition, as messages; empty when valid."""
        return [problem.message for problem in find_problems(self)]

    def validate(self) -> None:
        """Raise [PipelineValidationError][twinklr.core.pipeline.PipelineValidationError]
        listing every problem, if there is any."""
        if self._plan is None:
            check(self)

    def execution_waves(self) -> list[list[str]]:
        """Stage ids grouped by depth, for display: the executor never waits for a wave."""
        deps, order = check(self)
        return waves([stage.id for stage in self.stages], deps, order)

    def get_stage(self, stage_id: str) -> StageDefinition[Any]:
        """The stage definition with ``stage_id``; KeyError names the id if absent."""
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        msg = f"pipeline '{self.name}' has no stage '{stage_id}'"
        raise KeyError(msg)

    def get_entry_points(self) -> list[StageDefinition[Any]]:
        """The stages without inputs, in definition order: they receive the run's
        initial input."""
        return [
            stage
            for stage in self.stages
            if isinstance(stage, StageDefinition) and not stage.inputs
        ]
