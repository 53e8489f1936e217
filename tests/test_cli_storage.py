"""``--storage URL`` and ``$ASYNCDAG_STORAGE_URL`` on the commands that keep or read run history.

Through the real console script, as tests/test_cli.py does: ``pipeline execute``,
``run list|show|delete``, ``ui`` and ``schedule|sensor list|start|stop`` on a SQLite
URL and on PostgreSQL (``scheduler run --storage``: tests/test_automation_processes.py).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from asyncdag.storage import InstigatorStatus, PostgresStorage
from test_cli import ASYNCDAG, HELLO, TIMEOUT, _env

SCHEDULED = str(Path(__file__).parent / "pipelines" / "scheduled.py")

pytestmark = pytest.mark.slow


def cli(home: Path, *args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = _env(home)
    if url is not None:
        env["ASYNCDAG_STORAGE_URL"] = url
    return subprocess.run(
        [ASYNCDAG, *args], env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def listed(home: Path, *args: str, url: str | None = None) -> list[dict[str, Any]]:
    done = cli(home, "run", "list", "--json", *args, url=url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_storage_flag_records_and_reads_runs_where_it_points(tmp_path: Path) -> None:
    home, target = tmp_path / "home", tmp_path / "elsewhere" / "runs.db"
    url = f"sqlite:///{target}"
    done = cli(home, "pipeline", "execute", "-f", HELLO, "--storage", url)
    assert done.returncode == 0, done.stderr
    assert f"recorded in {target}" in done.stdout
    assert target.exists()
    assert listed(home) == []  # the default history was not touched
    (run,) = listed(home, "--storage", url)
    assert run["status"] == "SUCCESS"
    shown = cli(home, "run", "show", run["run_id"][:8], "--storage", url)
    assert shown.returncode == 0 and "Hey, Kan!" in shown.stdout
    assert cli(home, "run", "delete", run["run_id"], "--storage", url).returncode == 0
    assert listed(home, "--storage", url) == []


def test_the_environment_points_every_command_at_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    home = tmp_path / "home"
    done = cli(home, "pipeline", "execute", "-f", HELLO, url=postgres_url)
    assert done.returncode == 0, done.stderr
    assert f"recorded in {postgres_url}" in done.stdout
    (run,) = listed(home, url=postgres_url)
    assert run["status"] == "SUCCESS"
    shown = cli(home, "run", "show", run["run_id"][:8], url=postgres_url)
    assert shown.returncode == 0 and "Hey, Kan!" in shown.stdout

    async def stored() -> list[str]:
        async with PostgresStorage(postgres_url) as storage:
            return [e.message for e in await storage.get_events(run["run_id"])]

    assert "Hey, Kan!" in anyio.run(stored)
    assert listed(home, "--storage", "memory://", url=postgres_url) == []  # the flag wins
    assert not (home / "asyncdag.db").exists()


def test_a_storage_url_naming_no_storage_is_one_clear_line(tmp_path: Path) -> None:
    done = cli(tmp_path, "run", "list", "--storage", "mysql://root:pw@db/runs")
    assert done.returncode == 2
    assert done.stderr.startswith("asyncdag: error: ") and "Traceback" not in done.stderr
    assert "scheme 'mysql'" in done.stderr and "postgresql://" in done.stderr
    assert ":pw@" not in done.stderr


def test_an_unreachable_postgres_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://asyncdag:secret@127.0.0.1:{port}/runs"
    done = cli(tmp_path, "pipeline", "execute", "-f", HELLO, "--storage", url)
    assert done.returncode == 2, done.stderr
    assert f"cannot open run storage postgresql://asyncdag:***@127.0.0.1:{port}/runs" in (
        done.stderr
    )
    assert "secret" not in done.stderr and "Traceback" not in done.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_ui_serves_the_history_the_storage_flag_names(tmp_path: Path, postgres_url: str) -> None:
    home = tmp_path / "home"
    assert cli(home, "pipeline", "execute", "-f", HELLO, "--storage", postgres_url).returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [ASYNCDAG, "ui", "-f", HELLO, "--port", str(port), "--storage", postgres_url],
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        assert f"runs in {postgres_url}" in banner, banner
        deadline = time.monotonic() + TIMEOUT  # a hang guard, not a speed check
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the UI never answered"
                time.sleep(0.05)
        runs = response.json()["runs"]
        assert [(r["pipeline_name"], r["status"]) for r in runs] == [("hey_pipeline", "SUCCESS")]
    finally:
        server.terminate()
        server.wait(TIMEOUT)


def test_schedules_and_sensors_are_turned_on_and_off_where_the_storage_points(
    tmp_path: Path, postgres_url: str
) -> None:
    home = tmp_path / "home"
    started = cli(
        home, "schedule", "start", "monday_morning", "-f", SCHEDULED, "--storage", postgres_url
    )
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "schedule 'monday_morning' is now RUNNING"
    started = cli(home, "sensor", "start", "report_requests", "-f", SCHEDULED, url=postgres_url)
    assert started.returncode == 0, started.stderr
    listed = cli(home, "schedule", "list", "-f", SCHEDULED, "--json", "--storage", postgres_url)
    assert [(r["name"], r["status"]) for r in json.loads(listed.stdout)] == [
        ("monday_morning", "RUNNING")
    ]

    async def stored() -> dict[str, InstigatorStatus | None]:
        async with PostgresStorage(postgres_url) as storage:
            return {s.name: s.status for s in await storage.list_instigator_states()}

    assert anyio.run(stored) == {
        "monday_morning": InstigatorStatus.RUNNING,
        "report_requests": InstigatorStatus.RUNNING,
    }
    assert not (home / "asyncdag.db").exists()  # the default history was not touched
