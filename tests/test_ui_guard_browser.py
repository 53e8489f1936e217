"""Attacks on a local ``asyncdag ui`` from a real Chromium: none of them launches a run.

A hostile page is served on a second local origin (another port of 127.0.0.1)
and tries what any web page the user visits could: an HTML form posting
``text/plain`` to ``/api/runs``, a ``fetch(..., {mode: "no-cors"})``, and framing
the UI to click its Launch button.  DNS rebinding is played by resolving a
foreign name to 127.0.0.1 inside Chromium.  The UI is configured as
``asyncdag ui`` configures it (localhost names only); a second one also needs
an access token.  Skipped only when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ui_server import (
    BROWSER_TEST,
    TEST_PIPELINES,
    launch_chromium,
    load_hello_world,
    serve_in_thread,
    watch_console,
)

pytestmark = BROWSER_TEST

playwright_sync = pytest.importorskip("playwright.sync_api")
expect = playwright_sync.expect

TOKEN = "browser-test-token-0123456789abcdef"
#: A name Chromium resolves to 127.0.0.1, as an attacker's DNS would after rebinding.
REBOUND = "rebound.attacker.test"


class Served:
    """A UI being served, and the (method, path, status) of every request it answered."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self.answers: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def recording(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.answers.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, recording if scope["type"] == "http" else send)

    def launches(self) -> list[int]:
        """The status of every POST /api/runs it answered so far."""
        return [status for method, path, status in self.answers if (method, path) == LAUNCH]

    def runs(self) -> list[str]:
        return [r["run_id"] for r in httpx.get(f"{self.url}/api/runs").json()["runs"]]


LAUNCH = ("POST", "/api/runs")


