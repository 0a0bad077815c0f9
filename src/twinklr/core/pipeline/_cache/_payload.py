"""A cache entry's payload: JSON text, or a frame of JSON and the binary values beside it.

An entry with no binary value is its JSON (UTF-8), as readable as ever. One with blobs
(bytes, numpy arrays) is a frame, so no value is ever base64 inside JSON::

    MAGIC (8 bytes) | header length (8 bytes, little-endian) | header JSON
    | padding to 64 bytes | blob 0 | padding | blob 1 | ...

The header is the entry's JSON with a ``"blobs"`` list of ``[offset, size]`` (from the
start of the first blob). Packing is the one copy an entry costs: it is the snapshot of
the value as it was when the stage finished. A large frame is allocated by numpy when
the program uses it (its large buffers are cheap to fault in); reading hands out views,
never copies (the codec copies each value out of its view).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from ._codec import Blob, CodecError
from ._store import UTF8, Payload

MAGIC = b"TWKLRC\x01\n"
_ALIGN = 64
#: Frames above this are allocated by numpy (when imported), below it by bytearray.
_LARGE = 1 << 20


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def pack(document: dict[str, Any], blobs: Sequence[Blob]) -> Payload:
    """``document`` as JSON, with ``blobs`` framed after it (copied in)."""
    if not blobs:
        return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode(*UTF8)
    table, offset = [], 0
    for blob in blobs:
        offset = _aligned(offset)
        table.append([offset, blob.size])
        offset += blob.size
    header = json.dumps(
        {**document, "blobs": table}, separators=(",", ":"), ensure_ascii=False
    ).encode(*UTF8)
    start = _aligned(len(MAGIC) + 8 + len(header))
    frame = _allocate(start + offset)
    frame[: len(MAGIC)] = MAGIC
    frame[len(MAGIC) : len(MAGIC) + 8] = len(header).to_bytes(8, "little")
    frame[len(MAGIC) + 8 : len(MAGIC) + 8 + len(header)] = header
    for blob, (at, _size) in zip(blobs, table, strict=True):
        at += start  # noqa: PLW2901
        for chunk in blob.chunks:
            view = memoryview(chunk).cast("B")
            frame[at : at + view.nbytes] = view
            at += view.nbytes  # noqa: PLW2901
    return frame


def _allocate(size: int) -> memoryview:
    numpy = sys.modules.get("numpy")
    if numpy is not None and size > _LARGE:
        return memoryview(numpy.zeros(size, dtype=numpy.uint8))
    return memoryview(bytearray(size))


def unpack(payload: Payload) -> tuple[dict[str, Any], list[memoryview]]:
    """The document and its blobs (views of ``payload``); `CodecError` when the
    payload is neither JSON nor a whole frame."""
    if type(payload) is bytes and not payload.startswith(MAGIC):  # the common case
        return _document(payload.decode(*UTF8)), []
    view = memoryview(payload).cast("B")
    if view[: len(MAGIC)] != MAGIC:
        return _document(bytes(view).decode(*UTF8)), []
    length = int.from_bytes(view[len(MAGIC) : len(MAGIC) + 8], "little")
    end = len(MAGIC) + 8 + length
    if end > view.nbytes:
        msg = "a stored entry's header runs past its end"
        raise CodecError(msg)
    document = _document(bytes(view[len(MAGIC) + 8 : end]).decode(*UTF8))
    start = _aligned(end)
    blobs = []
    for entry in document.pop("blobs", ()):
        offset, size = entry
        if not (type(offset) is int and type(size) is int and offset >= 0 and size >= 0):
            msg = f"a stored entry's blob table is malformed: {entry!r}"
            raise CodecError(msg)
        if start + offset + size > view.nbytes:
            msg = "a stored entry's blob runs past its end"
            raise CodecError(msg)
        blobs.append(view[start + offset : start + offset + size])
    return document, blobs


def _document(text: str) -> dict[str, Any]:
    document = json.loads(text)
    if not isinstance(document, dict):
        msg = "a stored entry is not a JSON object"
        raise CodecError(msg)
    return document
