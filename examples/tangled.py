"""A definition with problems, to look at in the validation view:

    twinklr-pipeline ui --pipeline tangled:pipeline      (from this directory)

then open http://127.0.0.1:8000/definition. ``plan`` and ``render`` wait for each other
(a cycle) and ``publish`` reads a stage that does not exist. Fix the file and the page
redraws itself.
"""

from __future__ import annotations

from twinklr.core.pipeline import ExecutionPattern, PipelineDefinition, StageDefinition


async def echo(value: object) -> object:
    return value


pipeline = PipelineDefinition(
    "tangled",
    [
        StageDefinition("audio", echo),
        StageDefinition("lyrics", echo, inputs=["audio"]),
        StageDefinition("plan", echo, inputs=["audio", "lyrics", "render"]),
        StageDefinition("groups", echo, inputs=["plan"], pattern=ExecutionPattern.FAN_OUT),
        StageDefinition("render", echo, inputs=["groups"]),
        StageDefinition("publish", echo, inputs=["render", "preview"]),
    ],
)
