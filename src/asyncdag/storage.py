"""Run history: which runs happened, with what config, and every event each one emitted.

Two implementations share one async interface, :class:`RunStorage`:

* :class:`InMemoryStorage`, the default for the Python API: no files, no side
  effects, gone with the process.
* :class:`SqliteStorage` (stdlib ``sqlite3``), the default for the CLI and the
  web UI: one file, ``default_storage_path()``, shared safely by several
  processes (two CLI runs and a UI reading while they write).

Every method is a coroutine usable from asyncio and trio alike; blocking SQLite
calls run in worker threads through ``anyio.to_thread``.  From sync code (the
CLI), open and close without a loop and wrap single calls in ``anyio.run``::

    with SqliteStorage() as storage:
        runs = anyio.run(functools.partial(storage.list_runs, limit=20))

The engine writes through :class:`RunRecorder`, a plain sync callable that only
appends to a buffer, so a slow disk never blocks a step.
"""

from __future__ import annotations

import abc
import bisect
import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio
import anyio.abc
import anyio.from_thread
import attrs

from asyncdag._errors import AsyncdagError
from asyncdag._events import Event, EventType, RunStatus

if TYPE_CHECKING:
    from asyncdag._storage_sqlite import SqliteStorage

__all__ = [
    "InMemoryStorage",
    "RunNotFoundError",
    "RunRecord",
    "RunRecorder",
    "RunStorage",
    "SqliteStorage",
    "StorageError",
    "default_storage_path",
]


class StorageError(AsyncdagError):
    """Run storage could not do what was asked: a duplicate run, a closed store, a newer schema."""


class RunNotFoundError(StorageError, LookupError):
    """An operation named a run id the storage has never seen (or has deleted)."""

    def __init__(self, run_id: str, action: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"cannot {action}: no run {run_id!r} in storage; create it with create_run() first "
            "(or check the run id: it may have been deleted)"
        )


