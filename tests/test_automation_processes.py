"""Schedulers in real processes sharing one history: each tick once, none lost, even on SIGKILL.

Each test runs on every history other processes can share (the ``storage_url``
fixture: a SQLite file, and PostgreSQL), and reads what the schedulers stored
through the storage API, so the same assertions hold both backends.  The
multi-process tests move time through a file every scheduler process reads as
its clock (``automation_proc.py``), so no test waits for a wall-clock tick.  The
last test is the one on real time: ``asyncdag scheduler run --storage URL`` on a
per-second schedule, stopped with Ctrl-C, asserting counts, never durations.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag.storage import PostgresStorage, RunRecord, RunStorage, SqliteStorage, TickRecord

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
SRC = str(TESTS.parent / "src")
CLOCKED = TESTS / "pipelines" / "clocked.py"
EVERY_SECOND = TESTS / "pipelines" / "every_second.py"
CLI = Path(sys.executable).parent / "asyncdag"
HANG_GUARD = 60.0  # seconds; only stops a broken test from hanging, never asserts speed
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
HOUR = 3600.0


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def reader(url: str) -> RunStorage:
    """A store on ``url`` for the test to read, which leaves the schedulers' runs alone."""
    if url.startswith("postgresql://"):
        return PostgresStorage(url, recover_orphans=False)
    return SqliteStorage(url.removeprefix("sqlite://"), recover_orphans=False)


