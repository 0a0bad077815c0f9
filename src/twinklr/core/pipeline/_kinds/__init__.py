"""The stage kinds and the stage definition: function stages, the stage protocol, gates,
sub-pipelines, `StageDefinition` with its options, and validation.

Imports the values, ``errors`` and ``_base``; inside, ``_function`` < ``_protocol`` |
``_gate`` | ``_subpipeline`` < ``_stage`` < ``_validation``. ``definition`` (with
`PipelineDefinition`) sits on top of it. One declared exception: a `SubPipelineStage`
run on its own, outside any run, imports the engine's default executor then.
"""
