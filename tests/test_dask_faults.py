"""Faults only a cluster has: a worker process killed mid-step, a scheduler that stops
answering or goes away, a cluster that is not there.  On asyncio and trio.

A killed worker's attempt is retried by the solid's retry policy (or fails with
"worker lost"), never re-run by Dask behind the engine: the step's body runs once
per attempt the run records.  A scheduler gone fails the run with a clear error,
never a hang.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import (
    DaskExecutor,
    EventType,
    RetryPolicy,
    RunStatus,
    StepStatus,
    execute_pipeline_async,
    pipeline,
    solid,
)
from asyncdag.dask import SchedulerUnreachable, WorkerLost
from dask_support import external_cluster, kill, wait_for_workers

pytest.importorskip("distributed")

pytestmark = pytest.mark.anyio


async def test_a_worker_killed_mid_step_is_retried_by_the_policy_and_succeeds_once(
    dask_cluster: Any, dask_client: Any
) -> None:
    await anyio.to_thread.run_sync(wait_for_workers, dask_client)

    # Spare retries: with both workers killed at once, the scheduler may hand the retry
    # to the second dead worker before it notices that one died too; that attempt is
    # lost before its body starts (a STEP_START and a STEP_UP_FOR_RETRY, no body).
    @solid(retry_policy=RetryPolicy(max_retries=3))
    def victim(context: Any) -> int:
        context.log.info(f"body started: attempt {context.retry_number + 1} pid {os.getpid()}")
        if context.retry_number == 0:
            from dask_support import wait_for_file

            wait_for_file("/nonexistent", timeout=120)  # killed long before
        return context.retry_number + 1

    @solid
    def unprotected(context: Any) -> None:
        context.log.info(f"body started: attempt 1 pid {os.getpid()}")
        from dask_support import wait_for_file

        wait_for_file("/nonexistent", timeout=120)

    @pipeline
    def p() -> None:
        victim()
        unprotected()

    first_attempts: dict[str, int] = {}

    def on_event(event: Any) -> None:
        # Once both first attempts run, kill their workers together: nothing finished
        # before (an output lost with its worker would be another test).
        if event.type is EventType.LOG and event.message.startswith("body started: attempt 1"):
            first_attempts[event.step_key] = int(event.message.rsplit(" ", 1)[1])
            if len(first_attempts) == 2:
                for pid in set(first_attempts.values()):
                    kill(pid)

    # A cluster with Dask's default allowed-failures (3): without the executor's guard,
    # Dask would run the killed attempt again on another worker by itself.
    executor = DaskExecutor(cluster=dask_cluster)
    result = await execute_pipeline_async(
        p, executor=executor, listeners=[on_event], raise_on_error=False
    )
    try:
        bodies = [e.message for e in result.events if e.message.startswith("body started")]
        victim_types = [e.type for e in result.events if e.step_key == "victim"]
        lost_unstarted = (len(victim_types) - 6) // 2
        assert 0 <= lost_unstarted <= 2
        assert victim_types == [
            EventType.STEP_START,
            EventType.LOG,
            EventType.STEP_UP_FOR_RETRY,
            *[EventType.STEP_START, EventType.STEP_UP_FOR_RETRY] * lost_unstarted,
            EventType.STEP_START,
            EventType.LOG,
            EventType.STEP_SUCCESS,
        ]
        retries = [e for e in result.events if e.type is EventType.STEP_UP_FOR_RETRY]
        assert {e.data["error"]["type"] for e in retries} == {"asyncdag.dask.WorkerLost"}
        attempts = lost_unstarted + 2
        assert result.output_for_solid("victim") == attempts
        # Each attempt's body ran at most once, and only the first and the last ran at
        # all: Dask re-ran nothing behind the engine's back.
        assert sorted(m.split(" pid")[0] for m in bodies) == [
            "body started: attempt 1",
            "body started: attempt 1",
            f"body started: attempt {attempts}",
        ]
        assert result.step_result("unprotected").status is StepStatus.FAILURE
        error = result.exception_for_step("unprotected")
        assert isinstance(error, WorkerLost) and "died" in str(error)
    finally:
        await anyio.to_thread.run_sync(wait_for_workers, dask_client)


async def test_an_output_lost_with_its_worker_is_not_computed_again_behind_the_engine(
    dask_cluster: Any, dask_client: Any, tmp_path: Path
) -> None:
    await anyio.to_thread.run_sync(wait_for_workers, dask_client)
    runs = tmp_path / "up-runs"

    @solid
    def up(context: Any) -> int:
        with open(runs, "a") as record:  # every execution, seen by the driver or not
            record.write(f"{os.getpid()}\n")
        context.log.info(f"up ran in {os.getpid()}")
        return 41

    @solid
    def down(value: int) -> int:
        return value + 1

    @pipeline
    def p() -> None:
        down(up())

    def on_event(event: Any) -> None:
        if event.type is EventType.LOG and event.message.startswith("up ran in"):
            holder[0] = int(event.message.rsplit(" ", 1)[1])
        elif event.type is EventType.STEP_SUCCESS and event.step_key == "up":
            kill(holder[0])  # the finished output dies with its worker

    holder = [0]
    try:
        result = await execute_pipeline_async(
            p, executor=DaskExecutor(cluster=dask_cluster), listeners=[on_event],
            raise_on_error=False,
        )  # fmt: skip
        assert runs.read_text().split() == [str(holder[0])]
        assert result.step_result("down").status is StepStatus.FAILURE
        # Whether "down" was already running there or had to fetch the output elsewhere,
        # it fails with WorkerLost, and "up" did not run again.
        assert isinstance(result.exception_for_step("down"), WorkerLost)
    finally:
        await anyio.to_thread.run_sync(wait_for_workers, dask_client)


async def test_no_cluster_at_the_address_fails_the_run_with_a_clear_error() -> None:
    @solid
    def never() -> None:
        raise AssertionError("ran without a cluster")

    @pipeline
    def p() -> None:
        never()

    executor = DaskExecutor(address="tcp://127.0.0.1:9", connect_timeout=0.5)
    result = await execute_pipeline_async(p, executor=executor, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    assert isinstance(result.run_exception, SchedulerUnreachable)
    assert "tcp://127.0.0.1:9" in str(result.run_exception)
    assert result.step_result("never").status is StepStatus.SKIPPED
    assert "could not connect to the Dask scheduler" in result.events[-1].message
    assert result.events[-1].data["error"]["type"] == "asyncdag.dask.SchedulerUnreachable"


@pytest.fixture(scope="module")
def outside_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A scheduler and a worker in processes of their own, started where the tests' files
    cannot be imported (only installed packages)."""
    pytest.importorskip("distributed")
    cwd = tmp_path_factory.mktemp("cluster")
    with external_cluster(cwd) as (address, scheduler):
        yield address, scheduler


