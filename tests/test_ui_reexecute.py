"""Re-execution from the UI's API: from a failed run's failure, or for selected steps, with the
parent and root recorded; bad requests are 4xx with a message.  On asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncdag.outputs import FilesystemOutputStore
from asyncdag.storage import InMemoryStorage
from asyncdag.ui import create_app
from test_ui_api import UI
from ui_server import FAILING, flaky_pipeline, lifespan, load_hello_world

pytestmark = pytest.mark.anyio


@pytest.fixture
def flags() -> Iterator[set[str]]:
    FAILING.clear()
    yield FAILING
    FAILING.clear()


@pytest.fixture
async def ui(tmp_path: Path) -> AsyncIterator[UI]:
    storage = InMemoryStorage()
    store = FilesystemOutputStore(tmp_path / "outputs")
    app = create_app([flaky_pipeline, load_hello_world()], storage=storage, output_store=store)
    served = UI(app, "", storage)
    async with lifespan(app), served.client:
        yield served


def started(events: list[dict[str, Any]]) -> set[str]:
    return {e["step_key"] for e in events if e["type"] == "STEP_START"}


async def failed_run(ui: UI, flags: set[str]) -> str:
    flags.add("brittle")
    run_id = await ui.launch("flaky_pipeline")
    _, end = await ui.events_until_end(run_id)
    assert end["status"] == "FAILURE"
    flags.clear()
    return run_id


async def test_reexecute_from_failure_runs_only_what_failed(ui: UI, flags: set[str]) -> None:
    parent = await failed_run(ui, flags)
    response = await ui.post(f"/api/runs/{parent}/reexecute", json={"from_failure": True})
    assert response.status_code == 201, response.text
    child = response.json()["run_id"]
    events, end = await ui.events_until_end(child)
    assert end["status"] == "SUCCESS"
    assert started(events) == {"brittle", "publish"}
    assert (end["parent_run_id"], end["root_run_id"]) == (parent, parent)
    reused = [e for e in events if e["type"] == "STEP_SUCCESS" and "loaded_from" in e["data"]]
    assert [e["step_key"] for e in reused] == ["ingest"]


async def test_reexecute_selected_steps(ui: UI, flags: set[str]) -> None:
    parent = await failed_run(ui, flags)
    response = await ui.post(f"/api/runs/{parent}/reexecute", json={"steps": ["brittle+"]})
    assert response.status_code == 201, response.text
    events, end = await ui.events_until_end(response.json()["run_id"])
    assert end["status"] == "SUCCESS" and started(events) == {"brittle", "publish"}


async def test_the_runs_list_filters_by_root(ui: UI, flags: set[str]) -> None:
    parent = await failed_run(ui, flags)
    response = await ui.post(f"/api/runs/{parent}/reexecute", json={"from_failure": True})
    child = response.json()["run_id"]
    await ui.events_until_end(child)
    await ui.events_until_end(await ui.launch("hey_pipeline"))
    listed = (await ui.get(f"/api/runs?root={parent}")).json()["runs"]
    assert {r["run_id"] for r in listed} == {parent, child}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"from_failure": "yes"}, 400, "`from_failure` must be true or false"),
        ({"steps": "brittle"}, 400, "`steps` must be a non-empty list"),
        ({"steps": []}, 400, "`steps` must be a non-empty list"),
        ({"from_failure": True, "steps": ["a"]}, 400, "not both"),
        ({}, 400, "say what to re-execute"),
        ({"steps": ["nope"]}, 422, "has no solid 'nope'"),
    ],
)
async def test_bad_reexecutions_are_4xx_with_a_message(
    ui: UI, flags: set[str], body: dict[str, Any], status: int, fragment: str
) -> None:
    parent = await failed_run(ui, flags)
    response = await ui.post(f"/api/runs/{parent}/reexecute", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]


async def test_a_successful_run_has_no_failure_to_reexecute(ui: UI, flags: set[str]) -> None:
    run_id = await ui.launch("flaky_pipeline")
    await ui.events_until_end(run_id)
    response = await ui.post(f"/api/runs/{run_id}/reexecute", json={"from_failure": True})
    assert response.status_code == 422
    assert "nothing to re-execute from failure" in response.json()["error"]


async def test_an_unknown_run_is_404(ui: UI) -> None:
    response = await ui.post("/api/runs/nope/reexecute", json={"from_failure": True})
    assert response.status_code == 404


async def test_a_form_post_is_refused_by_the_guard(ui: UI, flags: set[str]) -> None:
    parent = await failed_run(ui, flags)
    response = await ui.post(
        f"/api/runs/{parent}/reexecute",
        content="from_failure=true",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415


async def test_stored_output_events_say_where_and_how_big(ui: UI, tmp_path: Path) -> None:
    run_id = await ui.launch("flaky_pipeline")
    events, _ = await ui.events_until_end(run_id)
    stored = {e["step_key"]: e["data"] for e in events if e["type"] == "STEP_OUTPUT"}
    assert set(stored) == {"ingest", "brittle", "publish"}
    for data in stored.values():
        assert Path(data["path"]).is_relative_to(tmp_path / "outputs") and data["size"] > 0
