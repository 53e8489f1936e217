"""The engine's writer to run storage, apart from the storage backends it writes to.

Buffering, background flushing and the exit guarantees (every event, then the
final status, even when cancelled) are one job that works with any
:class:`~asyncdag.storage.RunStorage`.  Import :class:`RunRecorder` from
:mod:`asyncdag.storage`: this module imports the contract from there.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
import anyio.from_thread
import attrs

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._base import (
    _HOSTNAME,
    RunNotFoundError,
    RunRecord,
    RunStorage,
    StorageError,
    StorageUnavailableError,
)

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

    The history loses nothing a storage can take.  A failed write keeps its
    batch, in order, and is retried with backoff (``retry_delay`` doubling up to
    ``max_retry_delay``) for as long as the run lives, so another process
    holding the database past its busy timeout only delays the writes.  On exit,
    writes failing with :class:`StorageUnavailableError` are retried for up to
    ``give_up_after`` seconds (as is ``create_run`` on enter); any other
    failure is final.  The status written is always the run's own: when events
    could not all be stored, the final status says so in its reason, and exit
    raises :class:`StorageError` with one line saying what was not stored and
    why (the run's outcome is unchanged; the CLI exits 3).  A run deleted while
    it runs (``asyncdag run delete --force``) stops being recorded.

    Call it from the event loop's thread.  From a worker thread started by
    ``anyio.to_thread`` it still works (the call hops to the loop and waits).
    """

    def __init__(
        self,
        storage: RunStorage,
        record: RunRecord,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.05,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
        give_up_after: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for name, value in [
            ("flush_interval", flush_interval),
            ("retry_delay", retry_delay),
            ("max_retry_delay", max_retry_delay),
            ("give_up_after", give_up_after),
        ]:
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self._storage = storage
        self._record = record
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_delay = retry_delay
        self._max_retry_delay = max(max_retry_delay, retry_delay)
        self._give_up_after = give_up_after
        self._buffer: list[Event] = []
        self._wake: anyio.Event | None = None  # created on enter: an Event belongs to one loop
        self._open = False
        self._thread = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        self._final: tuple[RunStatus, str | None] | None = None
        self._deleted: RunNotFoundError | None = None  # the run left storage while running
        self._dropped = 0  # events not buffered because the run was deleted
        #: How many writes have failed so far (each is retried): for tests and diagnostics.
        self.failed_writes = 0

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
        final = _TERMINAL_EVENTS.get(event.type)
        if final is not None:
            self._final = (final, _failure_reason(event) if final is RunStatus.FAILURE else None)
        if self._deleted is not None:
            self._dropped += 1
            return
        buffer = self._buffer
        buffer.append(event)
        if len(buffer) == 1 or len(buffer) == self._batch_size:
            assert self._wake is not None
            self._wake.set()

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
        error = await self._retrying(functools.partial(self._storage.create_run, self._record))
        if error is not None:
            raise error
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
        delay = self._retry_delay
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
            except RunNotFoundError as exc:
                self._forget(exc)
                return
            except Exception:
                # Kept in the buffer, in order: wait, then try again with what came since.
                await anyio.sleep(delay)
                delay = min(delay * 2, self._max_retry_delay)
                self._wake.set()
            else:
                delay = self._retry_delay

    async def _flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            await self._storage.add_events(self._record.run_id, batch)
        except BaseException:
            self.failed_writes += 1
            self._buffer[:0] = batch  # keep order: retried later
            raise

    def _forget(self, exc: RunNotFoundError) -> None:
        """The run was deleted from storage while it ran: stop storing its events."""
        self._deleted = exc
        self._dropped += len(self._buffer)
        self._buffer = []

    async def _retrying(self, write: Callable[[], Awaitable[None]]) -> StorageError | None:
        """``write`` until it succeeds (None), fails for good, or ``give_up_after`` passes."""
        deadline = time.monotonic() + self._give_up_after
        delay = self._retry_delay
        while True:
            try:
                await write()
                return None
            except StorageUnavailableError as exc:
                if time.monotonic() + delay > deadline:
                    return exc
            except StorageError as exc:
                return exc
            except Exception as exc:  # a backend that breaks the contract: still one line
                error = StorageError(f"{type(exc).__name__}: {exc}")
                error.__cause__ = exc
                return error
            await anyio.sleep(delay)
            delay = min(delay * 2, self._max_retry_delay)

    async def _finish(self, exc: BaseException | None) -> None:
        unstored = ""
        error: StorageError | None = None
        if self._deleted is None:
            error = await self._retrying(self._flush)
            if isinstance(error, RunNotFoundError):
                self._forget(error)
                error = None
        if self._deleted is not None:
            raise StorageError(
                f"run {self._record.run_id!r} was deleted from the run history while it ran: "
                f"its last {self._dropped} event(s) could not be stored"
            ) from self._deleted
        if error is not None:
            first, last = self._buffer[0].seq, self._buffer[-1].seq
            unstored = f"{len(self._buffer)} event(s) (seq {first} to {last})"
        status, reason = self._final or (RunStatus.FAILURE, _missing_end_reason(exc))
        if unstored:
            note = f"history incomplete: {unstored} could not be stored ({error})"
            reason = f"{reason}; {note}" if reason else note
        finish_error = await self._retrying(
            functools.partial(
                self._storage.finish_run,
                self._record.run_id,
                status,
                end_time=time.time(),  # now, before any retry: the run's end, not the write's
                failure_reason=reason,
            )
        )
        if unstored:
            also = "" if finish_error is None else " and its final status"
            raise StorageError(
                f"run {self._record.run_id!r} ended {status.value}, but {unstored}{also} "
                f"could not be stored: {error}"
            ) from error
        if finish_error is not None:
            raise StorageError(
                f"run {self._record.run_id!r} ended {status.value} and every event was stored, "
                f"but not its final status: {finish_error}"
            ) from finish_error


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
