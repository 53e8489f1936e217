"""PostgreSQL run storage beyond the shared contract: schema, many hosts, outages, LISTEN/NOTIFY.

The contract itself (runs, events, queries, the recorder, orphans, tailing) is
tests/test_storage.py, run against PostgreSQL by the ``storage`` fixture.  Here:
what only a server shared by hosts has.  A server of a test's own
(``own_postgres_server``) is stopped and started mid-run; the others share the
session's server, each in a database of its own.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from asyncdag import EventType, RunStatus, execute_pipeline_async, pipeline, solid
from asyncdag._events import Event
from asyncdag.storage import PostgresStorage, RunRecord, StorageError
from asyncdag.storage._postgres_codec import event_rows
from asyncdag.storage._postgres_schema import SCHEMA_VERSION
from storage_backends import SRC, PostgresServer, start_writer

psycopg = pytest.importorskip(
    "psycopg", reason="PostgreSQL storage needs psycopg: pip install -e '.[dev]'"
)

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed


def event(run_id: str, seq: int, type: EventType = EventType.LOG, **kwargs: Any) -> Event:
    return Event(run_id=run_id, seq=seq, timestamp=1000.0 + seq, type=type, **kwargs)


def record(run_id: str = "r1", **kwargs: Any) -> RunRecord:
    kwargs.setdefault("pipeline_name", "hello")
    return RunRecord(run_id=run_id, **kwargs)


@pytest.fixture
def pg(postgres_url: str) -> Iterator[PostgresStorage]:
    with PostgresStorage(postgres_url) as storage:
        yield storage


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description else []


# -- the schema ----------------------------------------------------------------------------


def test_opening_a_new_database_migrates_it_to_the_current_schema(postgres_url: str) -> None:
    with PostgresStorage(postgres_url) as first:
        assert first.schema_version_found == 0
    versions = sql(postgres_url, "SELECT version FROM asyncdag_schema ORDER BY version")
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    with PostgresStorage(postgres_url) as second:
        assert second.schema_version_found == SCHEMA_VERSION


def test_a_database_with_a_newer_schema_is_refused(postgres_url: str) -> None:
    PostgresStorage(postgres_url).open()
    sql(postgres_url, "INSERT INTO asyncdag_schema (version) VALUES (%s)", SCHEMA_VERSION + 1)
    with pytest.raises(StorageError, match="newer than this asyncdag understands"):
        PostgresStorage(postgres_url).open()


def test_hosts_opening_a_new_database_at_once_migrate_it_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait()
        try:
            storage = PostgresStorage(postgres_url)
            storage.open()
            storage.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD)
    assert errors == []
    assert sql(postgres_url, "SELECT count(*) FROM asyncdag_schema") == [(SCHEMA_VERSION,)]


def test_opening_fails_the_runs_of_this_host_whose_process_died(postgres_url: str) -> None:
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(finished.stdout)
    with PostgresStorage(postgres_url) as first:
        orphan = record("orphan", status=RunStatus.STARTED, pid=dead, hostname=socket.gethostname())
        anyio.run(first.create_run, orphan)
    with PostgresStorage(postgres_url) as second:
        assert second.recovered_on_open == ["orphan"]
        run = anyio.run(second.get_run, "orphan")
        assert run is not None and run.status is RunStatus.FAILURE
        (last,) = anyio.run(second.get_events, "orphan")
        assert last.type is EventType.RUN_FAILURE
    with PostgresStorage(postgres_url, recover_orphans=False) as third:
        assert third.recovered_on_open == []


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the probe is closed
    storage = PostgresStorage(f"postgresql://asyncdag:s3cret@127.0.0.1:{port}/runs")
    with pytest.raises(StorageError, match=r"cannot open run storage") as caught:
        storage.open()
    assert "asyncdag:***@127.0.0.1" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(storage)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
    )


def test_importing_asyncdag_and_its_storage_does_not_import_psycopg() -> None:
    done = _python(
        """
        import sys
        import asyncdag, asyncdag.storage
        asyncdag.storage.open_storage("postgresql://nobody@127.0.0.1/none")
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("psycopg", "psycopg_pool")))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_psycopg_opening_says_which_extra_to_install() -> None:
    done = _python(
        """
        import sys
        sys.modules["psycopg"] = None  # as if it were not installed
        from asyncdag.storage import PostgresStorage, StorageError
        try:
            PostgresStorage("postgresql://nobody@127.0.0.1/none").open()
        except StorageError as exc:
            print(exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'asyncdag[postgres]'" in done.stdout


# -- text PostgreSQL cannot hold as is ------------------------------------------------------


@pytest.mark.anyio
async def test_nul_characters_and_lone_surrogates_come_back_exactly(pg: PostgresStorage) -> None:
    odd = "a\x00b\udcff"
    await pg.create_run(record(status=RunStatus.STARTED))
    await pg.add_events(
        "r1",
        [
            event("r1", 0, message=odd, step_key=odd, data={odd: [odd]}),
            event("r1", 1, message="plain", step_key="a\x00b"),
            event("r1", 2, message="plain", step_key=odd),
        ],
    )
    await pg.finish_run("r1", RunStatus.FAILURE, end_time=2.0, failure_reason=odd)
    first, *_ = await pg.get_events("r1")
    assert (first.message, first.step_key, first.data) == (odd, odd, {odd: [odd]})
    assert [e.seq for e in await pg.get_events("r1", step_key=odd)] == [0, 2]
    assert [e.seq for e in await pg.get_events("r1", step_key="a\x00b")] == [1]
    finished = await pg.get_run("r1")
    assert finished is not None and finished.failure_reason == odd


@pytest.mark.anyio
async def test_an_identifier_postgres_cannot_hold_is_refused_by_name(pg: PostgresStorage) -> None:
    with pytest.raises(StorageError, match="pipeline name 'a\\\\x00b' holds a NUL"):
        await pg.create_run(record(pipeline_name="a\x00b"))
    assert await pg.list_runs() == []


# -- many hosts ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_reader_is_woken_by_a_write_from_another_host(postgres_url: str) -> None:
    async with PostgresStorage(postgres_url) as reader, PostgresStorage(postgres_url) as writer:
        await writer.create_run(record(status=RunStatus.STARTED))
        woken = anyio.Event()

        async def wait() -> None:
            # No timeout to speak of: only the writer's NOTIFY can end this wait.
            await reader.wait_for_events("r1", after_seq=-1, timeout=3600)
            woken.set()

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.05)  # let the reader start waiting (not needed to pass)
                assert not woken.is_set()
                await writer.add_events("r1", [event("r1", 0)])
        assert [e.seq for e in await reader.get_events("r1")] == [0]


@pytest.mark.slow
def test_four_processes_write_fifty_runs_each_to_one_history_at_once(
    postgres_url: str, tmp_path: Path
) -> None:
    processes, runs, events = 4, 50, 20
    go = tmp_path / "go"
    prefixes = [f"p{i}" for i in range(processes)]
    writers = [
        start_writer(
            postgres_url,
            prefix,
            runs=runs,
            events=events,
            backend=("asyncio", "trio")[i % 2],
            go=str(go),
        )
        for i, prefix in enumerate(prefixes)
    ]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    go.touch()  # all four are connected and waiting: release them together
    for writer in writers:
        assert writer.wait(timeout=HANG_GUARD * 3) == 0

    async def check() -> None:
        async with PostgresStorage(postgres_url) as storage:
            stored = await storage.list_runs()
            assert sorted(r.run_id for r in stored) == sorted(
                f"{p}-{i}" for p in prefixes for i in range(runs)
            )
            for run in stored:
                assert run.status is RunStatus.SUCCESS
                logged = await storage.get_events(run.run_id)
                assert [e.seq for e in logged] == list(range(events + 1))
                assert [e.message for e in logged[:-1]] == [
                    f"{run.pipeline_name} {seq}" for seq in range(events)
                ]
                assert await storage.count_events(run.run_id) == events + 1

    anyio.run(check)
    rows = sql(postgres_url, "SELECT count(*), count(DISTINCT (run_id, seq)) FROM asyncdag_events")
    assert rows == [(processes * runs * (events + 1),) * 2]


# -- writes that may have committed, written again ------------------------------------------


def test_replaying_a_stored_batch_stores_nothing_twice(pg: PostgresStorage) -> None:
    anyio.run(pg.create_run, record())
    anyio.run(pg.add_events, "r1", [event("r1", s) for s in range(3)])
    pool, _ = pg._opened()
    same = event_rows([event("r1", s) for s in range(3)])
    pg._insert_events(pool, "r1", same, True)  # a replay of what is stored: nothing happens
    assert anyio.run(pg.count_events, "r1") == 3
    other = event_rows([event("r1", s, message="else") for s in range(3)])
    with pytest.raises(StorageError, match="written twice"):
        pg._insert_events(pool, "r1", other, True)
    assert {e.message for e in anyio.run(pg.get_events, "r1")} == {""}


@pytest.mark.anyio
async def test_a_batch_whose_acknowledgement_was_lost_is_stored_once(
    pg: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = PostgresStorage._insert_events
    calls: list[bool] = []

    def commit_then_lose_the_answer(self: PostgresStorage, *args: Any) -> None:
        real(self, *args)
        calls.append(args[-1])
        if len(calls) == 1:
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(PostgresStorage, "_insert_events", commit_then_lose_the_answer)
    await pg.create_run(record(status=RunStatus.STARTED))
    await pg.add_events("r1", [event("r1", s) for s in range(5)])  # buffered, not raised
    await pg.finish_run("r1", RunStatus.SUCCESS, end_time=2.0)
    outbox = pg._opened()[1]
    assert await anyio.to_thread.run_sync(outbox.wait_drained, HANG_GUARD)
    assert calls == [False, True]  # written once, then replayed knowing it may be there
    assert outbox.dropped == []
    assert [e.seq for e in await pg.get_events("r1")] == list(range(5))
    finished = await pg.get_run("r1")
    assert finished is not None and finished.status is RunStatus.SUCCESS


# -- the server goes away -------------------------------------------------------------------


def own_database(server: PostgresServer) -> str:
    sql(server.url, "CREATE DATABASE runs")
    return server.url_for("runs")


def started_run_then_down(server: PostgresServer, **options: Any) -> PostgresStorage:
    """A store on ``server`` with run "r1" STARTED in it, then the server stopped."""
    storage = PostgresStorage(own_database(server), connect_timeout=2, **options)
    anyio.run(storage.create_run, record(status=RunStatus.STARTED))
    server.control("down")
    return storage


def stored_after_close(storage: PostgresStorage) -> tuple[list[int], RunStatus | None]:
    """Close ``storage`` (draining its buffer), then read run "r1" back from a new store."""
    storage.close()
    with PostgresStorage(storage._url) as reopened:
        run = anyio.run(reopened.get_run, "r1")
        return [e.seq for e in anyio.run(reopened.get_events, "r1")], run and run.status


def test_writes_wait_while_the_server_is_down_and_arrive_in_order_once_it_is_back(
    own_postgres_server: PostgresServer,
) -> None:
    storage = started_run_then_down(own_postgres_server)
    for seq in range(0, 30, 3):
        anyio.run(storage.add_events, "r1", [event("r1", s) for s in range(seq, seq + 3)])
    anyio.run(functools.partial(storage.finish_run, "r1", RunStatus.SUCCESS, end_time=9.0))
    assert storage.buffered_events == 30
    with pytest.raises(StorageError, match="unreachable"):
        anyio.run(storage.get_run, "r1")  # reads need the server
    own_postgres_server.control("up")
    assert stored_after_close(storage) == (list(range(30)), RunStatus.SUCCESS)


def test_a_full_buffer_refuses_events_but_keeps_the_final_status(
    own_postgres_server: PostgresServer,
) -> None:
    storage = started_run_then_down(own_postgres_server, max_buffered_events=5)
    anyio.run(storage.add_events, "r1", [event("r1", s) for s in range(3)])
    with pytest.raises(StorageError, match=r"max_buffered_events=5\); events 3\.\.5 of run 'r1'"):
        anyio.run(storage.add_events, "r1", [event("r1", s) for s in range(3, 6)])
    anyio.run(functools.partial(storage.finish_run, "r1", RunStatus.FAILURE, end_time=9.0))
    own_postgres_server.control("up")
    assert stored_after_close(storage) == ([0, 1, 2], RunStatus.FAILURE)


def test_closing_while_the_server_stays_down_says_what_is_lost(
    own_postgres_server: PostgresServer,
) -> None:
    storage = started_run_then_down(own_postgres_server, close_timeout=0.2)
    anyio.run(storage.add_events, "r1", [event("r1", s) for s in range(4)])
    with pytest.raises(
        StorageError, match=r"1 buffered writes \(4 events\) are lost: events 0\.\.3"
    ):
        storage.close()


@pytest.mark.anyio
@pytest.mark.slow
@pytest.mark.parametrize("outage", ["down-up", "restart"])
async def test_a_run_survives_a_server_restart_and_all_its_events_arrive(
    own_postgres_server: PostgresServer, outage: str
) -> None:
    url = own_database(own_postgres_server)
    reached = anyio.Event()
    resume = anyio.Event()

    @solid
    async def before(context: Any) -> int:
        for i in range(50):
            context.log.info(f"before {i}")
        reached.set()
        await resume.wait()
        return 1

    @solid
    async def after(context: Any, n: int) -> int:
        for i in range(50):
            context.log.info(f"after {i}")
            await anyio.sleep(0)
        return n + 1

    @pipeline
    def restarted() -> None:
        after(before())

    storage = PostgresStorage(url, connect_timeout=2)
    with anyio.fail_after(HANG_GUARD * 2):
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def run() -> None:
                results.append(await execute_pipeline_async(restarted, storage=storage))

            tg.start_soon(run)
            await reached.wait()
            if outage == "restart":
                await anyio.to_thread.run_sync(own_postgres_server.control, "restart")
                resume.set()
            else:
                await anyio.to_thread.run_sync(own_postgres_server.control, "down")
                resume.set()
                while not results:  # the run goes on to its end with the server down...
                    await anyio.sleep(0.01)
                assert storage.buffered_events > 0  # ...its last events waiting in the buffer
                await anyio.to_thread.run_sync(own_postgres_server.control, "up")
        await storage.aclose()
    (result,) = results
    assert result.success
    async with PostgresStorage(url) as reopened:
        stored = await reopened.get_events(result.run_id)
        assert stored == list(result.events)
        assert [e.seq for e in stored] == list(range(len(result.events)))
        messages = [e.message for e in stored if e.type is EventType.LOG]
        assert messages == [f"before {i}" for i in range(50)] + [f"after {i}" for i in range(50)]
        run = await reopened.get_run(result.run_id)
        assert run is not None and run.status is RunStatus.SUCCESS


@pytest.mark.anyio
async def test_wait_for_events_returns_at_once_when_news_is_already_there(
    pg: PostgresStorage,
) -> None:
    await pg.create_run(record(status=RunStatus.STARTED))
    await pg.add_events("r1", [event("r1", 0)])
    with anyio.fail_after(HANG_GUARD):  # a wait for the 3600 s timeout would fail here
        await pg.wait_for_events("r1", after_seq=-1, timeout=3600)


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_reader_keeps_following_a_run_across_a_server_restart(
    own_postgres_server: PostgresServer,
) -> None:
    url = own_database(own_postgres_server)
    seen: list[int] = []
    async with PostgresStorage(url) as reader, PostgresStorage(url) as writer:
        await writer.create_run(record(status=RunStatus.STARTED))

        async def follow() -> None:
            while len(seen) < 3:
                # A long timeout: a NOTIFY or the listener's reconnection must end each wait.
                await reader.wait_for_events("r1", after_seq=seen[-1] if seen else -1, timeout=3600)
                after = seen[-1] if seen else -1
                seen.extend(e.seq for e in await reader.get_events("r1", after_seq=after))

        with anyio.fail_after(HANG_GUARD):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                await writer.add_events("r1", [event("r1", 0)])
                while seen != [0]:
                    await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(own_postgres_server.control, "restart")
                for seq in (1, 2):
                    await writer.add_events("r1", [event("r1", seq)])
        assert writer.buffered_events == 0
    assert seen == [0, 1, 2]
