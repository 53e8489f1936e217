"""Every async test runs on asyncio and on trio, through anyio's own pytest plugin.

The browser tests of a module share one headless Chromium (Debian's, driven by Playwright)
and get a fresh page each, which fails the test on any uncaught JavaScript error or anything
the UI's Content-Security-Policy refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Per module: Playwright's sync API holds an event loop in this thread while it is
    # open, and a module's fixtures may need anyio.run first.
    from playwright.sync_api import sync_playwright

    from ui_server import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from ui_server import watch_console

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems = watch_console(page)
    yield page
    context.close()
    # No uncaught JavaScript error on any page, and nothing the Content-Security-Policy refused.
    assert problems == [], problems
