"""Run storage on a bad day: a database locked past its busy timeout, a damaged file, a run
killed mid-way.  Nothing is lost, no false status is recorded, every error is one line."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import open_run, pipeline, solid
from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage import (
    InMemoryStorage,
    RunRecord,
    RunStorage,
    SqliteStorage,
    StorageError,
    StorageUnavailableError,
)
from storage_backends import dead_pid

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed
LINES = 700  # more than a recorder batch (500), before and after the lock


async def until(condition: Callable[[], Any]) -> None:
    with anyio.fail_after(HANG_GUARD):
        while not condition():
            await anyio.sleep(0.005)


# -- a lock held past the busy timeout while a run writes --------------------------------


class CountingSqlite(SqliteStorage):
    """Counts the writes that failed because the file was locked."""

    failures = 0

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        try:
            await super().add_events(run_id, events)
        except StorageUnavailableError:
            self.failures += 1
            raise

    async def finish_run(self, run_id: str, status: RunStatus, **kwargs: Any) -> None:
        try:
            await super().finish_run(run_id, status, **kwargs)
        except StorageUnavailableError:
            self.failures += 1
            raise


class LockableMemory(InMemoryStorage):
    """An in-memory store that another 'process' can lock, failing writes as SQLite does."""

    failures = 0
    locked = False

    def _check(self) -> None:
        if self.locked:
            self.failures += 1
            raise StorageUnavailableError("locked by another process (test)")

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        self._check()
        await super().add_events(run_id, events)

    async def finish_run(self, run_id: str, status: RunStatus, **kwargs: Any) -> None:
        self._check()
        await super().finish_run(run_id, status, **kwargs)


class Lock:
    """Holds a backend's write lock from outside the run, as another process would."""

    def __init__(self, storage: RunStorage, path: Path) -> None:
        self.storage = storage
        self.path = path
        self.holder: sqlite3.Connection | None = None

    def take(self) -> None:
        if isinstance(self.storage, LockableMemory):
            self.storage.locked = True
            return
        self.holder = sqlite3.connect(self.path, isolation_level=None)
        self.holder.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        if isinstance(self.storage, LockableMemory):
            self.storage.locked = False
            return
        assert self.holder is not None
        self.holder.execute("ROLLBACK")
        self.holder.close()


@pytest.fixture(params=["memory", "sqlite"])
async def locked_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Any, Lock]]:
    if request.param == "memory":
        memory = LockableMemory()
        yield memory, Lock(memory, tmp_path)
        return
    path = tmp_path / "asyncdag.db"
    async with CountingSqlite(path, busy_timeout=0.01) as sqlite:
        yield sqlite, Lock(sqlite, path)


@pytest.mark.anyio
async def test_a_lock_held_past_the_busy_timeout_during_a_run_loses_no_event(
    locked_storage: tuple[Any, Lock],
) -> None:
    storage, lock = locked_storage
    locked, go_on = anyio.Event(), anyio.Event()

    @solid
    async def chatty(context: Any) -> int:
        for i in range(LINES):
            context.log.info(f"before {i}")
        await locked.wait()
        for i in range(LINES):
            context.log.info(f"while locked {i}")
            await anyio.sleep(0)
        await go_on.wait()
        for i in range(LINES):
            context.log.info(f"after {i}")
        return 1

    @pipeline
    def chatty_pipeline() -> None:
        chatty()

    async with open_run(chatty_pipeline, storage=storage) as run:
        await until(lambda: len(run.event_log) > LINES)
        lock.take()
        locked.set()
        await until(lambda: storage.failures >= 2)  # writes failed past the busy timeout
        go_on.set()
        result = await run.result()  # the run ended while the history is still locked
        failed_by_then = storage.failures
        await until(lambda: storage.failures > failed_by_then)  # the recorder keeps trying
        lock.release()
    assert result.success
    assert await storage.get_events(run.run_id) == result.events
    assert len(result.events) > 3 * LINES
    stored = await storage.get_run(run.run_id)
    assert stored is not None and stored.status is RunStatus.SUCCESS
    assert stored.failure_reason is None


# -- a run killed mid-way ends at its last event -----------------------------------------


