"""Serving the view: a real hypercorn server on 127.0.0.1, and where it refuses to bind."""

from __future__ import annotations

import functools
from pathlib import Path

import httpx
import pytest
import trio

from conftest import stub
from twinklr.core.pipeline import PipelineDefinition, PipelineExecutor, RunStore, StageDefinition
from twinklr.core.pipeline._ui._guard import is_loopback
from twinklr.core.pipeline._ui._serve import check_bind
from twinklr.core.pipeline.ui import RunsView, UnsafeBindError, serve


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_loopback_addresses_need_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])  # noqa: S104
def test_other_addresses_need_a_token(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(UnsafeBindError, match=f"refusing to serve on {host} without --token"):
        check_bind(host, None)
    check_bind(host, "a-token")


async def test_a_bind_beyond_loopback_is_refused_before_listening(tmp_path: Path) -> None:
    with pytest.raises(UnsafeBindError):
        await serve(RunsView(RunStore(tmp_path)), host="0.0.0.0", port=0)  # noqa: S104


async def test_the_view_answers_over_real_http_and_stops_on_its_trigger(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    result = await PipelineExecutor(runs=store).execute(
        PipelineDefinition("served", [StageDefinition("a", stub(1))])
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            functools.partial(
                serve, RunsView(store), host="127.0.0.1", port=0, shutdown_trigger=stop.wait
            )
        )
        (address,) = binds
        assert address.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=address) as http:
            listed = (await http.get("/api/runs")).json()
            assert [run["run_id"] for run in listed] == [result.run_id]
            page = await http.get(f"/runs/{result.run_id}")
            assert page.status_code == 200
            events = await http.get(f"/api/runs/{result.run_id}/events")
            assert events.text.count("event: run\n") == 1
        stop.set()
    store.close()
