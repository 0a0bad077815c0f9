"""Values from numpy and pydantic, told apart without importing either."""

from __future__ import annotations

import sys

import numpy as np
import pydantic
import pytest

from twinklr.core.pipeline._cache._libraries import is_model, is_model_class, numpy_of


class Song(pydantic.BaseModel):
    title: str


def test_numpy_values_and_pydantic_models_are_recognised() -> None:
    assert numpy_of(np.arange(3)) is np
    assert numpy_of(np.float64(1.5)) is np
    assert numpy_of([1, 2]) is None
    assert is_model(Song(title="Carol"))
    assert not is_model(Song)
    assert is_model_class(Song)
    assert not is_model_class(Song(title="Carol"))
    assert not is_model_class(int)


def test_a_library_the_program_has_not_imported_made_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "numpy")
    monkeypatch.delitem(sys.modules, "pydantic")
    assert numpy_of(np.arange(3)) is None
    assert not is_model(Song(title="Carol"))
    assert not is_model_class(Song)