HELPERS_FILE = "FACTOR = 7\n\ndef six() -> int:\n    return 6\n"
PIPELINE_FILE = """
from asyncdag import pipeline, resource, solid

import only_here_helpers
from only_here_helpers import FACTOR

@resource
def factor(init_context):
    return FACTOR

@solid(required_resources={"factor"})
def times(context, v: int) -> int:
    return v * context.resources.factor

@solid
def six() -> int:
    return only_here_helpers.six()

@pipeline(resources={"factor": factor})
def from_a_file():
    times(six())
"""


async def test_a_pipeline_file_only_the_driver_has_runs_on_a_cluster_that_cannot_import_it(
    outside_cluster: tuple[str, Any], tmp_path: Path
) -> None:
    from asyncdag._workspace import load_pipelines

    (tmp_path / "only_here_helpers.py").write_text(HELPERS_FILE)  # imported by the pipeline
    path = tmp_path / "only_here.py"
    path.write_text(PIPELINE_FILE)
    p = load_pipelines(files=[path])["from_a_file"]
    address, _ = outside_cluster
    result = await execute_pipeline_async(p, executor=DaskExecutor(address=address))
    assert result.output_for_solid("times") == 42


def started_pipeline() -> Any:
    """One step that says "started", then waits (up to 10 s) to be told to stop."""

    @solid
    def started(context: Any) -> None:
        context.log.info("started")
        import time  # the outside cluster's worker cannot import the tests' helpers

        for _ in range(1000):
            if context.is_cancel_requested:
                return
            time.sleep(0.01)

    @pipeline
    def p() -> None:
        started()

    return p


async def test_a_frozen_scheduler_fails_the_run_instead_of_hanging(
    outside_cluster: tuple[str, Any],
) -> None:
    address, scheduler = outside_cluster

    p = started_pipeline()

    def freeze(event: Any) -> None:
        if event.type is EventType.LOG and event.message == "started":
            os.kill(scheduler.pid, signal.SIGSTOP)

    executor = DaskExecutor(address=address, watchdog_interval=0.2, watchdog_timeout=1)
    try:
        with anyio.fail_after(60):  # a hang fails the test instead of blocking it
            result = await execute_pipeline_async(
                p, executor=executor, listeners=[freeze], raise_on_error=False
            )
    finally:
        os.kill(scheduler.pid, signal.SIGCONT)
    assert result.status is RunStatus.FAILURE
    error = result.exception_for_step("started")
    assert isinstance(error, SchedulerUnreachable)
    assert "did not answer" in str(error)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
async def test_a_scheduler_gone_fails_the_run_with_a_clear_error(
    tmp_path: Path, anyio_backend: str
) -> None:
    p = started_pipeline()

    with external_cluster(tmp_path) as (address, scheduler):

        def kill_scheduler(event: Any) -> None:
            if event.type is EventType.LOG and event.message == "started":
                kill(scheduler.pid)

        with anyio.fail_after(60):
            result = await execute_pipeline_async(
                p,
                executor=DaskExecutor(address=address),
                listeners=[kill_scheduler],
                raise_on_error=False,
            )
    assert result.status is RunStatus.FAILURE
    error = result.exception_for_step("started")
    assert isinstance(error, SchedulerUnreachable)
    assert "scheduler" in str(error)
