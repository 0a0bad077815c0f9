"""What runs on a cluster's workers (Dask, Ray): this module travels by value.

Its function cannot be found by its name, so pickle cannot send it by reference and
cloudpickle sends it as code: a worker needs only its cluster's library and cloudpickle,
never twinklr-pipeline. It is self-contained (imports inside, no other function of the
package) for that reason.

A stage's function arrives pickled, once per run (a token names it), and is unpacked
once per worker process and run; the input arrives pickled with each call. Where a
module they were pickled by reference from is missing on the worker, the error names the
module and the two ways to get it there.
"""

from __future__ import annotations

from typing import Any

#: How many stage functions a worker process keeps unpacked (the most recent runs').
_KEPT = 16

#: The ways to get a module the work needs onto the workers, by cluster.
_FIXES = {
    "dask": (
        "cloudpickle.register_pickle_by_value({module}) before the run sends it by value,"
        " or Client.upload_file('{module}.py') puts it on the workers"
    ),
    "ray": (
        "cloudpickle.register_pickle_by_value({module}) before the run sends it by value,"
        ' or ray.init(runtime_env={{"py_modules": [{module}]}}) puts it on the workers'
    ),
}


def call_remote(token: str, function: bytes, value: bytes, cluster: str) -> Any:
    """On the worker: the stage's function (unpacked once per worker and ``token``)
    called on its unpacked input. A module missing on the worker is an error that names
    it and says what to do."""
    import importlib  # noqa: PLC0415
    import socket  # noqa: PLC0415 (this function travels by value: nothing from outside)
    import sys  # noqa: PLC0415
    import threading  # noqa: PLC0415
    import types  # noqa: PLC0415

    # (Ray's own copy on Ray: the work was packed with it)
    cloudpickle = importlib.import_module("ray.cloudpickle" if cluster == "ray" else "cloudpickle")

    def unpack(payload: bytes, what: str) -> Any:
        try:
            return cloudpickle.loads(payload)
        except ModuleNotFoundError as exc:
            module = exc.name or "?"
            fixes = _FIXES.get(cluster, _FIXES["dask"]).format(module=module)
            msg = (
                f"module {module!r} is not installed where {what} was unpacked (a worker"
                f" on host {socket.gethostname()!r}): {fixes} (or install it there)"
            )
            raise ModuleNotFoundError(msg, name=module) from None

    kept = sys.modules.get("_twinklr_worker")
    if kept is None:  # a module of the worker process's own, to keep functions in
        kept = types.ModuleType("_twinklr_worker")
        kept.__dict__.update(functions={}, lock=threading.Lock())
        kept = sys.modules.setdefault("_twinklr_worker", kept)
    with kept.lock:
        fn = kept.functions.get(token)
    if fn is None:
        fn = unpack(function, "the stage's function")
        with kept.lock:
            kept.functions[token] = fn
            while len(kept.functions) > _KEPT:
                del kept.functions[next(iter(kept.functions))]
    return fn(unpack(value, "the stage's input"))


# Not findable by its name: pickle cannot send it by reference, cloudpickle sends it by
# value (Dask falls back to cloudpickle when pickle fails), wherever it is pickled again.
call_remote.__qualname__ = "call_remote.<by value>"
