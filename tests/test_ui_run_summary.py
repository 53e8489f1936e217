"""The run page's server side: a run's steps with their errors, and graphs sized for drawing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from asyncdag import ErrorInfo, Event, EventType, RunStatus, pipeline, solid
from asyncdag.storage import InMemoryStorage, RunRecord
from asyncdag.ui import create_app
from ui_server import TEST_PIPELINES, lifespan, load_hello_world

pytestmark = pytest.mark.anyio


@solid
def leaf() -> int:
    return 1


@pipeline
def many_leaves() -> None:
    for i in range(2500):
        leaf.alias(f"leaf_{i}")()


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, InMemoryStorage]]:
    storage = InMemoryStorage()
    app = create_app([load_hello_world(), many_leaves, *TEST_PIPELINES], storage=storage)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http, storage


async def _finished(http: httpx.AsyncClient, pipeline_name: str) -> str:
    run_id = (await http.post("/api/runs", json={"pipeline": pipeline_name})).json()["run_id"]
    async with http.stream("GET", f"/api/runs/{run_id}/events/stream") as stream:
        async for _ in stream.aiter_lines():
            pass
    return str(run_id)


async def test_steps_name_the_failed_step_with_its_error_and_traceback(client: Any) -> None:
    http, _ = client
    run_id = await _finished(http, "failing_pipeline")
    steps = {s["key"]: s for s in (await http.get(f"/api/runs/{run_id}/steps")).json()["steps"]}
    explode = steps["explode"]
    assert (explode["status"], explode["attempts"]) == ("FAILURE", 2)
    assert explode["error"]["type"] == "ValueError"
    assert explode["error"]["message"] == "boom: the solid failed on purpose"
    assert "Traceback" in explode["error"]["traceback"]
    assert steps["never"]["status"] == "SKIPPED"
    assert steps["never"]["error"] is None


async def test_steps_filter_by_status(client: Any) -> None:
    http, _ = client
    run_id = await _finished(http, "failing_pipeline")
    failed = (await http.get(f"/api/runs/{run_id}/steps?status=failure")).json()["steps"]
    assert [s["key"] for s in failed] == ["explode"]
    bad = await http.get(f"/api/runs/{run_id}/steps?status=EXPLODED")
    assert bad.status_code == 400
    assert "EXPLODED" in bad.json()["error"] and "SKIPPED" in bad.json()["error"]
    assert (await http.get("/api/runs/nope/steps")).status_code == 404


async def test_steps_of_a_stored_run_give_a_resource_failure_to_the_step_it_stopped(
    client: Any,
) -> None:
    http, storage = client
    await storage.create_run(
        RunRecord(run_id="other", pipeline_name="hey_pipeline", status=RunStatus.STARTED)
    )
    error = ErrorInfo(type="OSError", message="no route", traceback="Traceback ...").to_dict()
    await storage.add_events(
        "other",
        [
            Event("other", 0, 1.0, EventType.RUN_START),
            Event("other", 1, 1.1, EventType.LOG, None, 20, "noise"),
            Event(
                "other",
                2,
                1.2,
                EventType.RESOURCE_INIT_FAILURE,
                data={"resource": "http", "error": error},
            ),
            Event(
                "other",
                3,
                1.3,
                EventType.STEP_SKIPPED,
                "fetch",
                40,
                "did not start",
                {"reason": "resource 'http' failed", "resource": "http"},
            ),
            Event("other", 4, 1.4, EventType.RUN_FAILURE),
        ],
    )
    await storage.finish_run("other", RunStatus.FAILURE, end_time=1.4)
    (fetch,) = (await http.get("/api/runs/other/steps")).json()["steps"]
    assert (fetch["key"], fetch["status"]) == ("fetch", "SKIPPED")
    assert fetch["error"]["type"] == "OSError"
    assert fetch["note"] == "resource 'http' failed"


async def test_graph_of_a_small_pipeline_is_its_description(client: Any) -> None:
    http, _ = client
    graph = (await http.get("/api/pipelines/hey_pipeline/graph")).json()
    described = (await http.get("/api/pipelines/hey_pipeline")).json()
    assert graph["collapsed"] is False
    assert graph["nodes"] == described["nodes"]


async def test_graph_of_a_pipeline_past_2000_nodes_is_collapsed(client: Any) -> None:
    http, _ = client
    graph = (await http.get("/api/pipelines/many_leaves/graph")).json()
    assert (graph["collapsed"], graph["node_count"]) == (True, 2500)
    (group,) = graph["nodes"]
    assert (group["name"], group["count"]) == ("leaf_0 (+2,499)", 2500)
    assert group["members"][-1] == "leaf_2499"
    assert (await http.get("/api/pipelines/nope/graph")).status_code == 404
