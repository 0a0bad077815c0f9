"""A definition shown at ``/definition``: loaded from its file, reloaded when the file
changes, drawn with its validation problems on the stages they concern."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Container
from pathlib import Path
from typing import Any

from .._kinds._gate import WaitForInput
from .._kinds._validation import find_problems
from ..definition import PipelineDefinition, StageDefinition
from ..errors import ValidationProblem

Loader = Callable[[str], PipelineDefinition]


class DefinitionSource:
    """The definition at ``target`` (``module:attr``), reloaded when its file changes."""

    def __init__(self, target: str, load: Loader) -> None:
        self.target = target
        self.load = load
        self.module = target.partition(":")[0]
        self._stamp: int | None = None
        self._shown: dict[str, Any] = {}
        self._version = 0
        self._lock = threading.Lock()  # open pages ask from worker threads at once

    def _file(self) -> Path | None:
        module = sys.modules.get(self.module)
        origin = getattr(module, "__file__", None)
        if origin is None:
            if "" not in sys.path:
                sys.path.insert(0, "")
            try:
                spec = importlib.util.find_spec(self.module)
            except (ImportError, ValueError):
                return None
            origin = spec.origin if spec is not None else None
        return Path(origin) if origin else None

    def current(self) -> dict[str, Any]:
        """The definition as it is in its file now: its graph and problems, or why it
        cannot be loaded (``error``); ``version`` counts the reloads."""
        with self._lock:
            return self._current()

    def _current(self) -> dict[str, Any]:
        path = self._file()
        try:
            stamp = path.stat().st_mtime_ns if path is not None else 0
        except OSError:
            stamp = 0
        if stamp == self._stamp:
            return self._shown
        first = self._stamp is None
        self._stamp = stamp
        self._version += 1
        self._shown = self._read(reload=not first)
        return self._shown

    def _read(self, *, reload: bool) -> dict[str, Any]:
        shown: dict[str, Any] = {"target": self.target, "version": self._version}
        try:
            if reload and self.module in sys.modules:
                importlib.reload(sys.modules[self.module])
            pipeline = self.load(self.target)
        except Exception as exc:  # noqa: BLE001 - shown on the page until the file is fixed
            return {**shown, "pipeline": None, "stages": [], "problems": [], "error": str(exc)}
        stages = definition_graph(pipeline)
        ids = {stage["id"] for stage in stages}
        problems = [
            {"message": problem.message, "kind": problem.kind, "stages": concerns(problem, ids)}
            for problem in find_problems(pipeline)
        ]
        return {
            **shown,
            "pipeline": str(pipeline.name),
            "stages": stages,
            "problems": problems,
            "error": None,
        }


def definition_graph(pipeline: PipelineDefinition) -> list[dict[str, Any]]:
    """A definition's stages as the page draws them, valid or not."""
    stages = []
    declared: list[object] = list(pipeline.stages)  # (a bad definition may hold anything)
    for position, stage in enumerate(declared):
        if not isinstance(stage, StageDefinition):
            stages.append({"id": f"#{position}", "inputs": [], "pattern": "?"})
            continue
        inputs = stage.inputs if isinstance(stage.inputs, list | tuple) else []
        shown = {
            "id": str(stage.id),
            "inputs": [str(name) for name in inputs],
            "pattern": getattr(stage.pattern, "value", str(stage.pattern)),
        }
        if isinstance(stage.stage, WaitForInput):
            shown["gate"] = True
        routes: object = stage.routes
        if isinstance(routes, dict):
            shown["routes"] = {
                str(branch): [str(i) for i in ids] if isinstance(ids, tuple) else []
                for branch, ids in routes.items()
            }
        stages.append(shown)
    return stages


def concerns(problem: ValidationProblem, ids: Container[str]) -> list[str]:
    """The stages of the shown graph a validation problem is about: a cycle's stages, or
    the one stage it names."""
    named = problem.cycle or ((problem.stage,) if problem.stage is not None else ())
    return [name for name in dict.fromkeys(named) if name in ids]
