"""A stored value's bytes: JSON text (every str kept exactly) or a frame with its binary
parts."""

from __future__ import annotations

from twinklr.core.pipeline import (
    CacheStore,
    PipelineDefinition,
    PipelineExecutor,
    StageDefinition,
)
from twinklr.core.pipeline._cache._payload import pack, unpack


def test_a_document_with_a_lone_surrogate_comes_back_exactly() -> None:
    document = {"name": "carol\udcff.wav"}
    assert unpack(pack(document, []))[0] == document


async def test_a_string_with_a_lone_surrogate_is_cached_and_served_exactly(
    store: CacheStore,
) -> None:
    # What os.fsdecode gives for a file name that is not UTF-8.
    name = "carol\udcff.wav"
    calls: list[str] = []

    async def title(path: str) -> str:
        calls.append(path)
        return path.upper()

    pipeline = PipelineDefinition("songs", [StageDefinition("title", title)])
    executor = PipelineExecutor(cache=store)
    first = await executor.execute(pipeline, name)
    again = await executor.execute(pipeline, name)
    assert first.success
    assert again.cached_stages == ("title",)
    assert again.outputs["title"] == name.upper() == first.outputs["title"]
    assert calls == [name]
