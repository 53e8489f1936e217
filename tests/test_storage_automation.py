"""The automation half of the storage contract, one suite for every backend.

Each test takes the ``storage`` fixture (tests/conftest.py), which runs it against
every backend in ``storage_backends.BACKENDS``: in-memory, SQLite and PostgreSQL
pass everything here unchanged.  Times are plain floats the tests choose: storage
never reads a clock of its own.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from asyncdag._events import ErrorInfo, RunStatus
from asyncdag.storage import (
    InstigatorStatus,
    InstigatorType,
    RunRecord,
    RunStorage,
    SqliteStorage,
    TickRecord,
    TickStatus,
    open_storage,
)
from asyncdag.storage._sqlite import _MIGRATIONS, SCHEMA_VERSION

SRC = str(Path(__file__).resolve().parents[1] / "src")
HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed
SCHEDULE = InstigatorType.SCHEDULE
SENSOR = InstigatorType.SENSOR

pytestmark = pytest.mark.anyio


def tick(tick_time: float, owner: str = "a", name: str = "nightly", **kwargs: object) -> TickRecord:
    kwargs.setdefault("instigator_type", SCHEDULE)
    kwargs.setdefault("start_time", tick_time)
    return TickRecord(instigator_name=name, tick_time=tick_time, owner=owner, **kwargs)  # type: ignore[arg-type]


# -- on/off state and cursors ------------------------------------------------------------


async def test_an_unknown_instigator_has_no_state(storage: RunStorage) -> None:
    assert await storage.get_instigator_state("nightly") is None
    assert await storage.list_instigator_states() == []


async def test_starting_and_stopping_is_stored_with_the_cursor_it_moves(
    storage: RunStorage,
) -> None:
    started = await storage.set_instigator_status(
        "nightly", SCHEDULE, InstigatorStatus.RUNNING, now=100.0, last_tick_time=100.0
    )
    assert started.status is InstigatorStatus.RUNNING
    assert started.last_tick_time == 100.0
    stopped = await storage.set_instigator_status(
        "nightly", SCHEDULE, InstigatorStatus.STOPPED, now=200.0
    )
    assert stopped.status is InstigatorStatus.STOPPED
    assert stopped.last_tick_time == 100.0  # stopping leaves the cursor where it was
    assert stopped.updated_at == 200.0
    assert await storage.get_instigator_state("nightly") == stopped


async def test_the_cursor_never_moves_backwards_and_keeps_the_status(storage: RunStorage) -> None:
    await storage.set_instigator_status("files", SENSOR, InstigatorStatus.RUNNING, now=1.0)
    await storage.update_instigator_cursor(
        "files", SENSOR, last_tick_time=50.0, cursor="a.csv", now=50.0
    )
    await storage.update_instigator_cursor(
        "files", SENSOR, last_tick_time=40.0, cursor="b.csv", now=51.0
    )
    state = await storage.get_instigator_state("files")
    assert state is not None
    assert state.last_tick_time == 50.0
    assert state.cursor == "b.csv"
    assert state.status is InstigatorStatus.RUNNING
    assert state.instigator_type is SENSOR


async def test_a_cursor_update_creates_a_state_without_a_status(storage: RunStorage) -> None:
    await storage.update_instigator_cursor("nightly", SCHEDULE, last_tick_time=7.0, now=7.0)
    await storage.update_instigator_cursor("b", SENSOR, last_tick_time=1.0, now=7.0)
    states = await storage.list_instigator_states()
    assert [(s.name, s.status, s.last_tick_time) for s in states] == [
        ("b", None, 1.0),
        ("nightly", None, 7.0),
    ]


# -- ticks ---------------------------------------------------------------------------------


async def test_a_new_tick_is_claimed_by_its_claimant(storage: RunStorage) -> None:
    claimed = await storage.claim_tick(tick(3600.0, owner="a"))
    assert claimed.owner == "a"
    assert claimed.status is TickStatus.STARTED
    assert await storage.list_ticks("nightly") == [claimed]


async def test_a_tick_claimed_by_a_lease_holder_is_not_claimed_again(storage: RunStorage) -> None:
    await storage.acquire_lease("nightly", "a", now=0.0, ttl=30.0)
    await storage.claim_tick(tick(10.0, owner="a"))
    other = await storage.claim_tick(tick(10.0, owner="b", start_time=20.0))
    assert other.owner == "a"


async def test_a_claimed_tick_is_never_taken_by_a_claimant_without_the_lease(
    storage: RunStorage,
) -> None:
    await storage.claim_tick(tick(10.0, owner="a"))
    assert (await storage.claim_tick(tick(10.0, owner="b", start_time=99.0))).owner == "a"


async def test_a_tick_whose_owner_lost_its_lease_passes_to_the_new_holder(
    storage: RunStorage,
) -> None:
    await storage.acquire_lease("nightly", "a", now=0.0, ttl=30.0)
    first = await storage.claim_tick(tick(10.0, owner="a", start_time=10.0))
    await storage.acquire_lease("nightly", "b", now=30.0, ttl=30.0)  # a's lease expired: a died
    taken = await storage.claim_tick(tick(10.0, owner="b", start_time=30.0))
    assert taken.owner == "b"
    assert taken.status is TickStatus.STARTED
    assert taken.start_time == first.start_time
    assert len(await storage.list_ticks("nightly")) == 1


async def test_a_finished_tick_is_returned_as_is(storage: RunStorage) -> None:
    claimed = await storage.claim_tick(tick(10.0, owner="a"))
    done = TickRecord(
        instigator_name="nightly",
        instigator_type=SCHEDULE,
        tick_time=10.0,
        status=TickStatus.SKIPPED,
        owner="a",
        start_time=claimed.start_time,
        end_time=11.0,
        skip_reason="nothing to do",
    )
    await storage.update_tick(done)
    again = await storage.claim_tick(tick(10.0, owner="b", start_time=99.0))
    assert again == done
    assert again.is_finished


async def test_a_tick_round_trips_its_outcome(storage: RunStorage) -> None:
    error = ErrorInfo.from_exception(ValueError("bad \udc80 surrogate and ünïcode"))
    await storage.claim_tick(tick(5.0, name="files", instigator_type=SENSOR))
    outcome = TickRecord(
        instigator_name="files",
        instigator_type=SENSOR,
        tick_time=5.0,
        status=TickStatus.FAILURE,
        owner="a",
        start_time=5.0,
        end_time=6.5,
        run_ids=("r1", "r2"),
        run_keys=("k1", "k2"),
        error=error,
        cursor="c-9",
    )
    await storage.update_tick(outcome)
    (stored,) = await storage.list_ticks("files")
    assert stored.to_dict() == outcome.to_dict()


async def test_ticks_list_newest_first_with_paging_and_filters(storage: RunStorage) -> None:
    for t in (1.0, 3.0, 2.0, 4.0):
        await storage.claim_tick(tick(t))
    await storage.update_tick(tick(2.0, status=TickStatus.SKIPPED))
    await storage.claim_tick(tick(1.0, name="other"))
    assert [t.tick_time for t in await storage.list_ticks("nightly")] == [4.0, 3.0, 2.0, 1.0]
    assert [t.tick_time for t in await storage.list_ticks("nightly", limit=2)] == [4.0, 3.0]
    assert [t.tick_time for t in await storage.list_ticks("nightly", before=3.0)] == [2.0, 1.0]
    skipped = await storage.list_ticks("nightly", statuses=[TickStatus.SKIPPED])
    assert [t.tick_time for t in skipped] == [2.0]
    assert await storage.list_ticks("nightly", statuses=[]) == []
    assert await storage.list_ticks("nobody") == []


# -- run keys and the runs instigators started ---------------------------------------------


async def test_a_run_key_starts_one_run(storage: RunStorage) -> None:
    assert (
        await storage.add_instigator_run("files", "r1", run_key="a.csv", tick_time=1.0, now=1.0)
        is None
    )
    assert (
        await storage.add_instigator_run("files", "r2", run_key="a.csv", tick_time=2.0, now=2.0)
        == "r1"
    )
    # Keys belong to one sensor: another may use the same key.
    assert (
        await storage.add_instigator_run("other", "r3", run_key="a.csv", tick_time=2.0, now=2.0)
        is None
    )


async def test_runs_without_keys_and_repeated_registrations_are_harmless(
    storage: RunStorage,
) -> None:
    for run_id in ("r1", "r2", "r1"):
        assert (
            await storage.add_instigator_run(
                "nightly", run_id, run_key=None, tick_time=1.0, now=1.0
            )
            is None
        )


async def test_removing_a_failed_launch_frees_its_run_key(storage: RunStorage) -> None:
    await storage.add_instigator_run("files", "r1", run_key="a.csv", tick_time=1.0, now=1.0)
    await storage.remove_instigator_run("files", "r1")
    assert (
        await storage.add_instigator_run("files", "r2", run_key="a.csv", tick_time=2.0, now=2.0)
        is None
    )


async def test_active_runs_are_the_stored_unfinished_runs_an_instigator_started(
    storage: RunStorage,
) -> None:
    for run_id, status in [
        ("running", RunStatus.STARTED),
        ("queued", RunStatus.NOT_STARTED),
        ("done", RunStatus.SUCCESS),
        ("failed", RunStatus.FAILURE),
    ]:
        await storage.create_run(RunRecord(run_id=run_id, pipeline_name="p", status=status))
        await storage.add_instigator_run("nightly", run_id, run_key=None, tick_time=1.0, now=1.0)
    await storage.add_instigator_run(
        "nightly", "not-created-yet", run_key=None, tick_time=1.0, now=1.0
    )
    await storage.create_run(
        RunRecord(run_id="foreign", pipeline_name="p", status=RunStatus.STARTED)
    )
    assert sorted(await storage.active_instigator_runs("nightly")) == ["queued", "running"]
    assert await storage.active_instigator_runs("other") == []


# -- leases --------------------------------------------------------------------------------


async def test_a_free_lease_is_taken_and_an_expired_one_passes_on(storage: RunStorage) -> None:
    lease = await storage.acquire_lease("nightly", "a", now=0.0, ttl=30.0)
    assert lease.held_by("a", 0.0)
    assert lease.expires_at == 30.0
    blocked = await storage.acquire_lease("nightly", "b", now=29.0, ttl=30.0)
    assert blocked.owner == "a"
    assert not blocked.held_by("b", 29.0)
    taken = await storage.acquire_lease("nightly", "b", now=30.0, ttl=30.0)
    assert taken.held_by("b", 30.0)
    assert taken.expires_at == 60.0


async def test_a_holder_renews_its_lease(storage: RunStorage) -> None:
    await storage.acquire_lease("nightly", "a", now=0.0, ttl=30.0)
    renewed = await storage.acquire_lease("nightly", "a", now=20.0, ttl=30.0)
    assert renewed.expires_at == 50.0
    assert (await storage.acquire_lease("nightly", "b", now=40.0, ttl=30.0)).owner == "a"


async def test_a_released_lease_is_free_at_once_and_only_its_holder_releases_it(
    storage: RunStorage,
) -> None:
    await storage.acquire_lease("nightly", "a", now=0.0, ttl=30.0)
    await storage.release_lease("nightly", "b")
    assert (await storage.acquire_lease("nightly", "b", now=1.0, ttl=30.0)).owner == "a"
    await storage.release_lease("nightly", "a")
    assert (await storage.acquire_lease("nightly", "b", now=1.0, ttl=30.0)).owner == "b"


async def test_leases_are_per_instigator(storage: RunStorage) -> None:
    await storage.acquire_lease("nightly", "a", now=0.0, ttl=30.0)
    assert (await storage.acquire_lease("files", "b", now=0.0, ttl=30.0)).owner == "b"


async def test_a_lease_needs_a_positive_ttl(storage: RunStorage) -> None:
    with pytest.raises(ValueError, match="ttl > 0"):
        await storage.acquire_lease("nightly", "a", now=0.0, ttl=0)


# -- SQLite specifics ----------------------------------------------------------------------


async def test_sqlite_keeps_automation_state_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path) as storage:
        await storage.set_instigator_status("nightly", SCHEDULE, InstigatorStatus.STOPPED, now=1.0)
        await storage.claim_tick(tick(2.0))
        await storage.add_instigator_run("nightly", "r1", run_key="k", tick_time=2.0, now=2.0)
    async with SqliteStorage(path) as storage:
        state = await storage.get_instigator_state("nightly")
        assert state is not None and state.status is InstigatorStatus.STOPPED
        assert [t.tick_time for t in await storage.list_ticks("nightly")] == [2.0]
        assert (
            await storage.add_instigator_run("nightly", "r2", run_key="k", tick_time=3.0, now=3.0)
            == "r1"
        )


def test_sqlite_migrates_a_version_1_history_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    conn = sqlite3.connect(path)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO runs (run_id, pipeline_name, status, run_config, tags) "
        "VALUES ('old', 'p', 'SUCCESS', '{}', '{}')"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()

    async def check() -> None:
        async with SqliteStorage(path) as storage:
            assert (await storage.get_run("old")) is not None
            await storage.claim_tick(tick(1.0))
            assert len(await storage.list_ticks("nightly")) == 1

    anyio.run(check)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    finally:
        conn.close()


CLAIMER = textwrap.dedent(
    """
    import os, sys
    import anyio
    from asyncdag.storage import TickRecord, open_storage

    url, owner, ticks, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    async def main():
        won = []
        async with open_storage(url) as storage:
            print("ready", flush=True)
            while not os.path.exists(go):
                await anyio.sleep(0.001)
            for t in range(ticks):
                mine = TickRecord(instigator_name="race", instigator_type="SCHEDULE",
                                  tick_time=float(t), owner=owner, start_time=float(t))
                # No lease: the race is on the claim itself.
                stored = await storage.claim_tick(mine)
                if stored.owner == owner:
                    won.append(t)
        print(" ".join(map(str, won)), flush=True)

    anyio.run(main)
    """
)


@pytest.mark.slow
def test_two_processes_racing_for_the_same_ticks_each_claim_it_once(
    tmp_path: Path, storage_url: str
) -> None:
    go, ticks = tmp_path / "go", 300
    with open_storage(storage_url):
        pass  # migrated before the race
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, storage_url, owner, str(ticks), str(go)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for owner in ("a", "b")
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    go.touch()
    won = []
    for proc in procs:
        out, _ = proc.communicate(timeout=HANG_GUARD)
        assert proc.returncode == 0
        won.append([int(t) for t in out.split()])
    # Every tick was won exactly once, by one process or the other.
    assert sorted(won[0] + won[1]) == list(range(ticks))
