"""Offloading: ``SyncStage`` and the runners that carry its work to a thread, worker
processes (trio-parallel) or a Dask cluster.

Imports the vocabulary only (never the engine, nor the other capabilities); optional
libraries are imported lazily, when a runner first needs them.
"""
