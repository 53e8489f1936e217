"""Run storage: every backend held to one contract, and the recorder's ordering promise.

The ``storage`` fixture (tests/conftest.py) runs each test against in-memory, SQLite and
PostgreSQL storage; see tests/storage_backends.py to add a backend.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag._events import ErrorInfo, Event, EventType, RunStatus
from asyncdag.storage import (
    InMemoryStorage,
    RunNotFoundError,
    RunRecord,
    RunRecorder,
    RunStorage,
    SqliteStorage,
    StorageError,
    default_storage_path,
    open_storage,
)
from asyncdag.storage._sqlite import SCHEMA_VERSION
from storage_backends import dead_pid, start_writer

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed


def record(run_id: str = "r1", **kwargs: Any) -> RunRecord:
    kwargs.setdefault("pipeline_name", "hello")
    return RunRecord(run_id=run_id, **kwargs)


def event(run_id: str, seq: int, type: EventType = EventType.LOG, **kwargs: Any) -> Event:
    return Event(run_id=run_id, seq=seq, timestamp=1000.0 + seq, type=type, **kwargs)


# -- RunRecord ---------------------------------------------------------------------------


def test_run_record_round_trips_through_json() -> None:
    original = RunRecord(
        run_id="r1",
        pipeline_name="hello",
        status=RunStatus.FAILURE,
        run_config={"solids": {"a": {"config": {"n": [1, 2.5, None]}}}},
        tags={"owner": "kan"},
        start_time=1.5,
        end_time=2.5,
        parent_run_id="r0",
        pid=42,
        hostname="box",
        failure_reason="boom",
    )
    assert RunRecord.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_run_record_rejects_non_string_tags_and_empty_run_id() -> None:
    with pytest.raises(TypeError, match="tags"):
        RunRecord(run_id="r1", pipeline_name="p", tags={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="run_id"):
        RunRecord(run_id="", pipeline_name="p")


# -- CRUD and queries, both implementations ----------------------------------------------


@pytest.mark.anyio
async def test_created_run_comes_back_equal(storage: RunStorage) -> None:
    original = record(run_config={"a": [1, {"b": None}]}, tags={"k": "v"}, start_time=5.0, pid=7)
    await storage.create_run(original)
    assert await storage.get_run("r1") == original
    assert await storage.get_run("nope") is None


@pytest.mark.anyio
async def test_creating_a_run_twice_raises(storage: RunStorage) -> None:
    await storage.create_run(record())
    with pytest.raises(StorageError, match="'r1' is already stored"):
        await storage.create_run(record(pipeline_name="other"))
    stored = await storage.get_run("r1")
    assert stored is not None and stored.pipeline_name == "hello"


@pytest.mark.anyio
async def test_adding_events_to_an_unknown_run_raises(storage: RunStorage) -> None:
    with pytest.raises(RunNotFoundError, match="'ghost'"):
        await storage.add_events("ghost", [event("ghost", 0)])


@pytest.mark.anyio
async def test_adding_another_runs_event_raises(storage: RunStorage) -> None:
    await storage.create_run(record())
    with pytest.raises(StorageError, match="belongs to run 'r2'"):
        await storage.add_events("r1", [event("r2", 0)])


@pytest.mark.anyio
async def test_a_batch_repeating_a_seq_is_rejected_whole(storage: RunStorage) -> None:
    await storage.create_run(record())
    await storage.add_events("r1", [event("r1", 0)])
    with pytest.raises(StorageError, match="written twice"):
        await storage.add_events("r1", [event("r1", 1), event("r1", 0)])
    with pytest.raises(StorageError, match="written twice"):
        await storage.add_events("r1", [event("r1", 2), event("r1", 2)])
    assert [e.seq for e in await storage.get_events("r1")] == [0]


@pytest.mark.anyio
async def test_events_come_back_in_seq_order_whatever_the_write_order(storage: RunStorage) -> None:
    await storage.create_run(record())
    await storage.add_events("r1", [event("r1", s) for s in (3, 4)])
    await storage.add_events("r1", [event("r1", s) for s in (1, 0, 2)])
    assert [e.seq for e in await storage.get_events("r1")] == [0, 1, 2, 3, 4]
    assert await storage.count_events("r1") == 5


@pytest.mark.anyio
async def test_after_seq_pages_through_every_event_once(storage: RunStorage) -> None:
    await storage.create_run(record())
    await storage.add_events("r1", [event("r1", s) for s in range(10)])
    seen: list[int] = []
    cursor = -1
    for _ in range(5):  # bounded: a cursor that does not advance must fail, not hang
        page = await storage.get_events("r1", after_seq=cursor, limit=3)
        if not page:
            break
        assert len(page) <= 3
        seen += [e.seq for e in page]
        cursor = page[-1].seq
    assert seen == list(range(10))
    assert await storage.get_events("r1", after_seq=9) == []
    assert await storage.get_events("r1", limit=0) == []


@pytest.mark.anyio
async def test_get_events_filters_by_step_and_type(storage: RunStorage) -> None:
    await storage.create_run(record())
    await storage.add_events(
        "r1",
        [
            event("r1", 0, EventType.RUN_START),
            event("r1", 1, EventType.STEP_START, step_key="a"),
            event("r1", 2, EventType.LOG, step_key="a"),
            event("r1", 3, EventType.STEP_START, step_key="b"),
            event("r1", 4, EventType.STEP_SUCCESS, step_key="a"),
            event("r1", 5, EventType.LOG, step_key="b"),
        ],
    )
    assert [e.seq for e in await storage.get_events("r1", step_key="a")] == [1, 2, 4]
    starts = await storage.get_events("r1", types={EventType.STEP_START})
    assert [e.seq for e in starts] == [1, 3]
    logs_of_b = await storage.get_events("r1", step_key="b", types=[EventType.LOG])
    assert [e.seq for e in logs_of_b] == [5]
    assert [e.seq for e in await storage.get_events("r1", step_key="a", after_seq=1, limit=1)] == [
        2
    ]
    assert await storage.get_events("r1", types=[]) == []
    assert await storage.get_events("unknown-run") == []


@pytest.mark.anyio
async def test_finish_run_records_status_end_time_and_reason(storage: RunStorage) -> None:
    await storage.create_run(record(status=RunStatus.STARTED, start_time=1.0))
    await storage.finish_run("r1", RunStatus.FAILURE, end_time=9.0, failure_reason="step a failed")
    finished = await storage.get_run("r1")
    assert finished is not None
    assert (finished.status, finished.end_time, finished.failure_reason) == (
        RunStatus.FAILURE,
        9.0,
        "step a failed",
    )
    assert finished.is_finished


@pytest.mark.anyio
async def test_finish_run_refuses_unknown_runs_and_non_final_statuses(storage: RunStorage) -> None:
    with pytest.raises(RunNotFoundError, match="'ghost'"):
        await storage.finish_run("ghost", RunStatus.SUCCESS, end_time=1.0)
    await storage.create_run(record())
    with pytest.raises(ValueError, match="STARTED"):
        await storage.finish_run("r1", RunStatus.STARTED, end_time=1.0)


@pytest.mark.anyio
async def test_list_runs_is_newest_first_and_filters(storage: RunStorage) -> None:
    specs = [
        ("a1", "a", RunStatus.SUCCESS, 10.0),
        ("b1", "b", RunStatus.FAILURE, 20.0),
        ("a2", "a", RunStatus.STARTED, 30.0),
        ("b2", "b", RunStatus.SUCCESS, 40.0),
        ("a3", "a", RunStatus.CANCELED, 50.0),
    ]
    for run_id, pipeline, status, start in specs:
        await storage.create_run(
            RunRecord(run_id=run_id, pipeline_name=pipeline, status=status, start_time=start)
        )

    async def ids(**kwargs: Any) -> list[str]:
        return [r.run_id for r in await storage.list_runs(**kwargs)]

    assert await ids() == ["a3", "b2", "a2", "b1", "a1"]
    assert await ids(pipeline_name="a") == ["a3", "a2", "a1"]
    assert await ids(status=RunStatus.SUCCESS) == ["b2", "a1"]
    assert await ids(status=[RunStatus.SUCCESS, RunStatus.FAILURE]) == ["b2", "b1", "a1"]
    assert await ids(status=[]) == []
    assert await ids(since=20.0, until=40.0) == ["a2", "b1"]  # since inclusive, until exclusive
    assert await ids(pipeline_name="a", status=RunStatus.STARTED) == ["a2"]
    assert await ids(limit=2) == ["a3", "b2"]
    assert await ids(limit=2, offset=2) == ["a2", "b1"]
    assert await ids(offset=4) == ["a1"]
    with pytest.raises(ValueError, match="limit"):
        await storage.list_runs(limit=-1)


@pytest.mark.anyio
async def test_list_runs_orders_ties_by_creation_and_unstarted_runs_last(
    storage: RunStorage,
) -> None:
    await storage.create_run(record("never"))
    await storage.create_run(record("first", start_time=5.0))
    await storage.create_run(record("second", start_time=5.0))
    await storage.create_run(record("never2"))
    assert [r.run_id for r in await storage.list_runs()] == ["second", "first", "never2", "never"]
    assert [r.run_id for r in await storage.list_runs(since=0.0)] == ["second", "first"]


@pytest.mark.anyio
async def test_delete_run_forgets_run_and_events(storage: RunStorage) -> None:
    await storage.create_run(record("r1"))
    await storage.create_run(record("r2"))
    await storage.add_events("r1", [event("r1", 0)])
    await storage.add_events("r2", [event("r2", 0)])
    assert await storage.delete_run("r1") is True
    assert await storage.delete_run("r1") is False
    assert await storage.get_run("r1") is None
    assert await storage.count_events("r1") == 0
    assert [r.run_id for r in await storage.list_runs()] == ["r2"]
    assert await storage.count_events("r2") == 1
    await storage.create_run(record("r1"))  # the id is free again
    assert await storage.get_events("r1") == []


# -- any events written come back the same -----------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
event_fields = st.fixed_dictionaries(
    {
        "timestamp": st.floats(allow_nan=False),
        "type": st.sampled_from(EventType),
        "step_key": st.none() | st.text(max_size=12),
        "level": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "message": st.text(),
        "data": st.none() | st.dictionaries(st.text(max_size=8), json_values, max_size=5),
    }
)


@pytest.mark.anyio
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=st.lists(event_fields, max_size=12), split=st.integers(min_value=0, max_value=12))
async def test_any_events_written_come_back_equal(
    storage: RunStorage, fields: list[dict[str, Any]], split: int
) -> None:
    run_id = uuid.uuid4().hex
    await storage.create_run(record(run_id))
    events = [Event(run_id=run_id, seq=seq, **f) for seq, f in enumerate(fields)]
    await storage.add_events(run_id, events[:split])
    await storage.add_events(run_id, events[split:])
    assert await storage.get_events(run_id) == events
    assert [Event.from_dict(e.to_dict()) for e in await storage.get_events(run_id)] == events


@pytest.mark.anyio
async def test_error_info_in_event_data_survives_storage(storage: RunStorage) -> None:
    try:
        raise ValueError("bad input") from KeyError("x")
    except ValueError as exc:
        error = ErrorInfo.from_exception(exc)
    await storage.create_run(record())
    await storage.add_events(
        "r1", [event("r1", 0, EventType.STEP_FAILURE, data={"error": error.to_dict()})]
    )
    (stored,) = await storage.get_events("r1")
    assert stored.error == error


# -- RunRecorder -------------------------------------------------------------------------


class SpyStorage(InMemoryStorage):
    """Logs each write, and checkpoints inside it, so ordering bugs have room to show."""

    def __init__(self, *, failing_writes: int = 0) -> None:
        super().__init__()
        self.writes: list[tuple[str, Any]] = []
        self.failing_writes = failing_writes

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        await anyio.sleep(0)
        if self.failing_writes:
            self.failing_writes -= 1
            raise StorageError("disk on fire")
        await super().add_events(run_id, events)
        self.writes.append(("events", [e.seq for e in events]))

    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        await anyio.sleep(0)
        await super().finish_run(run_id, status, end_time=end_time, failure_reason=failure_reason)
        self.writes.append(("finish", status))


def assert_events_then_status(spy: SpyStorage, count: int, status: RunStatus) -> None:
    *event_writes, last = spy.writes
    assert last == ("finish", status)
    assert all(kind == "events" for kind, _ in event_writes)
    assert [seq for _, seqs in event_writes for seq in seqs] == list(range(count))


@pytest.mark.anyio
async def test_recorder_creates_a_started_run_then_writes_events_and_final_status(
    storage: RunStorage,
) -> None:
    async with RunRecorder(storage, record(), batch_size=4) as recorder:
        started = await storage.get_run("r1")
        assert started is not None
        assert started.status is RunStatus.STARTED
        assert started.pid == os.getpid()
        assert started.hostname == socket.gethostname()
        assert started.start_time is not None
        for seq in range(10):
            recorder(event("r1", seq))
            await anyio.sleep(0)
        recorder(event("r1", 10, EventType.RUN_SUCCESS))
    finished = await storage.get_run("r1")
    assert finished is not None and finished.status is RunStatus.SUCCESS
    assert finished.end_time is not None and finished.end_time >= started.start_time
    assert [e.seq for e in await storage.get_events("r1")] == list(range(11))


@pytest.mark.anyio
async def test_recorder_takes_the_reason_from_the_run_failure_event() -> None:
    spy = SpyStorage()
    async with RunRecorder(spy, record()) as recorder:
        recorder(event("r1", 0, EventType.RUN_START))
        recorder(event("r1", 1, EventType.RUN_FAILURE, message="steps failed: ['a']"))
    assert_events_then_status(spy, 2, RunStatus.FAILURE)
    finished = await spy.get_run("r1")
    assert finished is not None and finished.failure_reason == "steps failed: ['a']"


@pytest.mark.anyio
async def test_recorder_flushes_in_the_background_once_a_batch_is_full() -> None:
    spy = SpyStorage()
    async with RunRecorder(spy, record(), batch_size=5, flush_interval=3600) as recorder:
        for seq in range(5):
            recorder(event("r1", seq))
        with anyio.fail_after(HANG_GUARD):
            while await spy.count_events("r1") < 5:
                await anyio.sleep(0)
        recorder(event("r1", 5, EventType.RUN_SUCCESS))
    assert spy.writes[0] == ("events", [0, 1, 2, 3, 4])
    assert_events_then_status(spy, 6, RunStatus.SUCCESS)


@pytest.mark.anyio
async def test_recorder_flushes_a_lone_event_after_the_interval() -> None:
    spy = SpyStorage()
    async with RunRecorder(spy, record(), batch_size=1000, flush_interval=0.001) as recorder:
        recorder(event("r1", 0))
        with anyio.fail_after(HANG_GUARD):
            while await spy.count_events("r1") < 1:
                await anyio.sleep(0.001)
        run = await spy.get_run("r1")
        assert run is not None and run.status is RunStatus.STARTED
        recorder(event("r1", 1, EventType.RUN_SUCCESS))
    assert_events_then_status(spy, 2, RunStatus.SUCCESS)


@pytest.mark.anyio
async def test_recorder_writes_everything_then_failure_when_the_block_raises() -> None:
    spy = SpyStorage()
    with pytest.raises(ValueError, match="solid blew up"):
        async with RunRecorder(spy, record(), batch_size=3) as recorder:
            for seq in range(7):
                recorder(event("r1", seq))
            await anyio.sleep(0)
            raise ValueError("solid blew up")
    assert_events_then_status(spy, 7, RunStatus.FAILURE)
    finished = await spy.get_run("r1")
    assert finished is not None and finished.failure_reason is not None
    assert "ValueError: solid blew up" in finished.failure_reason


@pytest.mark.anyio
@pytest.mark.parametrize("reported", [False, True], ids=["unreported", "run-canceled-event"])
async def test_recorder_writes_everything_then_status_when_cancelled(reported: bool) -> None:
    spy = SpyStorage()
    with anyio.CancelScope() as scope:
        async with RunRecorder(spy, record(), batch_size=3) as recorder:
            for seq in range(8):
                recorder(event("r1", seq))
            if reported:
                recorder(event("r1", 8, EventType.RUN_CANCELED))
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    if reported:
        assert_events_then_status(spy, 9, RunStatus.CANCELED)
    else:
        assert_events_then_status(spy, 8, RunStatus.FAILURE)
        finished = await spy.get_run("r1")
        assert finished is not None and "cancelled" in (finished.failure_reason or "")


@pytest.mark.anyio
async def test_recorder_accepts_events_from_anyio_worker_threads(storage: RunStorage) -> None:
    async with RunRecorder(storage, record()) as recorder:
        recorder(event("r1", 0))
        await anyio.to_thread.run_sync(recorder, event("r1", 1, step_key="sync_solid"))
        recorder(event("r1", 2, EventType.RUN_SUCCESS))
    assert [e.seq for e in await storage.get_events("r1")] == [0, 1, 2]


@pytest.mark.anyio
async def test_recorder_refuses_events_after_the_run_ended_or_for_another_run(
    storage: RunStorage,
) -> None:
    async with RunRecorder(storage, record()) as recorder:
        with pytest.raises(StorageError, match="records run 'r1'"):
            recorder(event("r2", 0))
        recorder(event("r1", 0, EventType.RUN_SUCCESS))
    with pytest.raises(StorageError, match="not open"):
        recorder(event("r1", 1))
    assert await storage.count_events("r1") == 1


@pytest.mark.anyio
async def test_recorder_survives_a_failed_background_write() -> None:
    spy = SpyStorage(failing_writes=1)
    async with RunRecorder(spy, record(), batch_size=2) as recorder:
        for seq in range(6):
            recorder(event("r1", seq))
            await anyio.sleep(0)
        recorder(event("r1", 6, EventType.RUN_SUCCESS))
    assert_events_then_status(spy, 7, RunStatus.SUCCESS)


@pytest.mark.anyio
async def test_a_run_whose_events_cannot_be_stored_raises_the_storage_error_in_a_group() -> None:
    """execute_pipeline_async raises what the run's recorder raised, in an exception
    group, as it did when the run had a task of its own."""
    from asyncdag import execute_pipeline_async, pipeline, solid

    @solid
    async def one() -> int:
        return 1

    @pipeline
    def p() -> None:
        one()

    spy = SpyStorage(failing_writes=1000)
    with pytest.raises(ExceptionGroup) as raised:
        await execute_pipeline_async(p, storage=spy)
    (error,) = raised.value.exceptions
    assert isinstance(error, StorageError) and "could not be stored" in str(error)


@pytest.mark.anyio
async def test_recorder_raises_one_line_and_keeps_the_true_status_when_events_cannot_be_stored() -> (
    None
):
    spy = SpyStorage(failing_writes=1000)
    with pytest.raises(
        StorageError, match=r"ended SUCCESS, but 5 event\(s\) \(seq 0 to 4\)"
    ) as caught:
        async with RunRecorder(spy, record(), batch_size=2, retry_delay=0) as recorder:
            for seq in range(4):
                recorder(event("r1", seq))
                await anyio.sleep(0)
            recorder(event("r1", 4, EventType.RUN_SUCCESS))
    assert "\n" not in str(caught.value) and "disk on fire" in str(caught.value)
    finished = await spy.get_run("r1")
    assert finished is not None and finished.status is RunStatus.SUCCESS  # never a false status
    assert "history incomplete" in (finished.failure_reason or "")
    assert "disk on fire" in (finished.failure_reason or "")


# -- orphan recovery ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_recover_orphaned_runs_fails_only_runs_whose_process_died(
    storage: RunStorage,
) -> None:
    pid, host = dead_pid(), socket.gethostname()
    await storage.create_run(record("orphan", status=RunStatus.STARTED, pid=pid, hostname=host))
    await storage.add_events("orphan", [event("orphan", 0), event("orphan", 1)])
    await storage.create_run(
        record("alive", status=RunStatus.STARTED, pid=os.getpid(), hostname=host)
    )
    await storage.create_run(
        record("elsewhere", status=RunStatus.STARTED, pid=pid, hostname=host + "-other")
    )
    await storage.create_run(record("done", status=RunStatus.SUCCESS, pid=pid, hostname=host))

    assert await storage.recover_orphaned_runs() == ["orphan"]
    orphan = await storage.get_run("orphan")
    assert orphan is not None
    assert orphan.status is RunStatus.FAILURE
    assert orphan.failure_reason == f"process {pid} ended without finishing the run (killed?)"
    last = (await storage.get_events("orphan"))[-1]
    assert (last.seq, last.type) == (2, EventType.RUN_FAILURE)
    for untouched, status in [
        ("alive", RunStatus.STARTED),
        ("elsewhere", RunStatus.STARTED),
        ("done", RunStatus.SUCCESS),
    ]:
        run = await storage.get_run(untouched)
        assert run is not None and run.status is status
    assert await storage.recover_orphaned_runs() == []


@pytest.mark.anyio
async def test_opening_sqlite_storage_recovers_orphans(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    pid = dead_pid()
    async with SqliteStorage(path) as first:
        orphan = record("orphan", status=RunStatus.STARTED, pid=pid, hostname=socket.gethostname())
        await first.create_run(orphan)
    async with SqliteStorage(path) as second:
        assert second.recovered_on_open == ["orphan"]
        run = await second.get_run("orphan")
        assert run is not None and run.status is RunStatus.FAILURE
    async with SqliteStorage(path, recover_orphans=False) as third:
        assert third.recovered_on_open == []


# -- SQLite specifics --------------------------------------------------------------------


def test_default_storage_path_honours_asyncdag_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ASYNCDAG_HOME", str(tmp_path / "ad"))
    assert default_storage_path() == tmp_path / "ad" / "asyncdag.db"
    monkeypatch.delenv("ASYNCDAG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_storage_path() == tmp_path / "home" / ".asyncdag" / "asyncdag.db"


def test_sqlite_storage_opens_without_a_loop_and_serves_anyio_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, anyio_backend: str
) -> None:
    monkeypatch.setenv("ASYNCDAG_HOME", str(tmp_path / "not-yet"))
    with SqliteStorage() as storage:
        assert (tmp_path / "not-yet" / "asyncdag.db").exists()
        anyio.run(storage.create_run, record(), backend=anyio_backend)
        runs = anyio.run(functools.partial(storage.list_runs, limit=5), backend=anyio_backend)
        assert [r.run_id for r in runs] == ["r1"]
    with pytest.raises(StorageError, match="is closed"):
        anyio.run(storage.get_run, "r1", backend=anyio_backend)
    storage.close()  # twice is fine


def test_sqlite_file_is_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "asyncdag.db"
    SqliteStorage(path).open()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"runs_by_start", "runs_by_pipeline", "runs_by_status"} <= indexes
        # Events: a batch a row, so writing a batch is one insert, not one an event.
        assert "event_batches_by_run" in indexes and "events" not in indexes
    finally:
        conn.close()


@pytest.mark.anyio
async def test_a_big_write_is_stored_in_bounded_rows_and_a_page_decodes_only_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncdag.storage import _sqlite

    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path) as storage:
        await storage.create_run(record())
        await storage.add_events("r1", [event("r1", seq) for seq in range(5000)])  # one write
        decoded: list[int] = []
        real = _sqlite.decode_batch

        def counting(run_id: str, first: int, last: int, blob: Any) -> Any:
            decoded.append(first)
            return real(run_id, first, last, blob)

        monkeypatch.setattr(_sqlite, "decode_batch", counting)
        page = await storage.get_events("r1", after_seq=4500, limit=10)
    assert [e.seq for e in page] == list(range(4501, 4511))
    assert decoded == [4000]  # the one row holding 4501..4510, not the whole write
    conn = sqlite3.connect(path)
    try:
        (rows,) = conn.execute("SELECT count(*) FROM event_batches").fetchone()
    finally:
        conn.close()
    assert rows == 5


@pytest.mark.anyio
async def test_a_schema_v1_file_is_migrated_with_every_run_and_event(tmp_path: Path) -> None:
    from asyncdag.storage._sqlite import _MIGRATIONS

    path = tmp_path / "asyncdag.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in _MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    for n, run_id in enumerate(["r1", "r2"]):
        conn.execute(
            "INSERT INTO runs (run_id, pipeline_name, status, run_config, tags) "
            "VALUES (?, 'p', 'SUCCESS', '{}', '{}')",
            (run_id,),
        )
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?, 'LOG', 'a', 20, ?, ?)",
            [(run_id, seq, 1.5 + seq, f"{run_id} {seq}", '{"n":1}') for seq in range(n + 2)],
        )
    conn.close()
    async with SqliteStorage(path) as storage:
        for n, run_id in enumerate(["r1", "r2"]):
            events = await storage.get_events(run_id)
            assert [(e.seq, e.message, e.data) for e in events] == [
                (seq, f"{run_id} {seq}", {"n": 1}) for seq in range(n + 2)
            ]
            assert await storage.get_events(run_id, step_key="a") == events


def test_sqlite_refuses_a_newer_schema_and_a_non_database(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer than this asyncdag understands"):
        SqliteStorage(newer).open()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="not a usable asyncdag run database"):
        SqliteStorage(junk).open()


@pytest.mark.anyio
async def test_sqlite_write_blocked_past_busy_timeout_raises_a_storage_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "asyncdag.db"
    async with SqliteStorage(path, busy_timeout=0) as storage:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StorageError, match="raise busy_timeout"):
                await storage.create_run(record())
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await storage.create_run(record())  # the lock is gone: the same write goes through
        assert await storage.get_run("r1") is not None


# -- several writers and a live reader ---------------------------------------------------


@pytest.mark.slow
def test_two_processes_write_runs_to_one_sqlite_file_at_once(tmp_path: Path) -> None:
    path, go = tmp_path / "asyncdag.db", tmp_path / "go"
    runs, events = 6, 60
    writers = [
        start_writer(path, prefix, runs=runs, events=events, backend=backend, go=str(go))
        for prefix, backend in [("asyncio", "asyncio"), ("trio", "trio")]
    ]
    for writer in writers:
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
    go.touch()  # both are open and waiting: release them together
    for writer in writers:
        assert writer.wait(timeout=HANG_GUARD) == 0

    async def check() -> None:
        async with SqliteStorage(path) as storage:
            stored = await storage.list_runs()
            assert sorted(r.run_id for r in stored) == sorted(
                f"{p}-{i}" for p in ("asyncio", "trio") for i in range(runs)
            )
            for run in stored:
                assert run.status is RunStatus.SUCCESS
                seqs = [e.seq for e in await storage.get_events(run.run_id)]
                assert seqs == list(range(events + 1))

    anyio.run(check)


async def tail(
    storage: RunStorage, run_id: str, seen: list[Event], *, page: int = 7, live: bool = False
) -> None:
    """Read with the after_seq cursor until the run is finished and nothing is left.

    Between reads it polls every millisecond, or (``live``) waits in
    ``wait_for_events``, as the web UI does.
    """
    cursor = -1
    with anyio.fail_after(HANG_GUARD):
        while True:
            # Status first: once it is final, every event is already stored.
            run = await storage.get_run(run_id)
            batch = await storage.get_events(run_id, after_seq=cursor, limit=page)
            seen += batch
            if batch:
                cursor = batch[-1].seq
            elif run is not None and run.is_finished:
                return
            elif live:
                await storage.wait_for_events(run_id, after_seq=cursor, timeout=HANG_GUARD)
            else:
                await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_a_reader_tails_a_live_run_without_gaps(storage: RunStorage) -> None:
    chunks, per_chunk = 5, 10
    seen: list[Event] = []

    async def reader_caught_up(seq: int) -> None:
        with anyio.fail_after(HANG_GUARD):
            while not seen or seen[-1].seq < seq:
                await anyio.sleep(0)

    async def write() -> None:
        async with RunRecorder(storage, record(), batch_size=4, flush_interval=0) as recorder:
            seq = 0
            for _ in range(chunks):
                for _ in range(per_chunk):
                    recorder(event("r1", seq))
                    seq += 1
                # The run is still STARTED here: the reader must see these live.
                await reader_caught_up(seq - 1)
            recorder(event("r1", seq, EventType.RUN_SUCCESS))

    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        while await storage.get_run("r1") is None:
            await anyio.sleep(0)
        await tail(storage, "r1", seen)

    assert [e.seq for e in seen] == list(range(chunks * per_chunk + 1))
    assert seen[-1].type is EventType.RUN_SUCCESS


@pytest.mark.anyio
@pytest.mark.slow
async def test_a_reader_tails_a_run_written_by_another_process(
    storage_url: str, anyio_backend: str
) -> None:
    events = 300
    writer = start_writer(storage_url, "w", runs=1, events=events, backend=anyio_backend, go="-")
    seen: list[Event] = []
    try:
        async with open_storage(storage_url) as storage:
            with anyio.fail_after(HANG_GUARD):
                while await storage.get_run("w-0") is None:
                    await anyio.sleep(0.001)
            await tail(storage, "w-0", seen, live=True)
    finally:
        assert await anyio.to_thread.run_sync(functools.partial(writer.wait, HANG_GUARD)) == 0
    assert [e.seq for e in seen] == list(range(events + 1))
    assert [e.message for e in seen[:2]] == ["w 0", "w 1"]
    assert seen[-1].type is EventType.RUN_SUCCESS
    assert seen[0].level == logging.DEBUG


# -- re-execution chains: root_run_id (schema v3) ------------------------------------------


@pytest.mark.anyio
async def test_root_run_id_round_trips_and_lists_a_chain(storage: RunStorage) -> None:
    await storage.create_run(record("root", start_time=1.0))
    await storage.create_run(
        record("child", start_time=2.0, parent_run_id="root", root_run_id="root")
    )
    await storage.create_run(
        record("grandchild", start_time=3.0, parent_run_id="child", root_run_id="root")
    )
    await storage.create_run(record("stranger", start_time=4.0))
    got = await storage.get_run("grandchild")
    assert got is not None and (got.parent_run_id, got.root_run_id) == ("child", "root")
    chain = await storage.list_runs(root_run_id="root")
    assert [r.run_id for r in chain] == ["grandchild", "child", "root"]
    assert [r.run_id for r in await storage.list_runs(root_run_id="root", limit=1)] == [
        "grandchild"
    ]
    assert await storage.list_runs(root_run_id="nobody") == []


def test_a_version_2_database_gains_root_run_id_and_keeps_its_runs(tmp_path: Path) -> None:
    from asyncdag.storage._sqlite import _MIGRATIONS

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statements in _MIGRATIONS[:2]:
        for statement in statements:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO runs (run_id, pipeline_name, status, run_config, tags, start_time, "
        "parent_run_id) VALUES ('old', 'hello', 'SUCCESS', '{}', '{}', 1.0, NULL)"
    )
    conn.close()
    with SqliteStorage(path) as storage:
        old = anyio.run(storage.get_run, "old")
        assert old is not None and old.root_run_id is None and old.status is RunStatus.SUCCESS
        anyio.run(storage.create_run, record("new", parent_run_id="old", root_run_id="old"))
        chain = anyio.run(functools.partial(storage.list_runs, root_run_id="old"))
        assert {r.run_id for r in chain} == {"old", "new"}
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert "runs_by_root" in indexes
    finally:
        conn.close()


# -- waiting for a live run's next events ------------------------------------------------


@pytest.mark.anyio
async def test_wait_for_events_lets_a_reader_follow_a_writer(storage: RunStorage) -> None:
    await storage.create_run(record(status=RunStatus.STARTED))
    seen: list[int] = []

    async def follow() -> None:
        cursor = -1
        while cursor < 2:
            await storage.wait_for_events("r1", after_seq=cursor, timeout=HANG_GUARD)
            seen.extend(e.seq for e in await storage.get_events("r1", after_seq=cursor))
            cursor = seen[-1] if seen else cursor

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            for seq in range(3):
                await storage.add_events("r1", [event("r1", seq)])
                await anyio.sleep(0)
    assert seen == [0, 1, 2]


@pytest.mark.anyio
async def test_wait_for_events_ends_at_its_timeout_or_at_once_for_finished_runs(
    storage: RunStorage,
) -> None:
    await storage.create_run(record(status=RunStatus.STARTED))
    with anyio.fail_after(HANG_GUARD):
        await storage.wait_for_events("r1", after_seq=-1, timeout=0.01)
        await storage.wait_for_events("r1", after_seq=-1, timeout=0)
        await storage.finish_run("r1", RunStatus.SUCCESS, end_time=2.0)
        await storage.wait_for_events("r1", after_seq=-1, timeout=0.01)
    assert await storage.get_events("r1") == []