def default_storage_path() -> Path:
    """Where the CLI and UI keep run history: ``$ASYNCDAG_HOME/asyncdag.db``, else ``~/.asyncdag/``.

    The directory is created when a :class:`SqliteStorage` opens, not here.
    """
    home = os.environ.get("ASYNCDAG_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".asyncdag"
    return base / "asyncdag.db"


def _validate_tags(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"RunRecord.tags must map str to str, got {value!r}")


def _validate_run_id(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"RunRecord.{attribute.name} must be a non-empty string, got {value!r}")


@attrs.frozen(kw_only=True)
class RunRecord:
    """One run as the history knows it; events are stored apart, keyed by ``run_id``.

    ``pid`` and ``hostname`` say which process ran it, so a run whose process
    died without finishing can be marked FAILED instead of staying STARTED forever.
    """

    run_id: str = attrs.field(validator=_validate_run_id)
    pipeline_name: str = attrs.field(validator=attrs.validators.instance_of(str))
    status: RunStatus = attrs.field(default=RunStatus.NOT_STARTED, converter=RunStatus)
    run_config: dict[str, Any] = attrs.field(factory=dict)
    tags: dict[str, str] = attrs.field(factory=dict, validator=_validate_tags)
    start_time: float | None = None
    end_time: float | None = None
    parent_run_id: str | None = None
    pid: int | None = None
    hostname: str | None = None
    failure_reason: str | None = None

    @property
    def is_finished(self) -> bool:
        return self.status in _FINISHED

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the shape the web UI serves."""
        return {
            "run_id": self.run_id,
            "pipeline_name": self.pipeline_name,
            "status": self.status.value,
            "run_config": self.run_config,
            "tags": self.tags,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "parent_run_id": self.parent_run_id,
            "pid": self.pid,
            "hostname": self.hostname,
            "failure_reason": self.failure_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        return cls(
            run_id=data["run_id"],
            pipeline_name=data["pipeline_name"],
            status=RunStatus(data.get("status", RunStatus.NOT_STARTED)),
            run_config=data.get("run_config") or {},
            tags=data.get("tags") or {},
            start_time=data.get("start_time"),
            end_time=data.get("end_time"),
            parent_run_id=data.get("parent_run_id"),
            pid=data.get("pid"),
            hostname=data.get("hostname"),
            failure_reason=data.get("failure_reason"),
        )


_FINISHED = frozenset({RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.CANCELED})


class RunStorage(abc.ABC):
    """Where runs and their event logs live.  Subclass it to add a backend.

    Contract every implementation keeps (the tests hold both to it):
    ``list_runs`` returns newest first (by ``start_time``, then by creation,
    runs without a start time last); ``get_events`` returns a run's events in
    ``seq`` order, so ``after_seq`` is a cursor a live reader resumes from;
    ``(run_id, seq)`` is unique.  ``since`` is inclusive and ``until`` exclusive,
    both compared with ``start_time``.
    """

    @abc.abstractmethod
    async def create_run(self, record: RunRecord) -> None:
        """Store a new run; a run id already stored raises :class:`StorageError`."""

    @abc.abstractmethod
    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        """Append a batch of the run's events in one write (all or none)."""

    @abc.abstractmethod
    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        """Record a run's final status; write it only after the run's last events."""

    @abc.abstractmethod
    async def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    async def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunRecord]: ...

    @abc.abstractmethod
    async def get_events(
        self,
        run_id: str,
        *,
        after_seq: int = -1,
        limit: int | None = None,
        step_key: str | None = None,
        types: Collection[EventType] | None = None,
    ) -> list[Event]: ...

    @abc.abstractmethod
    async def count_events(self, run_id: str) -> int: ...

    @abc.abstractmethod
    async def delete_run(self, run_id: str) -> bool:
        """Forget a run and its events; False when there was no such run."""

    @abc.abstractmethod
    async def recover_orphaned_runs(self) -> list[str]:
        """Mark FAILED the STARTED runs of this host whose process is gone; return their ids."""

    async def aclose(self) -> None:  # noqa: B027 - a storage with nothing to release need not override
        """Release files and connections.  Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# -- helpers both implementations share, so their semantics cannot drift apart ------------


def _check_window(limit: int | None, offset: int) -> None:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or >= 0, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")


def _status_set(status: RunStatus | Collection[RunStatus] | None) -> frozenset[RunStatus] | None:
    if status is None:
        return None
    if isinstance(status, str):
        return frozenset({RunStatus(status)})
    return frozenset(RunStatus(s) for s in status)


def _type_set(types: Collection[EventType] | None) -> frozenset[EventType] | None:
    return None if types is None else frozenset(EventType(t) for t in types)


def _check_terminal(status: RunStatus) -> RunStatus:
    status = RunStatus(status)
    if status not in _FINISHED:
        raise ValueError(
            f"finish_run needs a final status (SUCCESS, FAILURE or CANCELED), got {status.value}"
        )
    return status


def _check_event_run_ids(run_id: str, events: Sequence[Event]) -> None:
    for event in events:
        if event.run_id != run_id:
            raise StorageError(
                f"event seq {event.seq} belongs to run {event.run_id!r}, not {run_id!r}; "
                "add each run's events under its own run id"
            )


_HOSTNAME = socket.gethostname()


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        # os.kill(pid, 0) would terminate the process on Windows: never guess there.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _orphan_reason(record: RunRecord) -> str | None:
    """Why ``record`` is an orphan, or None.  Pid reuse can hide an orphan; it never invents one."""
    if record.status is not RunStatus.STARTED or record.pid is None:
        return None
    if record.hostname != _HOSTNAME or _pid_alive(record.pid):
        return None
    return f"process {record.pid} ended without finishing the run (killed?)"


def _orphan_event(run_id: str, seq: int, reason: str, now: float) -> Event:
    """The RUN_FAILURE that closes an orphan's log, so a tailing reader sees the run end."""
    return Event(
        run_id=run_id,
        seq=seq,
        timestamp=now,
        type=EventType.RUN_FAILURE,
        level=40,  # logging.ERROR
        message=reason,
        data={"orphaned": True},
    )


