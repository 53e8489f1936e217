"""Re-executing a failed run from its page, in Debian's Chromium: from the failure, and for
steps picked on the graph; the new run links its parent and root, and shows reused steps and
where each output was stored.

Skipped only when ``/usr/bin/chromium`` is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ui_server import BROWSER_TEST, FAILING, flaky_pipeline, serve_in_thread, shot

pytestmark = BROWSER_TEST

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from asyncdag.outputs import FilesystemOutputStore
    from asyncdag.storage import SqliteStorage
    from asyncdag.ui import create_app

    home = tmp_path_factory.mktemp("reexec-ui")
    with SqliteStorage(home / "runs.db") as storage:
        store = FilesystemOutputStore(home / "outputs")
        app = create_app([flaky_pipeline], storage=storage, output_store=store)
        with serve_in_thread(app) as url:
            yield url


def failed_run(server: str) -> str:
    FAILING.add("brittle")
    try:
        run_id = str(
            httpx.post(f"{server}/api/runs", json={"pipeline": "flaky_pipeline"}).json()["run_id"]
        )
        with httpx.stream("GET", f"{server}/api/runs/{run_id}/events/stream") as stream:
            for _ in stream.iter_lines():  # ends with the run
                pass
    finally:
        FAILING.clear()
    return run_id


def started(server: str, run_id: str) -> set[str]:
    events = httpx.get(f"{server}/api/runs/{run_id}/events").json()["events"]
    return {e["step_key"] for e in events if e["type"] == "STEP_START"}


def new_run_id(page: Any, parent: str) -> str:
    expect(page).not_to_have_url(re.compile(f"#/runs/{parent}$"))
    match = re.search(r"#/runs/([^/?]+)$", page.url)
    assert match is not None, page.url
    return match.group(1)


def test_reexecute_from_failure_from_the_run_page(server: str, page: Any) -> None:
    parent = failed_run(server)
    page.goto(f"{server}/#/runs/{parent}")
    graph = page.locator("[data-testid=graph]")
    expect(graph.locator("[data-node=brittle]")).to_have_attribute("data-state", "failure")
    button = page.locator("[data-testid=reexecute-failure]")
    expect(button).to_be_visible()
    shot(page, "20-failed-run-reexecute-button")
    button.click()
    child = new_run_id(page, parent)
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    expect(graph.locator("[data-node=ingest]")).to_have_attribute("data-state", "reused")
    for step in ("brittle", "publish"):
        expect(graph.locator(f"[data-node={step}]")).to_have_attribute("data-state", "success")
    expect(page.locator("[data-testid=parent-link]")).to_have_text(parent[:8])
    expect(page.locator("[data-testid=root-link]")).to_have_text(parent[:8])
    outputs = page.locator("[data-testid=outputs-table] tr")
    expect(outputs).to_have_count(3)
    expect(page.locator("[data-testid=outputs-table] tr[data-step=ingest]")).to_contain_text(
        f"reused from {parent[:8]}"
    )
    expect(page.locator("[data-testid=reexecute-failure]")).to_be_hidden()  # it succeeded
    shot(page, "21-reexecuted-from-failure")
    assert started(server, child) == {"brittle", "publish"}
    page.locator("[data-testid=parent-link]").click()
    expect(page).to_have_url(re.compile(f"#/runs/{parent}$"))
    page.goto(f"{server}/#/runs")
    expect(page.locator(f"tr[data-run='{child}'] [data-testid=run-parent]")).to_have_text(
        f"↳ {parent[:8]}"
    )


def test_reexecute_steps_picked_on_the_graph(server: str, page: Any) -> None:
    parent = failed_run(server)
    page.goto(f"{server}/#/runs/{parent}")
    graph = page.locator("[data-testid=graph]")
    expect(graph.locator("[data-node=brittle]")).to_have_attribute("data-state", "failure")
    page.locator("[data-testid=select-steps]").click()
    selected = page.locator("[data-testid=reexecute-selected]")
    expect(selected).to_be_disabled()
    graph.locator("[data-node=brittle]").click()
    graph.locator("[data-node=publish]").click()
    expect(graph.locator(".node.picked")).to_have_count(2)
    expect(selected).to_have_text("Re-execute selected (2)")
    graph.locator("[data-node=publish]").click()  # a second click unpicks
    expect(selected).to_have_text("Re-execute selected (1)")
    shot(page, "22-steps-picked")
    selected.click()
    child = new_run_id(page, parent)
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    assert started(server, child) == {"brittle"}  # publish: downstream, not picked: left out
