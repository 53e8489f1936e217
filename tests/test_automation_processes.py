"""Schedulers in real processes sharing one SQLite history: each tick once, none lost, even on SIGKILL.

The multi-process tests move time through a file every scheduler process
reads as its clock (``automation_proc.py``), so no test waits for a wall-clock
tick.  The last test is the one on real time: ``asyncdag scheduler run`` on a
per-second schedule, stopped with Ctrl-C, asserting counts, never durations.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

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


class Cluster:
    """Scheduler processes on one history and one file clock."""

    def __init__(self, root: Path, **env: str) -> None:
        self.db = root / "asyncdag.db"
        self.clock = root / "clock"
        self.env = {**os.environ, "PYTHONPATH": SRC, "ASYNCDAG_LOG_LEVEL": "WARNING", **env}
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.set_time(T0)

    def set_time(self, t: float) -> None:
        tmp = self.clock.with_suffix(".tmp")
        tmp.write_text(repr(t))
        os.replace(tmp, self.clock)  # every reader sees the old time or the new, never half

    def start(self, owner: str) -> None:
        argv = [sys.executable, str(TESTS / "automation_proc.py")]
        argv += [str(self.db), str(self.clock), owner, str(CLOCKED)]
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

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.db.exists():
            return []
        conn = sqlite3.connect(self.db, timeout=HANG_GUARD)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:  # tables not created yet
            return []
        finally:
            conn.close()

    def tick(self, t: float) -> tuple[str, str, list[str]] | None:
        rows = self.query(
            "SELECT status, owner, run_ids FROM automation_ticks WHERE tick_time = ?", t
        )
        return None if not rows else (rows[0][0], rows[0][1], json.loads(rows[0][2]))

    def finished(self, t: float) -> tuple[str, str, list[str]] | None:
        """The tick at ``t`` once it and its runs are finished."""
        tick = self.tick(t)
        if tick is None or tick[0] == "STARTED":
            return None
        statuses = [self.run_status(run_id) for run_id in tick[2]]
        return tick if all(s == "SUCCESS" for s in statuses) else None

    def run_status(self, run_id: str) -> str | None:
        rows = self.query("SELECT status FROM runs WHERE run_id = ?", run_id)
        return rows[0][0] if rows else None


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made: list[Cluster] = []

    def make(**env: str) -> Cluster:
        made.append(Cluster(tmp_path, **env))
        return made[-1]

    yield make  # type: ignore[misc]
    for c in made:
        for proc in c.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_two_scheduler_processes_on_one_history_run_each_tick_once(cluster: Any) -> None:
    c: Cluster = cluster()
    c.start("a")
    c.start("b")
    hours = range(1, 6)
    for hour in hours:
        # Each jump outlives the holder's lease: both processes race for it, then for the tick.
        c.set_time(T0 + hour * HOUR + 1)
        wait_for(f"tick {hour}", lambda h=hour: c.finished(T0 + h * HOUR))
    c.stop()
    assert all(proc.returncode == 0 for proc in c.procs.values())
    ticks = c.query("SELECT tick_time, status, run_ids FROM automation_ticks ORDER BY tick_time")
    assert [(t - T0, s) for t, s, _ in ticks] == [(h * HOUR, "SUCCESS") for h in hours]
    assert all(len(json.loads(r)) == 1 for _, _, r in ticks)
    runs = c.query("SELECT run_id, tags FROM runs")
    assert len(runs) == len(hours)
    stamps = sorted(json.loads(tags)["asyncdag/scheduled_execution_time"] for _, tags in runs)
    assert stamps == [f"2024-01-01T0{h}:00:00+00:00" for h in hours]


def test_a_killed_schedulers_lease_passes_to_the_survivor(cluster: Any) -> None:
    c: Cluster = cluster()
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
    assert c.query("SELECT owner FROM automation_leases") == [(survivor,)]
    assert len(c.query("SELECT run_id FROM runs")) == 3
    c.stop()


def test_a_tick_claimed_by_a_process_killed_mid_evaluation_is_run_once_by_another(
    cluster: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    c: Cluster = cluster(ASYNCDAG_TEST_GATE=str(gate))
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
    assert len(c.query("SELECT run_id FROM runs")) == 1
    assert len(c.query("SELECT tick_time FROM automation_ticks")) == 1
    c.stop()


def test_scheduler_run_on_a_per_second_schedule_runs_each_second_once(tmp_path: Path) -> None:
    env = {**os.environ, "ASYNCDAG_HOME": str(tmp_path / "home"), "ASYNCDAG_LOG_LEVEL": "INFO"}
    db = tmp_path / "home" / "asyncdag.db"
    proc = subprocess.Popen(
        [str(CLI), "scheduler", "run", "-f", str(EVERY_SECOND)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def succeeded() -> int:
            if not db.exists():
                return 0
            conn = sqlite3.connect(db, timeout=HANG_GUARD)
            try:
                rows = conn.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
                return int(rows.fetchone()[0]) >= 3
            except sqlite3.OperationalError:
                return 0
            finally:
                conn.close()

        wait_for("three runs on real time", succeeded)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: stop the loop, let started runs finish
        _, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err  # 128 + SIGINT, the shell's convention
    assert "stopping" in err
    conn = sqlite3.connect(db)
    try:
        ticks = conn.execute(
            "SELECT tick_time, status, run_ids FROM automation_ticks ORDER BY tick_time"
        ).fetchall()
        runs = {
            run_id: (status, json.loads(tags))
            for run_id, status, tags in conn.execute("SELECT run_id, status, tags FROM runs")
        }
    finally:
        conn.close()
    started = [(t, json.loads(ids)) for t, status, ids in ticks if status == "SUCCESS"]
    assert len(started) >= 3
    assert all(t == int(t) for t, _ in started)  # whole seconds, each once
    assert len({t for t, _ in started}) == len(started)
    assert all(len(ids) == 1 for _, ids in started)
    assert sorted(i for _, ids in started for i in ids) == sorted(runs)  # one run per tick
    for t, (run_id,) in started:
        status, tags = runs[run_id]
        assert status == "SUCCESS"  # started runs finished before the scheduler exited
        assert tags["asyncdag/schedule_name"] == "every_second"
        assert dt.datetime.fromisoformat(tags["asyncdag/scheduled_execution_time"]).timestamp() == t
