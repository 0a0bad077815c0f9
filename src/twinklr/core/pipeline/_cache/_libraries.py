"""The libraries a stage's value may come from, told apart without importing them: a
program whose values are numpy arrays or pydantic models has imported numpy or
pydantic, so a library that is not loaded has made nothing here."""

from __future__ import annotations

import sys
from typing import Any


def numpy_of(value: object) -> Any:
    """The numpy module when ``value`` is a numpy array or scalar; else None."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray | numpy.generic):
        return numpy
    return None


def is_model(value: object) -> bool:
    """Whether ``value`` is a pydantic model."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(value, pydantic.BaseModel)


def is_model_class(kind: object) -> bool:
    """Whether ``kind`` is a pydantic model class."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(kind, type) and issubclass(kind, pydantic.BaseModel)
