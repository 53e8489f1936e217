"""examples/fetch_urls.py: a shared httpx.AsyncClient resource fetching from a local server."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from asyncdag import EventType, StepStatus, execute_pipeline_async, open_run
from asyncdag.config import load_run_config
from example_module import EXAMPLES, load_example

SCRIPT = EXAMPLES / "fetch_urls.py"
CONFIG = EXAMPLES / "fetch_urls.yaml"


example = load_example("fetch_urls.py")


def expected_response(path: str) -> tuple[int, int]:
    """What the example's server answers for ``path``: (status, body bytes), from its rules."""
    if match := re.fullmatch(r"/bytes/(\d+)", path):
        return 200, int(match.group(1))
    if match := re.fullmatch(r"/status/(\d{3})", path):
        status = int(match.group(1))
        return status, 0 if status in (204, 304) else len(f"status {status}")
    return 404, len("not found")


def expected_summary() -> tuple[int, dict[Any, int], int]:
    urls = load_run_config(CONFIG)["solids"]["list_urls"]["config"]["urls"]
    answers = [expected_response(url) for url in urls]
    return len(urls), dict(Counter(status for status, _ in answers)), sum(n for _, n in answers)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with example.local_server() as base_url:
        yield base_url


@pytest.mark.anyio
async def test_fetch_urls_summarises_status_codes_and_bytes(server: str) -> None:
    run_config = example.run_config_for(server)
    async with open_run(example.fetch_urls, run_config) as run:
        pass
    result = await run.result()
    assert result.success
    assert run.max_concurrency == 3  # from the YAML's execution section

    summary = result.output_for_solid("summarise")
    requests, statuses, total_bytes = expected_summary()
    assert requests == 10 and len(statuses) >= 4  # the YAML exercises several answers
    assert summary["requests"] == requests
    assert summary["status_codes"] == statuses
    assert summary["bytes"] == total_bytes
    assert sorted(row["url"] for row in summary["urls"]) == sorted(
        load_run_config(CONFIG)["solids"]["list_urls"]["config"]["urls"]
    )

    # One client, set up once for all fetch steps, closed after the run.
    resource_events = [
        (e.type, e.data["resource"]) for e in result.events if e.type.value.startswith("RESOURCE_")
    ]
    assert resource_events == [
        (EventType.RESOURCE_INIT_STARTED, "http"),
        (EventType.RESOURCE_INIT_SUCCESS, "http"),
        (EventType.RESOURCE_TEARDOWN, "http"),
    ]
    fetches = [key for key in result.step_results if key.startswith("fetch_")]
    assert len(fetches) == example.SHARDS
    assert all(result.step_result(key).status is StepStatus.SUCCESS for key in fetches)


@pytest.mark.anyio
async def test_fetch_urls_records_unreachable_urls_as_errors() -> None:
    with socket.socket() as sock:  # a port nobody listens on once this closes
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run_config = example.run_config_for(f"http://127.0.0.1:{port}")
    result = await execute_pipeline_async(example.fetch_urls, run_config)
    summary = result.output_for_solid("summarise")
    assert summary["status_codes"] == {"error": 10}
    assert summary["bytes"] == 0


def test_main_prints_the_summary(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert example.main(["--base-url", server, "--backend", "trio"]) == 0
    requests, statuses, total_bytes = expected_summary()
    last = capsys.readouterr().out.strip().splitlines()[-1]
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(statuses.items()))
    assert last == f"{requests} requests, {total_bytes} bytes; status codes {{{codes}}}"


@pytest.mark.slow
def test_the_script_runs_alone_with_its_own_server() -> None:
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent / "src"), "ASYNCDAG_LOG_LEVEL": "ERROR"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    requests, _, total_bytes = expected_summary()
    assert f"{requests} requests, {total_bytes} bytes" in done.stdout
