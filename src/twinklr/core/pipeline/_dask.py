"""The Dask backend (the ``dask`` extra): run ``SyncStage`` work on a Dask cluster.

Futures are awaited without blocking the Trio loop and without a thread per future: a
done-callback, in Dask's callback thread, fetches the outcome there and hands it back
through the Trio token. Functions travel as cloudpickled bytes to a small runner of
ours (``call_pickled``), so functions from modules the workers cannot import still work.
Dask never retries (``retries=0``; the executor owns retries). A cancelled call cancels
its pending future; a task already running on a worker finishes its current call.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import trio

from ._offload import call_pickled, pickle_work


class DaskRunner:
    """Runs work on a Dask cluster: the scheduler at ``address``, or a ``LocalCluster``
    of ``n_workers`` worker processes started on first use (its scratch files under
    ``local_directory``). Startup and shutdown are bounded by their timeouts."""

    def __init__(
        self,
        address: str | None = None,
        n_workers: int = 2,
        *,
        local_directory: str | None = None,
        startup_timeout_s: float = 60.0,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self.address = address
        self.n_workers = n_workers
        self.local_directory = local_directory
        self.startup_timeout_s = startup_timeout_s
        self.shutdown_timeout_s = shutdown_timeout_s
        self._client: Any = None
        self._cluster: Any = None
        self._lock = threading.Lock()
        self._batch: list[dict[str, Any]] = []

    def __repr__(self) -> str:
        where = self.address or f"LocalCluster(n_workers={self.n_workers})"
        return f"DaskRunner({where})"

    def connect(self) -> Any:
        """The client, connecting (or starting the local cluster) first if needed.
        Blocking: the executor calls it in a worker thread."""
        with self._lock:
            if self._client is None:
                import dask  # noqa: PLC0415 (the dask extra)
                from distributed import Client, LocalCluster  # noqa: PLC0415

                if self.address is None:
                    # Every scratch file (the scheduler's too) under local_directory.
                    scratch = {"temporary-directory": self.local_directory}
                    with dask.config.set(scratch if self.local_directory else {}):
                        self._cluster = LocalCluster(  # type: ignore[no-untyped-call]
                            n_workers=self.n_workers,
                            threads_per_worker=1,
                            processes=True,
                            dashboard_address=None,
                            local_directory=self.local_directory,
                        )
                    self._client = Client(  # type: ignore[no-untyped-call]
                        self._cluster, timeout=self.startup_timeout_s
                    )
                else:
                    self._client = Client(  # type: ignore[no-untyped-call]
                        self.address, timeout=self.startup_timeout_s
                    )
            return self._client

    def close(self) -> None:
        """Close the client (and the local cluster, if we started one). Blocking."""
        with self._lock:
            client, cluster = self._client, self._cluster
            self._client = self._cluster = None
        if client is not None:
            client.close(timeout=self.shutdown_timeout_s)
        if cluster is not None:
            cluster.close(timeout=self.shutdown_timeout_s)

    async def aclose(self) -> None:
        """:meth:`close`, off the Trio loop, bounded by ``shutdown_timeout_s``."""
        with trio.move_on_after(self.shutdown_timeout_s * 2):
            await trio.to_thread.run_sync(self.close, abandon_on_cancel=True)

    async def run(self, fn: Callable[[Any], Any], value: Any) -> Any:
        """``fn(value)`` on the cluster; the remote exception propagates as itself."""
        payload = pickle_work(fn, value, "the Dask cluster")
        client = self._client
        if client is None:  # connecting blocks: in a thread, bounded
            with trio.fail_after(self.startup_timeout_s):
                client = await trio.to_thread.run_sync(self.connect, abandon_on_cancel=True)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        outcome: dict[str, Any] = {}

        def finished(fut: Any) -> None:  # in Dask's callback thread
            try:
                outcome["value"] = fut.result()
            except BaseException as exc:  # noqa: BLE001 - handed to the Trio side as is
                outcome["error"] = exc
            # (a finished run means nobody waits for this result any more)
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        submitted = self._submit(client, payload, finished)
        try:
            await done.wait()
        except trio.Cancelled:
            future = submitted.get("future")
            if future is not None:
                future.cancel()
            else:
                submitted["cancelled"] = True  # still batched: never submitted
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def _submit(
        self, client: Any, payload: bytes, finished: Callable[[Any], None]
    ) -> dict[str, Any]:
        """Queue one call; every call queued in the same Trio tick is submitted with one
        ``client.map`` (one graph update for the scheduler instead of one per item)."""
        entry: dict[str, Any] = {"payload": payload, "finished": finished}
        if not self._batch:
            trio.lowlevel.current_trio_token().run_sync_soon(self._flush, client)
        self._batch.append(entry)
        return entry

    def _flush(self, client: Any) -> None:
        batch = [entry for entry in self._batch if not entry.get("cancelled")]
        self._batch = []
        if not batch:
            return
        try:
            futures = client.map(
                call_pickled, [entry["payload"] for entry in batch], pure=False, retries=0
            )
        except Exception as exc:  # noqa: BLE001 - each waiting call gets the error
            for entry in batch:
                entry["finished"](_Failed(exc))
            return
        for entry, future in zip(batch, futures, strict=True):
            entry["future"] = future
            future.add_done_callback(entry["finished"])


class _Failed:
    """Stands in for a future whose submission failed."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def result(self) -> Any:
        raise self.error
