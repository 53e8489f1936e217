"""``asyncdag ui`` as a process: bad ports in one line, and signals that end it, stuck runs or not.

Driven through the real console script, as ``test_cli.py`` drives the CLI.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from asyncdag import RunStatus
from test_cli import (
    ASYNCDAG,
    HELLO,
    STUBBORN,
    TIMEOUT,
    _env,
    _stored_run,
    assert_one_clear_line,
    cli,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path) -> Path:
    directory = tmp_path / "home"
    directory.mkdir()
    return directory


# -- the port -------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_clear_line(home: Path, port: str) -> None:
    done = cli(home, "ui", "-f", HELLO, "--port", port)
    assert_one_clear_line(done, f"--port {port}", "65535")


def test_a_port_in_use_is_named_with_what_to_do(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(home, "ui", "-f", HELLO, "--port", str(port))
    assert_one_clear_line(done, f"port {port}", "already in use", "--port")


# -- signals --------------------------------------------------------------------------------


class _UI:
    """A running ``asyncdag ui`` and its stderr, read line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [ASYNCDAG, "ui", "--port", "0", *args],
            env=_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        banner = self.banner = self.read_until("serving")
        found = re.search(r"http://\S+:(\d+)", banner)
        assert found, banner
        self.url = f"http://127.0.0.1:{found.group(1)}"

    def read_until(self, fragment: str) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            if fragment in line:
                return line
        raise AssertionError(f"asyncdag ui ended before printing {fragment!r}")

    def launch(self, pipeline: str) -> str:
        response = httpx.post(f"{self.url}/api/runs", json={"pipeline": pipeline}, timeout=30)
        assert response.status_code == 201, response.text
        return str(response.json()["run_id"])

    def finish(self) -> str:
        _, err = self.process.communicate(timeout=TIMEOUT)
        return err


@pytest.fixture
def start_ui(home: Path) -> Iterator[Callable[..., _UI]]:
    started: list[_UI] = []

    def start(*args: str) -> _UI:
        ui = _UI(home, *args)
        started.append(ui)
        return ui

    yield start
    for ui in started:
        ui.process.kill()
        ui.process.wait()


def test_sigterm_stops_an_idle_ui(start_ui: Callable[..., _UI]) -> None:
    ui = start_ui("-f", HELLO)
    ui.process.send_signal(signal.SIGTERM)
    err = ui.finish()
    assert ui.process.returncode == 143, err
    assert "Traceback" not in err


def test_second_ctrl_c_stops_the_ui_while_a_sync_solid_never_returns(
    home: Path, start_ui: Callable[..., _UI]
) -> None:
    ui = start_ui("-f", STUBBORN)
    run_id = ui.launch("stubborn_pipeline")
    ui.read_until("STEP_START")
    ui.process.send_signal(signal.SIGINT)
    ui.read_until("shutting down")
    ui.process.send_signal(signal.SIGINT)
    err = ui.finish()
    assert ui.process.returncode == 130, err
    assert "Traceback" not in err
    record = _stored_run(home, run_id, recover=False)
    assert record.status is RunStatus.CANCELED  # recorded before leaving, not left STARTED


def test_sigterm_stops_the_ui_while_a_sync_solid_never_returns(
    home: Path, start_ui: Callable[..., _UI]
) -> None:
    # One SIGTERM only: the grace period running out ends the process.
    ui = start_ui("-f", STUBBORN, "--grace-period", "0.2")
    run_id = ui.launch("stubborn_pipeline")
    ui.read_until("STEP_START")
    ui.process.send_signal(signal.SIGTERM)
    err = ui.finish()
    assert ui.process.returncode == 143, err
    assert "Traceback" not in err
    assert _stored_run(home, run_id, recover=False).status is RunStatus.CANCELED


# -- who may talk to it -----------------------------------------------------------------------

TOKEN = "command-test-token-0123456789"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7"])
def test_binding_beyond_this_machine_without_a_token_is_one_clear_line(
    home: Path, host: str
) -> None:
    done = cli(home, "ui", "-f", HELLO, "--host", host)
    assert_one_clear_line(done, f"--host {host} serves other machines", "--auth-token")
    assert "ASYNCDAG_UI_TOKEN" in done.stderr


def test_a_weak_token_is_one_clear_line(home: Path) -> None:
    done = cli(home, "ui", "-f", HELLO, "--host", "0.0.0.0", "--auth-token", "1234")
    assert_one_clear_line(done, "--auth-token", "at least 16")


def test_a_ui_bound_beyond_this_machine_prints_its_token_and_requires_it(
    start_ui: Callable[..., _UI],
) -> None:
    ui = start_ui("-f", HELLO, "--host", "0.0.0.0", "--auth-token", TOKEN)
    assert ui.banner.rstrip().endswith(f"/?token={TOKEN}")
    refused = httpx.get(f"{ui.url}/api/runs", timeout=30)
    assert refused.status_code == 401
    assert "access token" in refused.json()["error"]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{ui.url}/api/runs", headers=bearer, timeout=30).status_code == 200
    page = httpx.get(f"{ui.url}/?token={TOKEN}", timeout=30)
    assert page.status_code == 303 and "HttpOnly" in page.headers["set-cookie"]
    rebound = httpx.get(f"{ui.url}/api/runs", headers={**bearer, "Host": "evil.example"})
    assert rebound.status_code == 403