@pytest.mark.anyio
async def test_a_recovered_run_ends_at_its_last_event_not_at_the_recovery(
    storage: RunStorage,
) -> None:
    host, pid = socket.gethostname(), dead_pid()
    for run_id in ("with-events", "without"):
        await storage.create_run(
            RunRecord(
                run_id=run_id,
                pipeline_name="p",
                status=RunStatus.STARTED,
                start_time=1000.0,
                pid=pid,
                hostname=host,
            )
        )
    await storage.add_events(
        "with-events",
        [Event("with-events", seq, 1000.0 + seq, EventType.LOG) for seq in range(3)],
    )
    assert sorted(await storage.recover_orphaned_runs()) == ["with-events", "without"]
    killed = await storage.get_run("with-events")
    assert killed is not None and killed.status is RunStatus.FAILURE
    assert killed.end_time == 1002.0
    *_, closing = await storage.get_events("with-events")
    assert closing.type is EventType.RUN_FAILURE and closing.timestamp == 1002.0
    assert closing.data is not None and closing.data["recovered_at"] > 1002.0
    empty = await storage.get_run("without")
    assert empty is not None and empty.end_time == 1000.0


# -- one clear line for a file that is locked or damaged ---------------------------------


@pytest.mark.anyio
async def test_opening_a_write_locked_history_still_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path) as storage:
        await storage.create_run(
            RunRecord(
                run_id="orphan",
                pipeline_name="p",
                status=RunStatus.STARTED,
                pid=dead_pid(),
                hostname=socket.gethostname(),
            )
        )
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a long write
    try:
        async with SqliteStorage(path, busy_timeout=0.01) as storage:
            (listed,) = await storage.list_runs()
            assert listed.run_id == "orphan"  # recovery waits for a free moment
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    async with SqliteStorage(path) as storage:
        assert storage.recovered_on_open == ["orphan"]


def test_a_history_locked_even_for_reading_is_unavailable_not_damaged(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    with SqliteStorage(path):
        pass  # the file exists, in WAL mode
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE hold (x)")
    try:
        with pytest.raises(StorageUnavailableError) as caught:
            SqliteStorage(path, busy_timeout=0.01).open()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    message = str(caught.value)
    assert "locked by another process" in message and "\n" not in message
    assert "move it aside" not in message and "not a usable" not in message


def damage(path: Path) -> None:
    """Overwrite every page but the first (the schema) with garbage, as a bad disk might."""
    size = path.stat().st_size
    with path.open("r+b") as file:
        file.seek(4096)
        file.write(bytes(range(256)) * ((size - 4096) // 256 + 1))


@pytest.mark.anyio
async def test_a_damaged_page_is_one_storage_error_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path) as storage:
        for n in range(30):
            await storage.create_run(RunRecord(run_id=f"r{n}", pipeline_name="p" * 200))
            await storage.add_events(
                f"r{n}",
                [Event(f"r{n}", s, 1.0, EventType.LOG, message="x" * 100) for s in range(20)],
            )
    damage(path)
    async with SqliteStorage(path, recover_orphans=False) as storage:
        with pytest.raises(StorageError) as caught:
            await storage.list_runs()
        with pytest.raises(StorageError):
            await storage.get_events("r3")
    message = str(caught.value)
    assert "damaged" in message and "move it aside" in message and "\n" not in message
    assert not isinstance(caught.value, StorageUnavailableError)


@pytest.mark.anyio
async def test_a_tampered_events_row_is_never_unpickled_into_code(tmp_path: Path) -> None:
    import os
    import pickle

    path = tmp_path / "asyncdag.db"
    marker = tmp_path / "pwned"
    async with SqliteStorage(path) as storage:
        await storage.create_run(RunRecord(run_id="r1", pipeline_name="p"))
        await storage.add_events("r1", [Event("r1", 0, 1.0, EventType.LOG, message="kept")])
        await storage.add_events("r1", [Event("r1", 1, 2.0, EventType.LOG, message="lost")])
        await storage.add_events("r1", [Event("r1", 2, 3.0, EventType.LOG, message="kept too")])

    class Exploit:
        def __reduce__(self) -> Any:
            return (os.system, (f"touch {marker}",))

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE event_batches SET events = ? WHERE first_seq = 1", (pickle.dumps([Exploit()]),)
    )
    conn.close()
    async with SqliteStorage(path) as storage:
        events = await storage.get_events("r1")
    assert not marker.exists()
    assert [e.message for e in events][::2] == ["kept", "kept too"]
    assert events[1].seq == 1 and "could not be read" in events[1].message
