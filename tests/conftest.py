"""Every async test runs on asyncio and on trio, through anyio's own pytest plugin.

Storage tests take the ``storage`` fixture and run against every backend in
``storage_backends.BACKENDS`` (in-memory, SQLite, PostgreSQL); see that module.

The browser tests of a module share one headless Chromium (Debian's, driven by Playwright)
and get a fresh page each, which fails the test on any uncaught JavaScript error or anything
the UI's Content-Security-Policy refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asyncdag.storage import RunStorage
from storage_backends import (
    BACKENDS,
    SHARED_BACKENDS,
    PostgresServer,
    find_or_start_server,
    server_or_skip,
    start_server,
    storage_for,
)


@pytest.fixture(autouse=True, scope="session")
def _outputs_stay_in_a_temporary_directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    # UI runs store outputs by default; tests must never fill the real ~/.asyncdag/outputs.
    given = os.environ.get("ASYNCDAG_OUTPUT_STORE")
    os.environ["ASYNCDAG_OUTPUT_STORE"] = str(tmp_path_factory.mktemp("outputs"))
    yield
    if given is None:
        os.environ.pop("ASYNCDAG_OUTPUT_STORE", None)
    else:
        os.environ["ASYNCDAG_OUTPUT_STORE"] = given


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (skips, or fails in CI, when there is none)."""
    with server_or_skip(find_or_start_server) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a new, empty database for this test alone."""
    with postgres_server.database() as url:
        yield url


@pytest.fixture
def own_postgres_server() -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and restart (fault tests)."""
    with server_or_skip(start_server) as server:
        yield server


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStorage]:
    """A fresh, empty store of each backend in turn, closed after the test."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    with storage_for(request.param, tmp_path, url) as store:
        yield store


@pytest.fixture(params=SHARED_BACKENDS)
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL other processes can open, of each shared backend in turn."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'asyncdag.db'}"


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


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """A real Dask cluster shared by the Dask tests: 2 worker processes, 2 threads each,
    one abstract "GPU" each.  It stands for a cluster someone else runs (Dask's own
    defaults, allowed-failures included): the executor must cope with it as it is."""
    pytest.importorskip("distributed")
    from dask_support import start_cluster

    with start_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    """A plain synchronous client of that cluster, for tests to look at it (never the
    default client: the runs under test use their own)."""
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:
        yield client
