"""What makes a definition valid: every problem at once, in O(V + E).

Duplicate or invalid ids, unknown, repeated or self inputs, cycles spelled out, objects
that are not stages, fan-out and policy misconfigurations, sub-pipelines' own problems.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from .._base import _graph
from .._values._policy import ExecutionPattern, RetryConfig
from ..errors import PipelineValidationError, ProblemKind, ValidationProblem
from ._function import FunctionStage, arguments, signature_text
from ._gate import WaitForInput
from ._protocol import stage_problem, stage_problems_depend_on_the_instance
from ._stage import StageDefinition, one_attempt
from ._subpipeline import SubPipelineStage

_SEQUENTIAL, _PARALLEL = ExecutionPattern.SEQUENTIAL, ExecutionPattern.PARALLEL


class Definition(Protocol):
    """A pipeline as validation reads it (`PipelineDefinition`, defined above)."""

    @property
    def name(self) -> str: ...
    @property
    def fail_fast(self) -> bool: ...
    @property
    def stages(self) -> Sequence[StageDefinition[Any]]: ...


def _problem(kind: ProblemKind, stage: object, message: str) -> ValidationProblem:
    return ValidationProblem(
        message=message, kind=kind, stage=stage if isinstance(stage, str) else None
    )


def find_problems(pipeline: Definition) -> list[ValidationProblem]:
    """Every problem with ``pipeline``, in declaration order, then cycles."""
    return analyse(pipeline)[0]


def check(pipeline: Definition) -> tuple[list[tuple[int, ...]], list[int]]:
    """The dependency lists (by index) and a topological order of a valid ``pipeline``;
    raise `PipelineValidationError` listing every problem if it is not valid."""
    problems, deps, order = analyse(pipeline)
    if problems:
        raise PipelineValidationError(pipeline.name, problems)
    assert order is not None  # noqa: S101 (no problems means no cycle)
    return deps, order


def _pipeline_problems(pipeline: Definition) -> list[ValidationProblem]:
    """What is wrong with the pipeline's own fields."""
    problems: list[ValidationProblem] = []
    name = pipeline.name
    if not isinstance(name, str) or not name:
        problems.append(
            _problem("pipeline", None, f"pipeline name must be a non-empty string, got {name!r}")
        )
    fail_fast: object = pipeline.fail_fast
    if type(fail_fast) is not bool:
        problems.append(
            _problem(
                "pipeline",
                None,
                f"pipeline '{name}': fail_fast must be True or False, got {fail_fast!r}",
            )
        )
    return problems


def analyse(
    pipeline: Definition,
) -> tuple[list[ValidationProblem], list[tuple[int, ...]], list[int] | None]:
    """Problems, dependency lists (by index) and a topological order (None if cyclic)."""
    problems = _pipeline_problems(pipeline)
    name = pipeline.name
    stages = pipeline.stages
    if not stages:
        return [*problems, _problem("pipeline", None, f"pipeline '{name}' has no stages")], [], None
    strays = [stage for stage in stages if not isinstance(stage, StageDefinition)]
    if strays:  # the graph cannot be read without them: report them alone
        problems.extend(
            _problem(
                "stray",
                None,
                f"pipeline '{name}': stages must be StageDefinition objects, "
                f"got {type(stray).__name__} {stray!r:.60}",
            )
            for stray in strays
        )
        return problems, [], None

    ids = [stage.id for stage in stages]
    index = {stage_id: position for position, stage_id in enumerate(ids)}
    if len(index) != len(ids) or not all(isinstance(s, str) and s for s in ids):
        index = {}
        for position, stage_id in enumerate(ids):
            if not isinstance(stage_id, str) or not stage_id:
                problems.append(
                    _problem(
                        "id",
                        None,
                        f"stage #{position} has an invalid id {stage_id!r} "
                        "(expected a non-empty string)",
                    )
                )
            index.setdefault(stage_id, position)  # the first declaration wins
        problems.extend(
            _problem("id", stage_id, f"stage id '{stage_id}' is declared {count} times")
            for stage_id, count in Counter(ids).items()
            if count > 1
        )

    deps: list[tuple[int, ...]] = []
    position_of = index.__getitem__
    checked: dict[type, str | None] = {}
    has_entry = False
    for stage in stages:
        inputs = stage.inputs
        suspect = False
        if not inputs:
            has_entry = True
            stage_deps: tuple[int, ...] = ()
        else:
            try:
                stage_deps = tuple(map(position_of, inputs))
            except KeyError:  # an unknown input: reported below; keep the known ones
                stage_deps = tuple(index[d] for d in inputs if d in index)
                suspect = True
            else:
                suspect = stage.id in inputs or (
                    len(inputs) > 1 and len(set(inputs)) != len(inputs)
                )
            if suspect:
                own = index.get(stage.id, -1)
                stage_deps = tuple(d for d in dict.fromkeys(stage_deps) if d != own)
        deps.append(stage_deps)
        if (  # the plain stage, checked cheaply: most stages of a large pipeline look so
            not suspect
            and (
                checked.get(type(stage.stage), "unchecked") is None
                or (isinstance(stage.stage, FunctionStage) and stage.stage.problem() is None)
            )
            and type(stage.stage) is not SubPipelineStage
            and (stage.pattern is _SEQUENTIAL or stage.pattern is _PARALLEL)  # (any value)
            and stage.condition is None
            and one_attempt(stage)
            and stage.fan_out_over is None
            and stage.max_concurrent_fan_out is None
            and stage.version == "1"
            and stage.cache_ttl is None
            and type(stage.critical) is bool
            and type(stage.cache) is bool
            and "execute" not in getattr(stage.stage, "__dict__", ())
        ):
            continue
        problems.extend(_stage_problems(stage, index, checked, check_inputs=suspect))

    problems.extend(
        problem
        for stage in stages
        if stage.routes is not None or stage.router is not None
        for problem in _route_problems(stage, stages, index)
    )
    if not has_entry:
        problems.append(
            _problem(
                "pipeline", None, f"pipeline '{name}' has no entry stage (every stage has inputs)"
            )
        )
    order = _graph.topological_order(deps)
    if order is None:
        for cycle in _graph.find_cycles(deps):
            around = tuple(ids[node] for node in cycle)
            problems.append(
                ValidationProblem(
                    message="dependency cycle: " + " -> ".join(around), kind="cycle", cycle=around
                )
            )
    return problems, deps, order


