"""What the Dask tests share: the cluster, ways to look at it, and solids' helpers.

Worker processes import this module too (they are spawned with the test
process's ``sys.path``), so functions given to ``client.run`` live here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def start_cluster() -> Iterator[Any]:
    import dask
    from distributed import LocalCluster

    # A LocalCluster closes a killed worker's nanny for good when, 15 s after the worker
    # was removed, no worker of that name is registered: a second kill close to that
    # moment (the fault tests) would shrink the cluster.  Read when a worker is removed.
    dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"})
    cluster = LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=2,
        resources={"GPU": 1},
        dashboard_address=":0",
        silence_logs=logging.CRITICAL,
    )
    try:
        yield cluster
    finally:
        cluster.close()


def our_keys(client: Any, run_id: str) -> list[str]:
    """The run's tasks the scheduler still knows (cancelled ones are forgotten at once)."""
    prefix = f"asyncdag-{run_id}-"

    def keys(dask_scheduler: Any = None) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks if str(k).startswith(prefix)]

    return list(client.run_on_scheduler(keys))


def executing(client: Any) -> dict[str, int]:
    """Tasks each worker executes now (a cancelled task's thread counts until it returns)."""

    def count(dask_worker: Any = None) -> int:
        return int(dask_worker.state.executing_count)

    return dict(client.run(count))


def wait_until_idle(client: Any, run_id: str, timeout: float = 20.0) -> tuple[list[str], dict]:
    """Poll until the scheduler holds none of the run's tasks and no worker executes any;
    returns what was last seen (idle or not), for the test to assert on."""
    deadline = time.monotonic() + timeout
    while True:
        keys, counts = our_keys(client, run_id), executing(client)
        if (not keys and not any(counts.values())) or time.monotonic() > deadline:
            return keys, counts
        time.sleep(0.05)


def wait_for_workers(client: Any, n: int = 2) -> None:
    client.wait_for_workers(n, timeout=120)


def kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def wait_for_file(path: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# --- a scheduler and a worker in processes of their own ---------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def external_cluster(cwd: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A scheduler and one worker started as commands in ``cwd``, seeing only installed
    packages (not the tests' files): a cluster someone else runs."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"],
        cwd=cwd, env=env, start_new_session=True, **quiet,
    )  # fmt: skip
    worker = subprocess.Popen(
        [str(bin_dir / "dask"), "worker", address, "--nthreads", "2", "--no-dashboard"],
        cwd=cwd, env=env, start_new_session=True, **quiet,
    )  # fmt: skip
    try:
        yield address, scheduler
    finally:
        for process in (worker, scheduler):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
