"""The engine's writer to run storage, apart from the storage backends it writes to.

Buffering, background flushing and the exit guarantees (every event, then the
final status, even when cancelled) are one job that works with any
:class:`~asyncdag.storage.RunStorage`.  Import :class:`RunRecorder` from
:mod:`asyncdag.storage`: this module imports the contract from there.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
import anyio.from_thread
import attrs

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._base import _HOSTNAME, RunRecord, RunStorage, StorageError

__all__ = ["RunRecorder"]


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
            lost = f"events from seq {first} on could not be stored: {flush_error}"
            with contextlib.suppress(Exception):
                await self._storage.finish_run(
                    self._record.run_id,
                    RunStatus.FAILURE,
                    end_time=time.time(),
                    failure_reason=lost,
                )
            raise StorageError(
                f"run {self._record.run_id!r}: {lost}; its history is incomplete"
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