def _stage_problems(
    stage: StageDefinition[Any],
    index: dict[str, int],
    checked: dict[type, str | None],
    *,
    check_inputs: bool,
) -> list[ValidationProblem]:
    # Stages of one class are checked once (execute is normally a method of the class).
    kind = type(stage.stage)
    if kind in checked and "execute" not in getattr(stage.stage, "__dict__", ()):
        bad_stage = checked[kind]
    else:
        bad_stage = stage_problem(stage.stage)
        if not stage_problems_depend_on_the_instance(stage.stage):
            checked[kind] = bad_stage
    where = f"stage '{stage.id}'"
    problems: list[ValidationProblem] = []
    if bad_stage is not None:
        problems.append(_problem("stage", stage.id, f"{where}: {bad_stage}"))
    elif isinstance(stage.stage, SubPipelineStage):
        inner = stage.stage.pipeline
        problems.extend(
            _problem("sub_pipeline", stage.id, f"{where} (sub-pipeline '{inner.name}'): {problem}")
            for problem in find_problems(inner)
        )

    if check_inputs:
        problems.extend(_input_problems(stage, index, where))
    # Typed as object: users' values are checked here, whatever the annotations promise.
    pattern: object = stage.pattern
    if not isinstance(pattern, ExecutionPattern):
        problems.append(
            _problem(
                "policy", stage.id, f"{where}: pattern must be an ExecutionPattern, got {pattern!r}"
            )
        )
    problems.extend(_fan_out_problems(stage, where))
    if pattern is ExecutionPattern.FAN_OUT and isinstance(stage.stage, WaitForInput):
        problems.append(
            _problem(
                "fan_out",
                stage.id,
                f"{where}: a WaitForInput gate cannot be a fan-out stage (one answer)",
            )
        )
    if pattern is ExecutionPattern.CONDITIONAL and stage.condition is None:
        problems.append(_problem("condition", stage.id, f"conditional {where} has no condition"))
    condition: object = stage.condition
    if condition is not None and not callable(condition):
        problems.append(
            _problem(
                "condition", stage.id, f"{where}: condition must be callable, got {condition!r}"
            )
        )
    elif callable(condition) and arguments(condition) is None:
        problems.append(
            _problem(
                "condition",
                stage.id,
                f"{where}: condition{signature_text(condition)} must take (context) or "
                "(context, input)",
            )
        )
    timeout: object = stage.timeout_ms
    if timeout is not None and (
        not isinstance(timeout, int | float) or isinstance(timeout, bool) or not timeout > 0
    ):
        problems.append(
            _problem(
                "policy", stage.id, f"{where}: timeout_ms must be a number > 0, got {timeout!r}"
            )
        )
    retry: object = stage.retry_config
    if retry is not None and not isinstance(retry, RetryConfig):
        problems.append(
            _problem(
                "policy",
                stage.id,
                f"{where}: retry_config must be a RetryConfig, got {type(retry).__name__}",
            )
        )
    problems.extend(_cache_problems(stage, where))
    problems.extend(
        _problem("policy", stage.id, f"{where}: {field} must be True or False, got {value!r}")
        for field, value in (("critical", stage.critical), ("cache", stage.cache))
        if type(value) is not bool
    )
    return problems


