"""The UI's automation API: listing schedules and sensors, toggling them, tick history, scheduled runs.

In-process through httpx's ASGI transport, with the app's lifespan run by
hand; the scheduler the lifespan hosts runs on a :class:`ManualClock`, so a
tick comes when the test moves the clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from asyncdag import ScheduleEvaluationContext, pipeline, schedule, sensor, solid
from asyncdag.automation import ManualClock
from asyncdag.storage import InMemoryStorage, TickStatus
from asyncdag.ui import create_app
from ui_server import lifespan

pytestmark = pytest.mark.anyio

HANG_GUARD = 60
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()


@solid
def noop() -> int:
    return 1


@pipeline
def nightly_job():
    noop()


@schedule(cron_schedule="0 * * * *", pipeline=nightly_job, execution_timezone="Europe/Berlin")
def hourly_berlin(context: ScheduleEvaluationContext) -> dict[str, Any]:
    return {}


@schedule(cron_schedule="0 9 * * 1", pipeline=nightly_job, default_status="stopped")
def weekly(context: ScheduleEvaluationContext) -> dict[str, Any]:
    return {}


@sensor(pipeline=nightly_job, minimum_interval_seconds=60, default_status="stopped")
def watcher(context: Any) -> None:
    return None


class App:
    def __init__(self, *, run_schedules: bool = True) -> None:
        self.storage = InMemoryStorage()
        self.clock = ManualClock(T0)
        self.asgi = create_app(
            storage=self.storage,
            schedules=[hourly_berlin, weekly],
            sensors=[watcher],
            run_schedules=run_schedules,
            clock=self.clock,
        )
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.asgi), base_url="http://test"
        )

    @property
    def scheduler(self) -> Any:
        return self.asgi.state.ui.scheduler

    async def settle(self) -> None:
        with anyio.fail_after(HANG_GUARD):
            await self.scheduler.wait_idle()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    made = App()
    async with lifespan(made.asgi), made.client:
        await made.settle()
        yield made


async def test_every_schedule_and_sensor_is_listed_with_state_and_next_ticks(app: App) -> None:
    body = (await app.client.get("/api/automation")).json()
    assert body["scheduler_running"] is True
    rows = {row["name"]: row for row in body["automation"]}
    assert set(rows) == {"hourly_berlin", "weekly", "watcher"}
    hourly = rows["hourly_berlin"]
    assert (hourly["type"], hourly["status"], hourly["pipeline"]) == (
        "schedule",
        "RUNNING",
        "nightly_job",
    )
    assert [t["local"] for t in hourly["next_ticks"]][:2] == [
        "2024-01-01T02:00:00+01:00",  # Berlin's wall clock
        "2024-01-01T03:00:00+01:00",
    ]
    assert rows["weekly"]["status"] == "STOPPED"
    assert rows["weekly"]["next_ticks"] == []  # a stopped schedule has no next tick
    assert rows["watcher"]["type"] == "sensor"
    assert rows["watcher"]["minimum_interval_seconds"] == 60


async def test_the_pipeline_filter_lists_only_that_pipelines_schedules(app: App) -> None:
    body = (await app.client.get("/api/automation", params={"pipeline": "other"})).json()
    assert body["automation"] == []
    body = (await app.client.get("/api/automation", params={"pipeline": "nightly_job"})).json()
    assert len(body["automation"]) == 3


async def test_toggling_a_schedule_is_stored_and_shows_its_next_ticks(app: App) -> None:
    response = await app.client.post("/api/automation/weekly/status", json={"status": "RUNNING"})
    assert response.status_code == 200
    assert response.json()["status"] == "RUNNING"
    assert len(response.json()["next_ticks"]) == 5
    state = await app.storage.get_instigator_state("weekly")
    assert state is not None and state.status == "RUNNING"
    response = await app.client.post("/api/automation/weekly/status", json={"status": "STOPPED"})
    assert response.json()["next_ticks"] == []


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 400), ({"status": "PAUSED"}, 400), ({"status": 1}, 400)],
)
async def test_a_bad_toggle_is_a_400_with_a_message(app: App, body: Any, status: int) -> None:
    response = await app.client.post("/api/automation/weekly/status", json=body)
    assert response.status_code == status
    assert "RUNNING" in response.json()["error"]


async def test_an_unknown_name_is_a_404_naming_the_loaded_ones(app: App) -> None:
    response = await app.client.get("/api/automation/nope/ticks")
    assert response.status_code == 404
    assert "hourly_berlin" in response.json()["error"]


async def test_a_tick_of_the_hosted_scheduler_starts_a_live_run_linked_from_its_history(
    app: App,
) -> None:
    app.clock.set(T0 + 3600)
    await app.settle()
    ticks = (await app.client.get("/api/automation/hourly_berlin/ticks")).json()["ticks"]
    assert [t["status"] for t in ticks] == [TickStatus.SUCCESS.value]
    assert ticks[0]["local"] == "2024-01-01T02:00:00+01:00"
    (run_id,) = ticks[0]["run_ids"]
    run = (await app.client.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "SUCCESS"
    assert run["tags"]["asyncdag/schedule_name"] == "hourly_berlin"
    listed = (await app.client.get("/api/automation")).json()["automation"]
    last = next(r for r in listed if r["name"] == "hourly_berlin")["last_tick"]
    assert last["run_ids"] == [run_id]


async def test_with_run_schedules_off_the_page_lists_and_toggles_but_nothing_runs() -> None:
    made = App(run_schedules=False)
    async with lifespan(made.asgi), made.client:
        body = (await made.client.get("/api/automation")).json()
        assert body["scheduler_running"] is False
        assert len(body["automation"]) == 3
        response = await made.client.post(
            "/api/automation/weekly/status", json={"status": "RUNNING"}
        )
        assert response.status_code == 200
    assert await made.storage.list_ticks("hourly_berlin") == []
