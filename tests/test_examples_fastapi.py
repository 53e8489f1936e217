"""examples/fastapi_service.py: a FastAPI endpoint awaiting a run per request, the UI beside it.

In-process through httpx's ASGI transport on asyncio and trio (the service's lifespan
entered as a server would), and once under uvicorn in a subprocess.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncdag.storage import InMemoryStorage
from example_module import EXAMPLES, load_example

SCRIPT = EXAMPLES / "fastapi_service.py"
example = load_example(SCRIPT.name)


async def words_upstream(client: httpx.AsyncClient, pages: int) -> int:
    """The words of pages 1..pages, read from the upstream stand-in directly."""
    total = 0
    for n in range(1, pages + 1):
        response = await client.get(f"/upstream/pages/{n}")
        total += len(response.json()["text"].split())
    return total


@pytest.mark.anyio
async def test_each_request_awaits_a_run_on_the_shared_client_and_the_ui_lists_them() -> None:
    service = example.create_service(storage=InMemoryStorage())
    answers: dict[int, dict[str, Any]] = {}
    async with service.router.lifespan_context(service):
        shared: httpx.AsyncClient = service.state.http
        transport = httpx.ASGITransport(service)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:

            async def ask(pages: int) -> None:
                response = await client.get("/report", params={"pages": pages})
                assert response.status_code == 200, response.text
                answers[pages] = response.json()

            with anyio.fail_after(60):  # a hang guard, not a timing assertion
                async with (
                    anyio.create_task_group() as tg
                ):  # requests at once, as a server gets them
                    for pages in (1, 3, 5, 8):
                        tg.start_soon(ask, pages)
                await ask(2)  # and one after the others: the shared client is still open
            assert not shared.is_closed

            for pages, answer in answers.items():
                assert answer["pages"] == pages
                assert answer["words"] == await words_upstream(client, pages)
            runs = (await client.get("/dag/api/runs")).json()["runs"]
            assert sorted(r["run_id"] for r in runs) == sorted(
                a["run_id"] for a in answers.values()
            )
            assert {r["status"] for r in runs} == {"SUCCESS"}
            assert {r["tags"]["source"] for r in runs} == {"api"}
            events = (await client.get(f"/dag/api/runs/{answers[8]['run_id']}/events")).json()
            types = [e["type"] for e in events["events"]]
            assert types.count("STEP_SUCCESS") == 8 + 2
            # The client was given to the run: nothing of the run set it up or tore it down.
            assert not [t for t in types if t.startswith("RESOURCE_")]
    assert shared.is_closed  # the service's lifespan closed it, once, at shutdown


@pytest.mark.anyio
async def test_a_failed_run_is_a_502_naming_the_step_and_the_ui_keeps_it() -> None:
    service = example.create_service(storage=InMemoryStorage())
    async with service.router.lifespan_context(service):
        transport = httpx.ASGITransport(service)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            response = await client.get("/report", params={"pages": example.PAGES + 1})
            assert response.status_code == 502
            detail = response.json()["detail"]
            assert f"fetch_page[p{example.PAGES + 1}]: httpx.HTTPStatusError" in detail
            (run,) = (await client.get("/dag/api/runs")).json()["runs"]
            assert run["status"] == "FAILURE"
            assert run["run_id"] in detail
            ok = await client.get("/report", params={"pages": 1})  # the next request is fine
            assert ok.status_code == 200


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_the_service_runs_under_uvicorn_and_prints_no_run_events(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent / "src")}
    env.pop("ASYNCDAG_LOG_LEVEL", None)
    log = (tmp_path / "server.log").open("w+")
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # a start-up guard, not a timing assertion
        while True:
            try:
                response = httpx.get(f"{base}/report", params={"pages": 3}, timeout=30)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert response.status_code == 200, response.text
        second = httpx.get(f"{base}/report", params={"pages": 4}, timeout=30)
        assert second.status_code == 200, second.text
        runs = httpx.get(f"{base}/dag/api/runs", timeout=30).json()["runs"]
        assert sorted(r["run_id"] for r in runs) == sorted(
            [response.json()["run_id"], second.json()["run_id"]]
        )
        page = httpx.get(f"{base}/dag/", timeout=30)
        assert page.status_code == 200 and '<base href="/dag/">' in page.text
    finally:
        server.terminate()
        server.wait(timeout=30)
    log.seek(0)
    output = log.read()
    log.close()
    assert "GET /report?pages=3" in output  # uvicorn's own access log
    assert " - asyncdag - " not in output  # the library printed nothing of its own
