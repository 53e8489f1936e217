"""``asyncdag pipeline execute --executor dask [--dask-address URL]``, through the real
console script, against the tests' Dask cluster: where steps run, Ctrl-C, bad flags."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from dask_support import wait_until_idle
from test_cli import _signal_after as signal_after
from test_cli import _start as start
from test_cli import cli, home, json_lines  # noqa: F401  (home: a fixture)

pytest.importorskip("distributed")

PIPELINE = """
import os, time
from asyncdag import pipeline, solid

@solid
def where() -> int:
    return os.getpid()

@solid
def wait_forever(context, pid: int) -> None:
    while not context.is_cancel_requested:
        time.sleep(0.01)

@pipeline
def on_dask():
    where()

@pipeline
def cancelled_on_dask():
    wait_forever(where())
"""


@pytest.fixture
def pipeline_file(tmp_path: Path) -> str:
    path = tmp_path / "on_dask.py"
    path.write_text(PIPELINE)
    return str(path)


def ran_on(events: list[dict[str, Any]]) -> str | None:
    for event in events:
        if event["type"] == "LOG" and event["message"].startswith("Running steps on"):
            return str(event["data"]["dask_scheduler"])
    return None


def test_execute_with_executor_dask_runs_the_steps_on_the_named_cluster(
    home: Path,  # noqa: F811
    pipeline_file: str,
    dask_cluster: Any,
) -> None:
    address = dask_cluster.scheduler_address
    done = cli(
        home, "pipeline", "execute", "-f", pipeline_file, "-p", "on_dask", "--json",
        "--executor", "dask", "--dask-address", address,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = json_lines(done.stdout)
    assert ran_on(events) == address
    assert events[-1]["type"] == "RUN_SUCCESS"


def test_executor_in_process_overrides_a_run_config_that_names_a_dask_cluster(
    home: Path,  # noqa: F811
    pipeline_file: str,
    tmp_path: Path,
) -> None:
    config = tmp_path / "dask.yaml"
    config.write_text("execution:\n  dask:\n    cluster:\n      existing: {address: tcp://x:1}\n")
    done = cli(
        home, "pipeline", "execute", "-f", pipeline_file, "-p", "on_dask", "--json",
        "-c", str(config), "--executor", "in_process",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ran_on(json_lines(done.stdout)) is None


def test_dask_address_without_executor_dask_is_a_usage_error(
    home: Path,  # noqa: F811
    pipeline_file: str,
) -> None:
    done = cli(
        home, "pipeline", "execute", "-f", pipeline_file, "-p", "on_dask",
        "--dask-address", "tcp://x:1",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--dask-address" in done.stderr and "--executor dask" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ctrl_c_cancels_the_dask_run_and_leaves_nothing_running_on_the_cluster(
    home: Path,  # noqa: F811
    pipeline_file: str,
    dask_cluster: Any,
    dask_client: Any,
    backend: str,
) -> None:
    process = start(
        home, pipeline_file, "-p", "cancelled_on_dask", "--backend", backend,
        "--executor", "dask", "--dask-address", dask_cluster.scheduler_address,
    )  # fmt: skip
    events, err = signal_after(process, "wait_forever", signal.SIGINT)
    assert process.returncode == 130, err
    assert events[-1]["type"] == "RUN_CANCELED"
    keys, counts = wait_until_idle(dask_client, events[0]["run_id"])
    assert keys == [] and set(counts.values()) == {0}