def _ui(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> Iterator[Served]:
    from asyncdag.storage import SqliteStorage
    from asyncdag.ui import create_app
    from asyncdag.ui._guard import hosts_for_bind

    path = tmp_path_factory.mktemp("ui") / "runs.db"
    with SqliteStorage(path) as storage:
        app = create_app(
            [load_hello_world(), *TEST_PIPELINES],
            storage=storage,
            allowed_hosts=hosts_for_bind("127.0.0.1"),
            **options,
        )
        served = Served(app)
        with serve_in_thread(served) as url:
            served.url = url
            yield served


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The UI as `asyncdag ui` serves it on this machine."""
    yield from _ui(tmp_path_factory)


@pytest.fixture(scope="module")
def locked_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The UI as `asyncdag ui --auth-token` serves it."""
    yield from _ui(tmp_path_factory, auth_token=TOKEN)


HOSTILE_PAGES = {
    # What a form can send: the text/plain body reads `{"pipeline":"hey_pipeline","pad":"="}`.
    "form": """<!doctype html><title>win a prize</title>
<form id="f" method="POST" action="{target}/api/runs" enctype="text/plain">
<input type="hidden" name='{{"pipeline":"hey_pipeline","pad":"' value='"}}'></form>
<script>document.getElementById("f").submit();</script>""",
    # An opaque request: the page cannot read the answer, but the server would act on it.
    "no-cors": """<!doctype html><title>loading</title><script>
fetch("{target}/api/runs", {{method: "POST", mode: "no-cors",
  body: JSON.stringify({{pipeline: "hey_pipeline"}})}})
  .then(() => {{ document.title = "sent"; }}, (e) => {{ document.title = "failed " + e; }});
</script>""",
    # Clickjacking: the UI under a transparent layer of the attacker's page.
    "frame": """<!doctype html><title>framed</title>
<iframe id="ui" src="{target}/#/pipelines/hey_pipeline/playground" width="900" height="600">
</iframe>""",
}


@pytest.fixture(scope="module")
def attacker(ui: Served) -> Iterator[str]:
    """A web site on another port of this machine: another origin than the UI's."""

    async def page(request: Request) -> HTMLResponse:
        template = HOSTILE_PAGES.get(request.path_params["name"])
        if template is None:
            return HTMLResponse("", status_code=404)
        return HTMLResponse(template.format(target=ui.url))

    with serve_in_thread(Starlette(routes=[Route("/{name}", page)])) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        browser = launch_chromium(p, f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1")
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_a_form_on_another_origin_cannot_launch_a_run(ui: Served, attacker: str, page: Any) -> None:
    before = ui.runs()
    with page.expect_response(lambda r: r.url == f"{ui.url}/api/runs") as answer:
        page.goto(f"{attacker}/form")
    assert answer.value.status == 403
    assert "cross-origin request refused" in answer.value.json()["error"]
    assert ui.runs() == before


def test_a_no_cors_fetch_from_another_origin_cannot_launch_a_run(
    ui: Served, attacker: str, page: Any
) -> None:
    before = ui.runs()
    answered = len(ui.launches())
    page.goto(f"{attacker}/no-cors")
    # The fetch settles once the server has answered (the page may not read an opaque answer).
    expect(page).to_have_title(re.compile(r"^(sent|failed)"))
    assert ui.launches()[answered:] == [403]
    assert ui.runs() == before


def test_another_origin_cannot_frame_the_ui(ui: Served, attacker: str, page: Any) -> None:
    with page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused:
        page.goto(f"{attacker}/frame")
    assert "frame-ancestors 'none'" in refused.value.text
    frame = page.frame_locator("#ui")
    expect(frame.locator("header.topbar")).to_have_count(0)
    expect(frame.locator("[data-testid=launch]")).to_have_count(0)


def test_a_rebound_dns_name_gets_nothing_from_the_ui(ui: Served, page: Any) -> None:
    port = ui.url.rsplit(":", 1)[1]
    before = ui.runs()
    response = page.goto(f"http://{REBOUND}:{port}/")
    assert response.status == 403
    assert "does not answer to the host" in response.json()["error"]
    # The attacker's script now runs on that (rebound) origin: its same-origin calls fail too.
    result = page.evaluate(
        """async () => {
            const r = await fetch("/api/runs", {method: "POST",
                headers: {"Content-Type": "application/json"},
                body: JSON.stringify({pipeline: "hey_pipeline"})});
            const history = await fetch("/api/runs");
            return [r.status, history.status];
        }"""
    )
    assert result == [403, 403]
    assert ui.runs() == before


def test_the_uis_own_page_still_launches_runs(ui: Served, page: Any) -> None:
    problems = watch_console(page)
    page.goto(f"{ui.url}/#/pipelines/hey_pipeline/playground")
    launch = page.locator("[data-testid=launch]")
    expect(launch).to_be_enabled()
    launch.click()
    expect(page).to_have_url(re.compile(r"#/runs/[0-9a-f-]{36}$"))
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    assert problems == [], problems


def test_without_its_token_the_ui_shows_nothing(locked_ui: Served, page: Any) -> None:
    response = page.goto(f"{locked_ui.url}/")
    assert response.status == 401
    assert "access token" in response.json()["error"]
    assert page.context.cookies() == []


def test_opened_with_its_token_the_ui_works_and_keeps_it_in_a_cookie(
    locked_ui: str, page: Any
) -> None:
    problems = watch_console(page)
    page.goto(f"{locked_ui.url}/?token={TOKEN}#/pipelines/hey_pipeline/playground")
    expect(page).to_have_url(f"{locked_ui.url}/#/pipelines/hey_pipeline/playground")  # token gone
    (cookie,) = page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    launch = page.locator("[data-testid=launch]")
    expect(launch).to_be_enabled()  # the page's API calls carry the cookie
    launch.click()
    expect(page.locator("[data-testid=event-log]")).to_contain_text("Hey, Kan!")  # the live feed
    expect(page.locator("[data-testid=run-status] [data-status]")).to_have_attribute(
        "data-status", "SUCCESS"
    )
    assert problems == [], problems
