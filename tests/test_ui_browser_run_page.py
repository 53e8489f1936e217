"""The run page as a person reads it, in Debian's Chromium: what failed, big runs, the toolbar.

Skipped only when ``/usr/bin/chromium`` is absent (``.ci/run`` installs it).  The
100,000-event run is written straight into the run storage by the fixture, so the
test pays for reading and drawing it, not for running 50,000 steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from asyncdag import Event, EventType, RunStatus, pipeline, solid
from asyncdag.storage import RunRecord, SqliteStorage
from ui_server import BROWSER_TEST, TEST_PIPELINES, load_hello_world, serve_in_thread, shot

pytestmark = BROWSER_TEST

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

BIG_STEPS = 49_999  # with RUN_START and RUN_SUCCESS: 100,000 events
BIG_RUN = "big-run-00000000-0000-0000-0000-000000000000"


@solid
def leaf() -> int:
    return 1


@pipeline(description="Fifty thousand independent steps: a run of 100,000 events.")
def big_pipeline() -> None:
    for i in range(BIG_STEPS):
        leaf.alias(f"s{i}")()


@solid
def left() -> int:
    return 1


@solid
def right() -> int:
    return 2


@solid
def join(a: int, b: int) -> int:
    return a + b


@solid
def then(value: int) -> int:
    return value


@pipeline(description="Two roots over a chain: tall, so its top layer meets the toolbar's row.")
def two_roots() -> None:
    then.alias("last")(then(join(left(), right())))


def _big_events() -> list[Event]:
    t0 = 1_700_000_000.0
    events = [Event(BIG_RUN, 0, t0, EventType.RUN_START, data={"pipeline_name": "big_pipeline"})]
    for i in range(BIG_STEPS):
        t = t0 + i * 1e-4
        events.append(
            Event(BIG_RUN, len(events), t, EventType.STEP_START, f"s{i}", 10, f"start s{i}")
        )
        events.append(
            Event(
                BIG_RUN,
                len(events),
                t + 5e-5,
                EventType.STEP_SUCCESS,
                f"s{i}",
                10,
                f"finished s{i}",
                {"duration": 5e-5},
            )
        )
    events.append(Event(BIG_RUN, len(events), t0 + BIG_STEPS * 1e-4, EventType.RUN_SUCCESS))
    return events


async def _write_big_run(storage: SqliteStorage) -> None:
    events = _big_events()
    assert len(events) == 100_000
    await storage.create_run(
        RunRecord(
            run_id=BIG_RUN,
            pipeline_name="big_pipeline",
            status=RunStatus.STARTED,
            start_time=events[0].timestamp,
        )
    )
    for start in range(0, len(events), 10_000):
        await storage.add_events(BIG_RUN, events[start : start + 10_000])
    await storage.finish_run(BIG_RUN, RunStatus.SUCCESS, end_time=events[-1].timestamp)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from asyncdag.ui import create_app

    path = tmp_path_factory.mktemp("ui") / "runs.db"
    with SqliteStorage(path) as storage:
        anyio.run(_write_big_run, storage)
        pipelines = [load_hello_world(), two_roots, big_pipeline, *TEST_PIPELINES]
        app = create_app(pipelines, storage=storage)
        with serve_in_thread(app) as url:
            yield url


def _box(locator: Any) -> tuple[float, float, float, float]:
    box = locator.bounding_box()
    assert box is not None
    return box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# --- a failed run says what failed ---------------------------------------------------------------


def test_a_failed_run_says_at_the_top_which_step_failed_and_why(server: str, page: Any) -> None:
    run_id = httpx.post(f"{server}/api/runs", json={"pipeline": "failing_pipeline"}).json()[
        "run_id"
    ]
    page.goto(f"{server}/#/runs/{run_id}")
    failure = page.locator("[data-testid=run-failure]")
    expect(failure).to_be_visible()
    expect(failure.locator("[data-testid=failed-step]")).to_have_text("explode")
    expect(failure.locator("[data-testid=failure-type]")).to_have_text("ValueError")
    expect(failure.locator("[data-testid=failure-message]")).to_have_text(
        "boom: the solid failed on purpose"
    )
    trace = failure.locator("[data-testid=failure-traceback]")
    expect(trace).to_be_hidden()
    failure.locator("[data-testid=failure-traceback-toggle]").click()
    expect(trace).to_be_visible()
    expect(trace).to_contain_text("Traceback (most recent call last)")
    expect(trace).to_contain_text("ValueError: boom: the solid failed on purpose")
    # Above the graph, the timeline and the log: the first thing read.
    assert _box(failure)[3] <= _box(page.locator("[data-testid=graph]"))[1]
    shot(page, "11-run-failed-summary")


def test_a_successful_run_shows_no_failure(server: str, page: Any) -> None:
    run_id = httpx.post(f"{server}/api/runs", json={"pipeline": "hey_pipeline"}).json()["run_id"]
    page.goto(f"{server}/#/runs/{run_id}")
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    expect(page.locator("[data-testid=run-failure]")).to_be_hidden()


# --- the toolbar leaves the graph alone ----------------------------------------------------------


@pytest.mark.parametrize("where", ["pipeline", "run"])
def test_the_graph_fits_below_its_toolbar(server: str, page: Any, where: str) -> None:
    if where == "pipeline":
        page.goto(f"{server}/#/pipelines/two_roots")
    else:
        run_id = httpx.post(f"{server}/api/runs", json={"pipeline": "two_roots"}).json()["run_id"]
        page.goto(f"{server}/#/runs/{run_id}")
    graph = page.locator("[data-testid=graph]")
    nodes = graph.locator("[data-node]")
    expect(nodes).to_have_count(5)
    page.wait_for_timeout(300)  # the fit runs on the next animation frame
    toolbar = _box(page.locator(".graph-toolbar"))
    for i in range(5):
        node = nodes.nth(i)
        assert not _overlap(_box(node), toolbar), node.get_attribute("data-node")
    page.locator(".graph-toolbar button[title='Fit the whole graph']").click()
    for i in range(5):
        assert not _overlap(_box(nodes.nth(i)), toolbar)
    shot(page, f"12-graph-below-toolbar-{where}")


# --- 100,000 events ------------------------------------------------------------------------------


def test_a_100000_event_run_page_loads_and_its_log_scrolls(server: str, page: Any) -> None:
    page.set_default_timeout(30_000)
    page.goto(f"{server}/#/runs/{BIG_RUN}")
    count = page.locator("[data-testid=log-count]")
    expect(count).to_have_text("100000 events", timeout=120_000)
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    expect(page.locator("[data-testid=state-counts]")).to_contain_text("49,999 succeeded")

    # The graph is one group standing for every step, coloured by their states.
    group = page.locator("[data-testid=graph] [data-node]")
    expect(group).to_have_count(1)
    expect(group).to_have_attribute("data-state", "success")
    expect(group).to_contain_text("49,999 steps")

    log = page.locator("[data-testid=event-log]")
    follow = page.locator(".log-toolbar .follow input")
    follow.uncheck()
    for fraction in (0.0, 0.5, 1.0):
        log.evaluate(
            f"el => {{ el.scrollTop = (el.scrollHeight - el.clientHeight) * {fraction}; }}"
        )
        page.wait_for_timeout(100)
        seqs = [
            int(s)
            for s in log.locator(".log-row").evaluate_all("rows => rows.map(r => r.dataset.seq)")
        ]
        assert 0 < len(seqs) < 200  # a screenful of rows, whatever the log's length
        middle = 100_000 * fraction
        assert min(seqs) - 100 <= middle <= max(seqs) + 100, (fraction, min(seqs), max(seqs))
    expect(log).to_contain_text("RUN SUCCESS")
    assert 0 < page.locator("[data-testid=gantt] .gantt-row").count() < 200
    shot(page, "13-run-100000-events")


def test_a_50000_step_pipeline_draws_collapsed(server: str, page: Any) -> None:
    page.goto(f"{server}/#/pipelines/big_pipeline")
    expect(page.locator("[data-testid=graph] [data-node]")).to_have_count(1)
    expect(page.locator("[data-testid=collapsed-note]")).to_contain_text("1 groups")
    page.locator("[data-testid=graph] [data-node]").click()
    expect(page.locator("[data-testid=solid-details]")).to_contain_text(
        "49,999 solids: s0 … s49998"
    )