def _newest_first_key(item: tuple[int, RunRecord]) -> tuple[bool, float, int]:
    index, record = item
    start = record.start_time
    return (start is not None, start if start is not None else -math.inf, index)


class InMemoryStorage(RunStorage):
    """Run history in a dict: the default for ``execute_pipeline``, so running has no side effects.

    Records and events are stored as given, not copied: treat what you get back
    as read-only.  A lock makes it safe to share with threads (a UI in a thread).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[int, RunRecord]] = {}
        self._events: dict[str, list[Event]] = {}
        self._seqs: dict[str, list[int]] = {}
        self._counter = 0

    async def create_run(self, record: RunRecord) -> None:
        with self._lock:
            if record.run_id in self._runs:
                raise StorageError(_duplicate_run_message(record.run_id))
            self._counter += 1
            self._runs[record.run_id] = (self._counter, record)
            self._events[record.run_id] = []
            self._seqs[record.run_id] = []

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        _check_event_run_ids(run_id, events)
        with self._lock:
            if run_id not in self._runs:
                raise RunNotFoundError(run_id, "add events")
            stored, seqs = self._events[run_id], self._seqs[run_id]
            incoming = [e.seq for e in events]
            existing = set(seqs)
            if len(set(incoming)) != len(incoming) or not existing.isdisjoint(incoming):
                raise StorageError(_duplicate_seq_message(run_id, incoming))
            for event in events:
                if not seqs or event.seq > seqs[-1]:
                    seqs.append(event.seq)
                    stored.append(event)
                else:
                    at = bisect.bisect_left(seqs, event.seq)
                    seqs.insert(at, event.seq)
                    stored.insert(at, event)

    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        status = _check_terminal(status)
        with self._lock:
            if run_id not in self._runs:
                raise RunNotFoundError(run_id, "finish run")
            index, record = self._runs[run_id]
            self._runs[run_id] = (
                index,
                attrs.evolve(
                    record, status=status, end_time=end_time, failure_reason=failure_reason
                ),
            )

    async def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            entry = self._runs.get(run_id)
        return None if entry is None else entry[1]

    async def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunRecord]:
        _check_window(limit, offset)
        statuses = _status_set(status)
        with self._lock:
            entries = list(self._runs.values())
        records = [
            record
            for _, record in sorted(entries, key=_newest_first_key, reverse=True)
            if (pipeline_name is None or record.pipeline_name == pipeline_name)
            and (statuses is None or record.status in statuses)
            and (since is None or (record.start_time is not None and record.start_time >= since))
            and (until is None or (record.start_time is not None and record.start_time < until))
        ]
        return records[offset:] if limit is None else records[offset : offset + limit]

    async def get_events(
        self,
        run_id: str,
        *,
        after_seq: int = -1,
        limit: int | None = None,
        step_key: str | None = None,
        types: Collection[EventType] | None = None,
    ) -> list[Event]:
        _check_window(limit, 0)
        wanted = _type_set(types)
        with self._lock:
            if run_id not in self._runs:
                return []
            stored = self._events[run_id]
            start = bisect.bisect_right(self._seqs[run_id], after_seq)
            if step_key is None and wanted is None:
                return stored[start:] if limit is None else stored[start : start + limit]
            found: list[Event] = []
            for event in stored[start:]:
                if limit is not None and len(found) >= limit:
                    break
                if (step_key is None or event.step_key == step_key) and (
                    wanted is None or event.type in wanted
                ):
                    found.append(event)
            return found

    async def count_events(self, run_id: str) -> int:
        with self._lock:
            return len(self._events.get(run_id, ()))

    async def delete_run(self, run_id: str) -> bool:
        with self._lock:
            self._events.pop(run_id, None)
            self._seqs.pop(run_id, None)
            return self._runs.pop(run_id, None) is not None

    async def recover_orphaned_runs(self) -> list[str]:
        recovered: list[str] = []
        with self._lock:
            for run_id, (index, record) in list(self._runs.items()):
                reason = _orphan_reason(record)
                if reason is None:
                    continue
                now = time.time()
                seqs = self._seqs[run_id]
                event = _orphan_event(run_id, seqs[-1] + 1 if seqs else 0, reason, now)
                seqs.append(event.seq)
                self._events[run_id].append(event)
                self._runs[run_id] = (
                    index,
                    attrs.evolve(
                        record, status=RunStatus.FAILURE, end_time=now, failure_reason=reason
                    ),
                )
                recovered.append(run_id)
        return recovered


def _duplicate_run_message(run_id: str) -> str:
    return f"a run with id {run_id!r} is already stored; give each run a fresh run_id"


def _duplicate_seq_message(run_id: str, seqs: Sequence[int]) -> str:
    span = f"{min(seqs)}..{max(seqs)}" if seqs else "?"
    return (
        f"run {run_id!r} already has an event with a seq in {span} (or the batch repeats one); "
        "each seq must be stored once: was this batch written twice?"
    )


def __getattr__(name: str) -> Any:
    # SqliteStorage lives in its own module; importing it lazily keeps the two from
    # importing each other at load time.
    if name == "SqliteStorage":
        from asyncdag._storage_sqlite import SqliteStorage

        return SqliteStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TERMINAL_EVENTS = {
    EventType.RUN_SUCCESS: RunStatus.SUCCESS,
    EventType.RUN_FAILURE: RunStatus.FAILURE,
    EventType.RUN_CANCELED: RunStatus.CANCELED,
}


class RunRecorder:
    """The engine's writer: a sync callable that buffers events; a background task stores them.

    ::

        async with RunRecorder(storage, record) as recorder:  # create_run, status STARTED
            recorder(event)  # never awaits: appends to a buffer

    A flusher task writes the buffer in batches: at most ``flush_interval``
    seconds after the first buffered event, sooner once ``batch_size`` are
    waiting, and never while the buffer is empty (it sleeps on an
    ``anyio.Event``, not a timer).  On exit, however the block ends (normally,
    by an exception, or cancelled), every buffered event is written, *then* the
    final status: taken from the last RUN_SUCCESS / RUN_FAILURE / RUN_CANCELED
    event seen, else FAILURE with a reason.  Both writes are shielded from
    cancellation, so a reader that sees a final status has seen every event.

    Call it from the event loop's thread.  From a worker thread started by
    ``anyio.to_thread`` it still works (the call hops to the loop and waits).
    A storage error in the background does not stop the run: the flusher keeps
    the events and stops; exit retries once and raises :class:`StorageError`
    if the events still cannot be written.
    """

    def __init__(
        self,
        storage: RunStorage,
        record: RunRecord,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.05,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if flush_interval < 0:
            raise ValueError(f"flush_interval must be >= 0, got {flush_interval}")
        self._storage = storage
        self._record = record
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._buffer: list[Event] = []
        self._wake: anyio.Event | None = None  # created on enter: an Event belongs to one loop
        self._open = False
        self._thread = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        self._final: tuple[RunStatus, str | None] | None = None
        self._background_error: BaseException | None = None

    @property
    def run_id(self) -> str:
        return self._record.run_id

    @property
    def record(self) -> RunRecord:
        """The record as created (status STARTED, start time, pid and hostname filled in)."""
        return self._record

    def __call__(self, event: Event) -> None:
        if not self._open:
            raise StorageError(
                f"the recorder for run {self._record.run_id!r} is not open; use it inside "
                "`async with RunRecorder(...)` (events after the run ended are not stored)"
            )
        if threading.get_ident() != self._thread:
            self._call_from_thread(event)
            return
        if event.run_id != self._record.run_id:
            raise StorageError(
                f"event seq {event.seq} is for run {event.run_id!r}, but this recorder "
                f"records run {self._record.run_id!r}"
            )
        buffer = self._buffer
        buffer.append(event)
        if len(buffer) == 1 or len(buffer) == self._batch_size:
            assert self._wake is not None
            self._wake.set()
        final = _TERMINAL_EVENTS.get(event.type)
        if final is not None:
            self._final = (final, _failure_reason(event) if final is RunStatus.FAILURE else None)

    def _call_from_thread(self, event: Event) -> None:
        try:
            anyio.from_thread.run_sync(self, event)
        except RuntimeError as exc:
            raise StorageError(
                f"the recorder for run {self._record.run_id!r} was called from a thread that "
                "anyio did not start; call it from the event loop, or from a thread started "
                "with anyio.to_thread.run_sync"
            ) from exc

    async def __aenter__(self) -> Self:
        record = self._record
        self._record = attrs.evolve(
            record,
            status=RunStatus.STARTED,
            start_time=record.start_time if record.start_time is not None else time.time(),
            pid=record.pid if record.pid is not None else os.getpid(),
            hostname=record.hostname if record.hostname is not None else _HOSTNAME,
            end_time=None,
            failure_reason=None,
        )
        await self._storage.create_run(self._record)
        self._wake = anyio.Event()
        self._thread = threading.get_ident()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._flush_in_background)
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False
        assert self._task_group is not None
        # Exit our task group without handing it the block's exception: anyio would wrap
        # it in an ExceptionGroup.  Cancelling only interrupts the flusher's waits; its
        # writes are shielded, so no batch is lost half-way.
        self._task_group.cancel_scope.cancel()
        try:
            await self._task_group.__aexit__(None, None, None)
        finally:
            with anyio.CancelScope(shield=True):
                await self._finish(exc)

    async def _flush_in_background(self) -> None:
        while True:
            assert self._wake is not None
            await self._wake.wait()
            if len(self._buffer) < self._batch_size:
                self._wake = anyio.Event()
                with anyio.move_on_after(self._flush_interval):
                    await self._wake.wait()  # set early when the buffer fills
            self._wake = anyio.Event()
            try:
                with anyio.CancelScope(shield=True):
                    await self._flush()
            except Exception as exc:
                self._background_error = exc
                return

    async def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            await self._storage.add_events(self._record.run_id, batch)
        except BaseException:
            self._buffer[:0] = batch  # keep order: retried at exit
            raise

    async def _finish(self, exc: BaseException | None) -> None:
        try:
            await self._flush()
        except Exception as flush_error:
            first = self._buffer[0].seq if self._buffer else "?"
            reason = f"events from seq {first} on could not be stored: {flush_error}"
            with contextlib.suppress(Exception):
                await self._storage.finish_run(
                    self._record.run_id,
                    RunStatus.FAILURE,
                    end_time=time.time(),
                    failure_reason=reason,
                )
            raise StorageError(
                f"run {self._record.run_id!r}: {reason}; its history is incomplete"
            ) from flush_error
        status, reason = self._final or (RunStatus.FAILURE, _missing_end_reason(exc))
        await self._storage.finish_run(
            self._record.run_id, status, end_time=time.time(), failure_reason=reason
        )


def _failure_reason(event: Event) -> str:
    if event.message:
        return event.message
    error = event.error
    if error is not None:
        return f"{error.type}: {error.message}"
    return "the run failed"


def _missing_end_reason(exc: BaseException | None) -> str:
    if exc is None:
        return "the run ended without reporting success, failure or cancellation"
    if isinstance(exc, anyio.get_cancelled_exc_class()):
        return "the run was cancelled before it reported how it ended"
    return f"the run raised {type(exc).__name__}: {exc} before it reported how it ended"
