"""numpy values as blobs in the ``.npy`` format, without pickle: dtype and shape exact,
object arrays refused both ways. numpy is the program's own: never imported here."""

from __future__ import annotations

import io
import math
import sys
from typing import Any


class NpyError(TypeError):
    """A numpy value that cannot be stored, or a blob that is not one `chunks` wrote."""


def chunks(numpy: Any, value: Any) -> tuple[Any, ...]:
    """An array or a numpy scalar as ``.npy`` bytes: its header, then its memory as it
    is (no copy). Object arrays are refused (they would need pickle), and so are
    subclasses of ``ndarray`` (they would come back plain)."""
    if isinstance(value, numpy.ndarray) and type(value) is not numpy.ndarray:
        msg = f"a {type(value).__name__} (an ndarray subclass) cannot be stored as itself"
        raise NpyError(msg)
    array = numpy.asarray(value)
    if array.dtype.hasobject:
        msg = f"a numpy {array.dtype} value cannot be stored without pickle"
        raise NpyError(msg)
    npy = numpy.lib.format
    header = npy.header_data_from_array_1_0(array)
    if header["fortran_order"]:
        array = array.T  # C-contiguous: its memory is the Fortran order the header says
    elif not array.flags.c_contiguous:
        array = numpy.ascontiguousarray(array)
    text = io.BytesIO()
    npy.write_array_header_2_0(text, header)
    return (text.getvalue(), array.reshape(-1).view(numpy.uint8))


_MAGIC = b"\x93NUMPY\x02\x00"
_PREFIX = len(_MAGIC) + 4  # the magic, then the header's length (4 bytes)


def read(blob: memoryview) -> Any:
    """The array in ``blob``, copied out of it (so it is writable and owns its memory).
    Only what `chunks` writes is read."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        msg = "a stored numpy value needs numpy, which this program has not imported"
        raise NpyError(msg)
    if bytes(blob[: len(_MAGIC)]) != _MAGIC:
        msg = "a stored numpy value is not in the .npy format"
        raise NpyError(msg)
    length = int.from_bytes(blob[len(_MAGIC) : _PREFIX], "little")
    header = io.BytesIO(bytes(blob[: _PREFIX + length]))
    header.seek(len(_MAGIC))  # read_array_header_2_0 reads the length itself
    # A literal-only parse of a dict of literals (numpy's safe_eval): nothing runs.
    shape, fortran_order, dtype = numpy.lib.format.read_array_header_2_0(header)
    if dtype.hasobject:
        msg = "a stored numpy value has an object dtype"
        raise NpyError(msg)
    count = math.prod(shape)
    if len(blob) != _PREFIX + length + count * dtype.itemsize:
        msg = f"a stored numpy value's size does not match its shape {shape}"
        raise NpyError(msg)
    flat = numpy.frombuffer(blob, dtype=dtype, count=count, offset=_PREFIX + length)
    return flat.reshape(shape, order="F" if fortran_order else "C").copy(order="K")