class Cluster:
    """Scheduler processes on one history and one file clock."""

    def __init__(self, root: Path, url: str, **env: str) -> None:
        self.url = url
        self.clock = root / "clock"
        self.env = {**os.environ, "PYTHONPATH": SRC, "ASYNCDAG_LOG_LEVEL": "WARNING", **env}
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.storage = reader(url)
        self.set_time(T0)

    def set_time(self, t: float) -> None:
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(repr(t))
        os.replace(tmp, self.clock)  # every reader sees the old time or the new, never half

    def start(self, owner: str) -> None:
        argv = [sys.executable, str(TESTS / "automation_proc.py")]
        argv += [self.url, str(self.clock), owner, str(CLOCKED)]
        proc = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, text=True)
        self.procs[owner] = proc
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"

    def kill(self, owner: str) -> None:
        proc = self.procs.pop(owner)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=HANG_GUARD)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            proc.wait(timeout=HANG_GUARD)

    def read(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return anyio.run(functools.partial(method, *args, **kwargs))

    def ticks(self) -> list[TickRecord]:
        """The schedule's ticks, oldest first."""
        return list(reversed(self.read(self.storage.list_ticks, "hourly")))

    def runs(self) -> list[RunRecord]:
        return self.read(self.storage.list_runs)  # type: ignore[no-any-return]

    def tick(self, t: float) -> tuple[str, str, list[str]] | None:
        for tick in self.ticks():
            if tick.tick_time == t:
                return tick.status.value, tick.owner, list(tick.run_ids)
        return None

    def finished(self, t: float) -> tuple[str, str, list[str]] | None:
        """The tick at ``t`` once it and its runs are finished."""
        tick = self.tick(t)
        if tick is None or tick[0] == "STARTED":
            return None
        statuses = [self.run_status(run_id) for run_id in tick[2]]
        return tick if all(s == "SUCCESS" for s in statuses) else None

    def run_status(self, run_id: str) -> str | None:
        record = self.read(self.storage.get_run, run_id)
        return None if record is None else record.status.value

    def lease_holders(self) -> list[str]:
        """Who holds a lease: a table, as the contract reads leases only by taking them."""
        if isinstance(self.storage, PostgresStorage):
            import psycopg

            with psycopg.connect(self.url) as pg:
                rows = pg.execute("SELECT owner FROM asyncdag_automation_leases").fetchall()
        else:
            lite = sqlite3.connect(self.url.removeprefix("sqlite://"), timeout=HANG_GUARD)
            try:
                rows = lite.execute("SELECT owner FROM automation_leases").fetchall()
            finally:
                lite.close()
        return [row[0] for row in rows]


@pytest.fixture
def cluster(tmp_path: Path, storage_url: str) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        made.append(Cluster(tmp_path, storage_url, **env))
        return made[-1]

    yield make
    for c in made:
        for proc in c.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        c.storage.close()


def test_two_scheduler_processes_on_one_history_run_each_tick_once(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster()
    c.start("a")
    c.start("b")
    hours = range(1, 6)
    for hour in hours:
        # Each jump outlives the holder's lease: both processes race for it, then for the tick.
        c.set_time(T0 + hour * HOUR + 1)
        wait_for(f"tick {hour}", lambda h=hour: c.finished(T0 + h * HOUR))
    c.stop()
    assert all(proc.returncode == 0 for proc in c.procs.values())
    ticks = c.ticks()
    assert [(t.tick_time - T0, t.status.value) for t in ticks] == [
        (h * HOUR, "SUCCESS") for h in hours
    ]
    assert all(len(t.run_ids) == 1 for t in ticks)
    runs = c.runs()
    assert sorted(r.run_id for r in runs) == sorted(t.run_ids[0] for t in ticks)
    stamps = sorted(r.tags["asyncdag/scheduled_execution_time"] for r in runs)
    assert stamps == [f"2024-01-01T0{h}:00:00+00:00" for h in hours]


def test_a_killed_schedulers_lease_passes_to_the_survivor(
    cluster: Callable[..., Cluster],
) -> None:
    c = cluster()
    c.start("a")
    c.start("b")
    c.set_time(T0 + HOUR + 1)
    _, holder, _ = wait_for("tick 1", lambda: c.finished(T0 + HOUR))
    survivor = "b" if holder == "a" else "a"
    c.kill(holder)  # SIGKILL: no clean shutdown, its lease stays behind until it expires
    for hour in (2, 3):
        c.set_time(T0 + hour * HOUR + 1)
        status, owner, runs = wait_for(f"tick {hour}", lambda h=hour: c.finished(T0 + h * HOUR))
        assert (status, owner, len(runs)) == ("SUCCESS", survivor, 1)
    assert c.lease_holders() == [survivor]
    assert len(c.runs()) == 3
    c.stop()


def test_a_tick_claimed_by_a_process_killed_mid_evaluation_is_run_once_by_another(
    cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    c = cluster(ASYNCDAG_TEST_GATE=str(gate))
    c.start("a")
    c.start("b")
    c.set_time(T0 + HOUR + 1)
    wait_for("an evaluation to block", lambda: Path(f"{gate}.waiting").exists())
    status, holder, _ = wait_for("the claim", lambda: c.tick(T0 + HOUR))
    assert status == "STARTED"
    survivor = "b" if holder == "a" else "a"
    c.kill(holder)  # dies holding the claim, in the middle of the schedule function
    gate.unlink()
    c.set_time(T0 + HOUR + 61)  # past the dead process's lease
    status, owner, runs = wait_for("the tick", lambda: c.finished(T0 + HOUR))
    assert (status, owner, len(runs)) == ("SUCCESS", survivor, 1)
    assert len(c.runs()) == 1
    assert len(c.ticks()) == 1
    c.stop()


def test_scheduler_run_on_a_per_second_schedule_runs_each_second_once(
    tmp_path: Path, storage_url: str
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ASYNCDAG_HOME": str(home), "ASYNCDAG_LOG_LEVEL": "INFO"}
    env.pop("ASYNCDAG_STORAGE_URL", None)
    proc = subprocess.Popen(
        [str(CLI), "scheduler", "run", "-f", str(EVERY_SECOND), "--storage", storage_url],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    storage = reader(storage_url)
    try:

        def succeeded() -> bool:
            try:
                runs = anyio.run(functools.partial(storage.list_runs, status="SUCCESS"))
            except Exception:  # the scheduler has not created the history yet
                return False
            return len(runs) >= 3

        wait_for("three runs on real time", succeeded)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: stop the loop, let started runs finish
        _, err = proc.communicate(timeout=HANG_GUARD)
        ticks = anyio.run(storage.list_ticks, "every_second")
        runs = {r.run_id: r for r in anyio.run(storage.list_runs)}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        storage.close()
    assert proc.returncode == 130, err  # 128 + SIGINT, the shell's convention
    assert "stopping" in err
    assert not (home / "asyncdag.db").exists()  # --storage, not the default history
    started = [(t.tick_time, t.run_ids) for t in ticks if t.status.value == "SUCCESS"]
    assert len(started) >= 3
    assert all(t == int(t) for t, _ in started)  # whole seconds, each once
    assert len({t for t, _ in started}) == len(started)
    assert all(len(ids) == 1 for _, ids in started)
    assert sorted(i for _, ids in started for i in ids) == sorted(runs)  # one run per tick
    for t, (run_id,) in started:
        record = runs[run_id]
        assert record.status.value == "SUCCESS"  # started runs finished before the scheduler exited
        assert record.tags["asyncdag/schedule_name"] == "every_second"
        stamp = record.tags["asyncdag/scheduled_execution_time"]
        assert dt.datetime.fromisoformat(stamp).timestamp() == t
