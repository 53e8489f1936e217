"""The web UI in Debian's Chromium, driven by Playwright, against a real uvicorn server.

Screenshots of each page land in ``test-artifacts/screenshots/``.  Skipped
only when ``/usr/bin/chromium`` is absent (``.ci/run`` installs it); a browser
is never downloaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ui_server import BROWSER_TEST, ROOT, TEST_PIPELINES, load_hello_world, serve_in_thread, shot

pytestmark = BROWSER_TEST

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from asyncdag.storage import SqliteStorage
    from asyncdag.ui import create_app

    path = tmp_path_factory.mktemp("ui") / "runs.db"
    with SqliteStorage(path) as storage:
        app = create_app([load_hello_world(), *TEST_PIPELINES], storage=storage)
        with serve_in_thread(app) as url:
            yield url


def test_hello_world_from_graph_to_a_green_run(server: str, page: Any) -> None:
    page.goto(f"{server}/")
    page.click("[data-pipeline=hey_pipeline]")
    graph = page.locator("[data-testid=graph]")
    expect(graph.locator("[data-node=get_name]")).to_be_visible()
    expect(graph.locator("[data-node=hey]")).to_be_visible()
    expect(graph.locator(".edge-label")).to_have_text(["name"])
    shot(page, "01-pipeline-graph")

    graph.locator("[data-node=hey]").click()
    details = page.locator("[data-testid=solid-details]")
    expect(details.locator("h2")).to_have_text("hey")
    expect(details).to_contain_text("async")
    expect(details).to_contain_text("← get_name")
    expect(details.locator("td.type").first).to_have_text("str")
    shot(page, "02-solid-details")

    page.click("[data-testid=tab-playground]")
    editor = page.locator("[data-testid=config-editor]")
    validity = page.locator("[data-testid=validity]")
    launch = page.locator("[data-testid=launch]")
    expect(validity).to_have_attribute("data-state", "valid")
    editor.fill("execution:\n  max_concurrency: 0\n")
    expect(validity).to_have_attribute("data-state", "invalid")
    error = page.locator("[data-testid=config-errors] li")
    expect(error).to_have_attribute("data-path", "execution.max_concurrency")
    expect(error).to_contain_text("must be at least 1")
    expect(launch).to_be_disabled()
    shot(page, "03-playground-invalid")

    editor.fill("execution:\n  max_concurrency: 2\n")
    expect(validity).to_have_attribute("data-state", "valid")
    expect(page.locator("[data-testid=config-errors] li")).to_have_count(0)
    page.click("[data-testid=add-tag]")
    page.locator("[data-testid=tag-key]").fill("who")
    page.locator("[data-testid=tag-value]").fill("kan")
    expect(launch).to_be_enabled()
    shot(page, "04-playground-valid")
    launch.click()

    expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f-]{36}$"))
    log = page.locator("[data-testid=event-log]")
    expect(log).to_contain_text("Hey, Kan!")
    run_graph = page.locator("[data-testid=graph]")
    for step in ("get_name", "hey"):
        expect(run_graph.locator(f"[data-node={step}]")).to_have_attribute("data-state", "success")
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    expect(page.locator("[data-testid=gantt] .gantt-bar.o-success")).to_have_count(2)
    expect(page.locator(".run-meta")).to_contain_text("who=kan")
    shot(page, "05-run-succeeded")  # docs/ui-screenshot.png is a copy of this one


def test_cancel_a_long_run_from_the_page(server: str, page: Any) -> None:
    page.goto(f"{server}/#/pipelines/slow_pipeline/playground")
    launch = page.locator("[data-testid=launch]")
    expect(launch).to_be_enabled()
    launch.click()
    graph = page.locator("[data-testid=graph]")
    expect(graph.locator("[data-node=wait]")).to_have_attribute("data-state", "running")
    expect(graph.locator("[data-node=after]")).to_have_attribute("data-state", "pending")
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "STARTED"
    )
    shot(page, "06-run-running")
    page.click("[data-testid=cancel]")
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "CANCELED"
    )
    expect(graph.locator("[data-node=wait]")).to_have_attribute("data-state", "canceled")
    expect(page.locator("[data-testid=event-log]")).to_contain_text("RUN CANCELED")
    expect(page.locator("[data-testid=cancel]")).to_be_hidden()
    shot(page, "07-run-canceled")


def test_reload_a_finished_run_from_history(server: str, page: Any) -> None:
    launched = httpx.post(
        f"{server}/api/runs", json={"pipeline": "hey_pipeline", "tags": {"from": "history"}}
    )
    run_id = launched.json()["run_id"]
    with httpx.stream("GET", f"{server}/api/runs/{run_id}/events/stream") as stream:
        for _ in stream.iter_lines():  # ends with the run
            pass
    page.goto(f"{server}/#/runs")
    row = page.locator(f"tr[data-run='{run_id}']")
    expect(row).to_contain_text("Success")
    expect(row).to_contain_text("from=history")
    page.locator("[data-testid=runs-filter]").fill("from=history")
    expect(page.locator("tr[data-run]")).to_have_count(1)
    shot(page, "08-runs-history")
    row.click()
    expect(page).to_have_url(re.compile(f"#/runs/{run_id}$"))
    expect(page.locator("[data-testid=event-log]")).to_contain_text("Hey, Kan!")
    for step in ("get_name", "hey"):
        expect(page.locator(f"[data-testid=graph] [data-node={step}]")).to_have_attribute(
            "data-state", "success"
        )
    page.reload()
    expect(page.locator("[data-testid=event-log]")).to_contain_text("Hey, Kan!")
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )


def test_runs_page_updates_live(server: str, page: Any) -> None:
    page.goto(f"{server}/#/runs")
    expect(page.locator(".live-dot.on")).to_be_visible()
    launched = httpx.post(
        f"{server}/api/runs", json={"pipeline": "hey_pipeline", "tags": {"live": "yes"}}
    )
    run_id = launched.json()["run_id"]
    expect(page.locator(f"tr[data-run='{run_id}']")).to_contain_text("Success")


def test_failed_run_shows_retry_failure_skip_and_an_expandable_traceback(
    server: str, page: Any
) -> None:
    run_id = httpx.post(f"{server}/api/runs", json={"pipeline": "failing_pipeline"}).json()[
        "run_id"
    ]
    page.goto(f"{server}/#/runs/{run_id}")
    graph = page.locator("[data-testid=graph]")
    expect(graph.locator("[data-node=explode]")).to_have_attribute("data-state", "failure")
    expect(graph.locator("[data-node=never]")).to_have_attribute("data-state", "skipped")
    expect(page.locator("[data-testid=gantt] .gantt-bar.o-retry")).to_have_count(1)
    expect(page.locator("[data-testid=traceback]")).to_have_count(0)
    page.locator("[data-testid=trace-toggle]").last.click()
    expect(page.locator("[data-testid=traceback]")).to_contain_text(
        "ValueError: boom: the solid failed on purpose"
    )
    page.locator("[data-testid=log-level]").select_option("40")
    expect(page.locator("[data-testid=log-count]")).to_contain_text(" of ")
    shot(page, "09-run-failed-traceback")


def test_a_run_with_50000_events_keeps_the_log_small(server: str, page: Any) -> None:
    body = {
        "pipeline": "chatty_pipeline",
        "config": {"solids": {"chatter": {"config": {"count": 50_000}}}},
    }
    run_id = httpx.post(f"{server}/api/runs", json=body).json()["run_id"]
    page.goto(f"{server}/#/runs/{run_id}")
    count = page.locator("[data-testid=log-count]")
    expect(count).to_have_text(re.compile(r"^5000\d events$"), timeout=60_000)
    rows = page.locator("[data-testid=event-log] .log-row").count()
    assert 0 < rows < 200
    page.locator("[data-testid=log-text]").fill("message 49999")
    expect(count).to_have_text(re.compile(r"^1 of 5000\d events$"))
    expect(page.locator("[data-testid=event-log]")).to_contain_text("message 49999")
    shot(page, "10-run-50000-events")


@pytest.fixture(scope="module")
def automation_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from asyncdag._workspace import load_workspace
    from asyncdag.storage import SqliteStorage
    from asyncdag.ui import create_app

    workspace = load_workspace(files=[ROOT / "tests" / "pipelines" / "scheduled.py"])
    path = tmp_path_factory.mktemp("ui-automation") / "runs.db"
    with SqliteStorage(path) as storage:
        app = create_app(
            workspace.pipelines,
            storage=storage,
            schedules=workspace.schedules.values(),
            sensors=workspace.sensors.values(),
        )
        with serve_in_thread(app) as url:
            yield url


def test_toggle_a_schedule_on_the_automation_page_and_see_its_next_ticks(
    automation_server: str, page: Any
) -> None:
    page.goto(f"{automation_server}/")
    page.click("[data-testid=nav-automation]")
    row = page.locator("tr[data-instigator=monday_morning]")
    expect(row).to_contain_text("0 9 * * 1")
    expect(row).to_contain_text("Europe/Berlin")
    expect(row).to_contain_text("off")
    toggle = page.locator("[data-testid=toggle-monday_morning]")
    expect(toggle).not_to_be_checked()
    toggle.check()
    ticks = page.locator("[data-testid=next-ticks-monday_morning] li")
    expect(ticks).to_have_count(3)
    for text in ticks.all_text_contents():
        assert re.fullmatch(r"\d{4}-\d\d-\d\d 09:00:00\+0[12]:00", text), text  # Berlin, 09:00
    expect(toggle).to_be_checked()
    shot(page, "11-automation-schedule-on")

    page.reload()  # the state is stored, not only shown
    expect(page.locator("[data-testid=toggle-monday_morning]")).to_be_checked()
    expect(page.locator("[data-testid=next-ticks-monday_morning] li")).to_have_count(3)

    row.click()
    expect(page.locator("[data-testid=tick-history]")).to_contain_text("Ticks of monday_morning")
    expect(page.locator("[data-testid=tick-history]")).to_contain_text("No tick yet.")

    page.locator("[data-testid=toggle-monday_morning]").uncheck()
    expect(page.locator("[data-testid=next-ticks-monday_morning]")).to_have_count(0)
    expect(page.locator("tr[data-instigator=monday_morning]")).to_contain_text("off")


def test_a_pipelines_page_shows_its_schedules(automation_server: str, page: Any) -> None:
    page.goto(f"{automation_server}/#/pipelines/weekly_report")
    listed = page.locator("[data-testid=pipeline-schedules]")
    expect(listed.locator("[data-instigator=monday_morning]")).to_contain_text("0 9 * * 1")
    expect(listed.locator("[data-instigator=report_requests]")).to_contain_text("every 3600s")
