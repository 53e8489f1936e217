"""The in-memory run storage, apart from the contract and the SQLite store it must agree with.

Import :class:`InMemoryStorage` from :mod:`asyncdag.storage`: this module imports
the contract and the shared helpers from there.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Collection, Sequence

import attrs

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._base import (
    RunNotFoundError,
    RunRecord,
    RunStorage,
    StorageError,
    _check_event_run_ids,
    _check_terminal,
    _check_window,
    _duplicate_run_message,
    _duplicate_seq_message,
    _orphan_end,
    _orphan_event,
    _orphan_reason,
    _status_set,
    _type_set,
)
from asyncdag.storage._memory_automation import InMemoryAutomation

__all__ = ["InMemoryStorage"]


def _newest_first_key(item: tuple[int, RunRecord]) -> tuple[bool, float, int]:
    index, record = item
    start = record.start_time
    return (start is not None, start if start is not None else -math.inf, index)


class InMemoryStorage(InMemoryAutomation, RunStorage):
    """Run history in a dict: the default for ``execute_pipeline``, so running has no side effects.

    Records and events are stored as given, not copied: treat what you get back
    as read-only.  A lock makes it safe to share with threads (a UI in a thread).
    """

    def __init__(self) -> None:
        super().__init__()  # the automation half: schedule and sensor state, ticks, leases
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[int, RunRecord]] = {}
        self._events: dict[str, list[Event]] = {}
        self._seqs: dict[str, list[int]] = {}
        self._counter = 0

    def __str__(self) -> str:
        return "memory://"  # the URL that names it, as the CLI and UI print it

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
        root_run_id: str | None = None,
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
            and (
                root_run_id is None
                or record.root_run_id == root_run_id
                or record.run_id == root_run_id
            )
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
                seqs, events = self._seqs[run_id], self._events[run_id]
                end = _orphan_end(record, events[-1].timestamp if events else None, now)
                event = _orphan_event(run_id, seqs[-1] + 1 if seqs else 0, reason, end, now)
                seqs.append(event.seq)
                events.append(event)
                self._runs[run_id] = (
                    index,
                    attrs.evolve(
                        record, status=RunStatus.FAILURE, end_time=end, failure_reason=reason
                    ),
                )
                recovered.append(run_id)
        return recovered
