"""What runs on the workers: unpacking once per run and worker, and the error that names
a module the worker lacks."""

from __future__ import annotations

import importlib
import pickle
import sys
from pathlib import Path

import pytest

from twinklr.core.pipeline._offload._remote import call_remote

cloudpickle = pytest.importorskip("cloudpickle")


def test_a_function_is_unpacked_once_per_token() -> None:
    double = cloudpickle.dumps(lambda v: v * 2)
    assert call_remote("token-a", double, cloudpickle.dumps(4), "dask") == 8
    # the same token: the function kept is used, the bytes are not read again
    assert call_remote("token-a", b"not a pickle", cloudpickle.dumps(5), "dask") == 10
    with pytest.raises(pickle.UnpicklingError):
        call_remote("token-b", b"not a pickle", cloudpickle.dumps(5), "dask")


def test_it_cannot_travel_by_reference_only_by_value() -> None:
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(call_remote)
    assert b"_offload._remote" not in cloudpickle.dumps(call_remote).split(b"call_remote")[0]


@pytest.mark.parametrize(
    ("cluster", "fix"),
    [
        ("dask", "Client.upload_file('shapes_missing.py') puts it on the workers"),
        ("ray", 'ray.init(runtime_env={"py_modules": [shapes_missing]}) puts it'),
    ],
)
def test_a_missing_module_is_named_with_the_fixes(
    cluster: str, fix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shapes_missing.py").write_text("def triple(value):\n    return value * 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    shapes_missing = importlib.import_module("shapes_missing")  # (made by the test)
    payload = cloudpickle.dumps(shapes_missing.triple)  # by reference
    monkeypatch.delitem(sys.modules, "shapes_missing")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    with pytest.raises(ModuleNotFoundError) as caught:
        call_remote(f"token-{cluster}", payload, cloudpickle.dumps(1), cluster)
    message = str(caught.value)
    assert message.startswith(
        "module 'shapes_missing' is not installed where the stage's function was unpacked"
    )
    assert "cloudpickle.register_pickle_by_value(shapes_missing) before the run" in message
    assert fix in message
    assert caught.value.name == "shapes_missing"
