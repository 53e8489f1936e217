"""PostgreSQL's automation storage beyond the shared contract: its migration, odd text, races.

The contract itself (state, ticks, run keys, leases) runs against PostgreSQL in
tests/test_storage_automation.py, through the ``storage`` fixture; two scheduler
processes on one PostgreSQL history in tests/test_automation_processes.py.  Here:
a version-1 database gains the automation tables and keeps its runs; text
PostgreSQL cannot hold as is comes back exactly; many connections racing for one
lease, one run key or one tick leave exactly one winner; and a scheduler rides
out the server going away.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest

from asyncdag import ScheduleEvaluationContext, pipeline, schedule, solid
from asyncdag._events import RunStatus
from asyncdag.automation import ManualClock, Scheduler
from asyncdag.storage import (
    InstigatorStatus,
    InstigatorType,
    PostgresStorage,
    RunRecord,
    StorageError,
    TickRecord,
    TickStatus,
)
from asyncdag.storage._postgres_codec import RUN_COLUMNS, run_row
from asyncdag.storage._postgres_schema import MIGRATIONS, SCHEMA_VERSION
from storage_backends import PostgresServer

psycopg = pytest.importorskip(
    "psycopg", reason="PostgreSQL storage needs psycopg: pip install -e '.[dev]'"
)

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed
RACERS = 8
ODD = "a\x00b\udcff"  # a NUL and a lone surrogate: PostgreSQL text holds neither
T = TypeVar("T")


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres_url) as storage:
        yield storage


def tick(tick_time: float, owner: str = "a", **kwargs: Any) -> TickRecord:
    kwargs.setdefault("instigator_type", InstigatorType.SENSOR)
    kwargs.setdefault("start_time", tick_time)
    return TickRecord(instigator_name="files", tick_time=tick_time, owner=owner, **kwargs)


def race(url: str, attempt: Callable[[PostgresStorage, int], Any]) -> list[Any]:
    """``attempt(storage, i)`` for each of RACERS threads, each on its own connections, at once."""
    stores = [PostgresStorage(url) for _ in range(RACERS)]
    for store in stores:
        store.open()
    start = threading.Barrier(RACERS)
    results: list[Any] = [None] * RACERS
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = anyio.run(attempt, stores[i], i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    for store in stores:
        store.close()
    assert errors == []
    return results


# -- the schema ----------------------------------------------------------------------------


def test_a_version_1_database_gains_the_automation_tables_and_keeps_its_runs(
    postgres_url: str,
) -> None:
    old = RunRecord(run_id="old", pipeline_name="p", status=RunStatus.SUCCESS)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE asyncdag_schema (version integer PRIMARY KEY)")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO asyncdag_schema (version) VALUES (1)")
        v1_columns = RUN_COLUMNS.removesuffix(", root_run_id")  # root_run_id came in v3
        conn.execute(
            f"INSERT INTO asyncdag_runs ({v1_columns}) VALUES ({', '.join(['%s'] * 12)})",
            run_row(old)[:12],
        )
    with PostgresStorage(postgres_url) as storage:
        assert storage.schema_version_found == 1 < SCHEMA_VERSION
        assert anyio.run(storage.get_run, "old") == old
        anyio.run(storage.claim_tick, tick(1.0))
        assert [t.tick_time for t in anyio.run(storage.list_ticks, "files")] == [1.0]


def test_a_version_2_database_gains_root_run_id_and_lists_chains(postgres_url: str) -> None:
    old = RunRecord(run_id="old", pipeline_name="p", status=RunStatus.SUCCESS, start_time=1.0)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE asyncdag_schema (version integer PRIMARY KEY)")
        for migration in MIGRATIONS[:2]:
            for statement in migration:
                conn.execute(statement)
        conn.execute("INSERT INTO asyncdag_schema (version) VALUES (1), (2)")
        v2_columns = RUN_COLUMNS.removesuffix(", root_run_id")
        conn.execute(
            f"INSERT INTO asyncdag_runs ({v2_columns}) VALUES ({', '.join(['%s'] * 12)})",
            run_row(old)[:12],
        )
    child = RunRecord(
        run_id="child", pipeline_name="p", start_time=2.0, parent_run_id="old", root_run_id="old"
    )
    with PostgresStorage(postgres_url) as storage:
        assert storage.schema_version_found == 2 < SCHEMA_VERSION == 3
        assert anyio.run(storage.get_run, "old") == old
        anyio.run(storage.create_run, child)
        stored = anyio.run(storage.get_run, "child")
        assert stored is not None and stored.root_run_id == "old"
        chain = anyio.run(lambda: storage.list_runs(root_run_id="old"))
        assert [r.run_id for r in chain] == ["child", "old"]


# -- text PostgreSQL cannot hold as is ------------------------------------------------------


@pytest.mark.anyio
async def test_cursors_and_skip_reasons_come_back_exactly(pg: PostgresStorage) -> None:
    literal = json.dumps(ODD)  # plain text that looks like an escaped value
    await pg.update_instigator_cursor(
        "files", InstigatorType.SENSOR, last_tick_time=1.0, cursor=ODD, now=1.0
    )
    state = await pg.get_instigator_state("files")
    assert state is not None and state.cursor == ODD
    await pg.update_instigator_cursor(
        "files", InstigatorType.SENSOR, last_tick_time=2.0, cursor=literal, now=2.0
    )
    assert [s.cursor for s in await pg.list_instigator_states()] == [literal]
    outcome = tick(5.0, status=TickStatus.SKIPPED, end_time=6.0, skip_reason=ODD, cursor=literal)
    await pg.claim_tick(tick(5.0))
    await pg.update_tick(outcome)
    await pg.update_tick(tick(7.0, status=TickStatus.SKIPPED, skip_reason=literal, cursor=ODD))
    stored = await pg.list_ticks("files")
    assert [(t.skip_reason, t.cursor) for t in stored] == [(literal, ODD), (ODD, literal)]
    assert stored[1] == outcome


@pytest.mark.anyio
async def test_run_keys_postgres_cannot_hold_still_start_one_run_each(pg: PostgresStorage) -> None:
    add = pg.add_instigator_run
    assert await add("files", "r1", run_key=ODD, tick_time=1.0, now=1.0) is None
    assert await add("files", "r2", run_key=ODD, tick_time=2.0, now=2.0) == "r1"
    # The text an escaped key is stored as is another key, not the same one.
    assert await add("files", "r3", run_key=json.dumps(ODD), tick_time=3.0, now=3.0) is None
    assert await add("files", "r4", run_key=json.dumps(ODD), tick_time=4.0, now=4.0) == "r3"


@pytest.mark.anyio
async def test_a_name_postgres_cannot_hold_is_refused_by_name(pg: PostgresStorage) -> None:
    with pytest.raises(StorageError, match="schedule or sensor name 'a\\\\x00b"):
        await pg.set_instigator_status(
            ODD, InstigatorType.SCHEDULE, InstigatorStatus.RUNNING, now=1.0
        )
    assert await pg.list_instigator_states() == []


# -- many connections at once ---------------------------------------------------------------


def test_racers_for_a_free_lease_leave_one_holder(postgres_url: str) -> None:
    async def acquire(storage: PostgresStorage, i: int) -> str:
        lease = await storage.acquire_lease("files", f"owner-{i}", now=100.0, ttl=30.0)
        return lease.owner

    owners = race(postgres_url, acquire)
    assert len(set(owners)) == 1  # every racer saw the same holder


def test_racers_for_an_expired_lease_leave_one_holder(postgres_url: str) -> None:
    with PostgresStorage(postgres_url) as storage:
        anyio.run(lambda: storage.acquire_lease("files", "dead", now=0.0, ttl=30.0))

    async def acquire(storage: PostgresStorage, i: int) -> str:
        lease = await storage.acquire_lease("files", f"owner-{i}", now=100.0, ttl=30.0)
        return lease.owner

    owners = race(postgres_url, acquire)
    assert len(set(owners)) == 1 and owners[0] != "dead"


def test_racers_for_one_run_key_start_one_run(postgres_url: str) -> None:
    async def add(storage: PostgresStorage, i: int) -> str | None:
        return await storage.add_instigator_run(
            "files", f"run-{i}", run_key="a.csv", tick_time=1.0, now=1.0
        )

    results = race(postgres_url, add)
    winners = [i for i, found in enumerate(results) if found is None]
    assert len(winners) == 1
    assert {found for found in results if found is not None} == {f"run-{winners[0]}"}


def test_racers_for_an_abandoned_tick_leave_it_one_owner(postgres_url: str) -> None:
    # "dead" claimed the tick, then its lease expired; every racer tries to take the
    # lease, then the tick: only the one that got the lease may take the tick over.
    with PostgresStorage(postgres_url) as storage:
        anyio.run(lambda: storage.acquire_lease("files", "dead", now=0.0, ttl=30.0))
        anyio.run(storage.claim_tick, tick(10.0, owner="dead"))

    async def take(storage: PostgresStorage, i: int) -> tuple[str, str]:
        lease = await storage.acquire_lease("files", f"owner-{i}", now=100.0, ttl=30.0)
        claimed = await storage.claim_tick(tick(10.0, owner=f"owner-{i}", start_time=100.0))
        return lease.owner, claimed.owner

    results = race(postgres_url, take)
    (holder,) = {lease for lease, _ in results}  # the lease went to one racer...
    assert (holder, holder) in results  # ...who took the tick over...
    # ...and every other racer found it still the dead owner's or already the holder's.
    assert {claimed for _, claimed in results} <= {"dead", holder}
    with PostgresStorage(postgres_url) as storage:
        (stored,) = anyio.run(storage.list_ticks, "files")
    assert (stored.owner, stored.start_time) == (holder, 10.0)


# -- the server goes away under a scheduler -------------------------------------------------

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
HOUR = 3600.0
BACKOFF = 5.0


@solid
def noop() -> None:
    pass


@pipeline
def job() -> None:
    noop()


@schedule(cron_schedule="0 * * * *", pipeline=job)
def hourly(context: ScheduleEvaluationContext) -> dict[str, Any]:
    return {}


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_scheduler_rides_out_an_outage_and_runs_the_tick_it_missed_once(
    own_postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    with psycopg.connect(own_postgres_server.url, autocommit=True) as admin:
        admin.execute("CREATE DATABASE runs")
    storage = PostgresStorage(own_postgres_server.url_for("runs"), connect_timeout=2)
    clock = ManualClock(T0)
    scheduler = Scheduler(
        [hourly], storage=storage, clock=clock, lease_ttl=30 * 86400, error_backoff=BACKOFF
    )

    async def at(t: float) -> None:
        clock.set(t)
        with anyio.fail_after(HANG_GUARD):
            await scheduler.wait_idle()

    try:
        async with scheduler.running():
            await at(T0)  # the schedule's first look: ticks count from here
            await at(T0 + HOUR)
            await anyio.to_thread.run_sync(own_postgres_server.control, "down")
            await at(T0 + 2 * HOUR)  # the pass fails: logged, tried again after the backoff
            failures = [r for r in caplog.records if "hourly failed; retrying" in r.getMessage()]
            assert failures and "unreachable" in str((failures[0].exc_info or ())[1:])
            await anyio.to_thread.run_sync(own_postgres_server.control, "up")
            await at(T0 + 2 * HOUR + BACKOFF)
        ticks = await storage.list_ticks("hourly")
        assert [(t.tick_time - T0, t.status, len(t.run_ids)) for t in ticks] == [
            (2 * HOUR, TickStatus.SUCCESS, 1),
            (HOUR, TickStatus.SUCCESS, 1),
        ]
        runs = await storage.list_runs()
        assert sorted(r.run_id for r in runs) == sorted(t.run_ids[0] for t in ticks)
        assert {r.status for r in runs} == {RunStatus.SUCCESS}
    finally:
        await storage.aclose()