def _cache_problems(stage: StageDefinition[Any], where: str) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    version: object = stage.version
    if not isinstance(version, str) or not version:
        problems.append(
            _problem(
                "policy", stage.id, f"{where}: version must be a non-empty string, got {version!r}"
            )
        )
    ttl: object = stage.cache_ttl
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    if ttl is not None and (
        not isinstance(seconds, int | float) or isinstance(seconds, bool) or not seconds > 0
    ):
        problems.append(
            _problem(
                "policy",
                stage.id,
                f"{where}: cache_ttl must be > 0 seconds (or a timedelta), got {ttl!r}",
            )
        )
    return problems


def _input_problems(
    stage: StageDefinition[Any], index: dict[str, int], where: str
) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    named: Counter[object] = Counter(stage.inputs)
    for name, count in named.items():
        if not isinstance(name, str):
            problems.append(
                _problem(
                    "input", stage.id, f"{where}: inputs must be stage ids (strings), got {name!r}"
                )
            )
        elif name == stage.id:
            problems.append(_problem("input", stage.id, f"{where} depends on itself"))
        elif name not in index:
            problems.append(
                _problem("input", stage.id, f"{where} depends on unknown stage '{name}'")
            )
        if count > 1:
            problems.append(
                _problem("input", stage.id, f"{where} lists input '{name}' {count} times")
            )
    return problems


def _fan_out_problems(stage: StageDefinition[Any], where: str) -> list[ValidationProblem]:
    problems: list[ValidationProblem] = []
    fan_out = stage.pattern is ExecutionPattern.FAN_OUT
    if fan_out and not stage.inputs:
        problems.append(
            _problem("fan_out", stage.id, f"fan-out {where} has no input to fan out over")
        )
    if fan_out and len(stage.inputs) > 1 and stage.fan_out_over is None:
        listed = ", ".join(f"'{name}'" for name in stage.inputs)
        problems.append(
            _problem(
                "fan_out",
                stage.id,
                f"fan-out {where} has {len(stage.inputs)} inputs ({listed}); "
                "set fan_out_over to the one holding the list",
            )
        )
    if stage.fan_out_over is not None and not fan_out:
        problems.append(
            _problem(
                "fan_out", stage.id, f"{where} sets fan_out_over but its pattern is not FAN_OUT"
            )
        )
    elif stage.fan_out_over is not None and stage.fan_out_over not in stage.inputs:
        problems.append(
            _problem(
                "fan_out",
                stage.id,
                f"{where}: fan_out_over '{stage.fan_out_over}' is not one of its inputs",
            )
        )
    limit = stage.max_concurrent_fan_out
    if limit is not None and not fan_out:
        problems.append(
            _problem(
                "fan_out",
                stage.id,
                f"{where} sets max_concurrent_fan_out but its pattern is not FAN_OUT",
            )
        )
    elif limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        problems.append(
            _problem(
                "fan_out",
                stage.id,
                f"{where}: max_concurrent_fan_out must be an int >= 1, got {limit!r}",
            )
        )
    return problems


def _route_problems(
    stage: StageDefinition[Any], stages: Sequence[StageDefinition[Any]], index: dict[str, int]
) -> list[ValidationProblem]:
    """A routing stage's branches: a mapping of names to stages that read this one."""
    where = f"stage '{stage.id}'"
    routes: object = stage.routes
    router: object = stage.router
    problems: list[ValidationProblem] = []
    if router is not None and not callable(router):
        problems.append(
            _problem("route", stage.id, f"{where}: router must be callable, got {router!r}")
        )
    if routes is None:
        problems.append(_problem("route", stage.id, f"{where} has a router but no routes"))
        return problems
    if not isinstance(routes, dict) or not routes:
        return [
            *problems,
            _problem(
                "route",
                stage.id,
                f"{where}: routes must be a non-empty {{branch: [stage ids]}}, got {routes!r}",
            ),
        ]
    for branch, ids in routes.items():
        if not isinstance(branch, str) or not branch:
            problems.append(
                _problem(
                    "route",
                    stage.id,
                    f"{where}: a branch name must be a non-empty string, got {branch!r}",
                )
            )
        if not isinstance(ids, tuple):
            problems.append(
                _problem(
                    "route",
                    stage.id,
                    f"{where}: branch {branch!r} must list stage ids, got {ids!r}",
                )
            )
            continue
        for target in ids:
            if target not in index:
                problems.append(
                    _problem(
                        "route",
                        stage.id,
                        f"{where} routes branch {branch!r} to unknown stage {target!r}",
                    )
                )
            elif stage.id not in stages[index[target]].inputs:
                problems.append(
                    _problem(
                        "route",
                        stage.id,
                        f"{where} routes branch {branch!r} to stage '{target}', "
                        f"which does not take '{stage.id}' as an input",
                    )
                )
    return problems
