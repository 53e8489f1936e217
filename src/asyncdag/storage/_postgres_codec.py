"""Runs and events to PostgreSQL rows and back, exactly.

PostgreSQL ``text`` cannot hold a NUL character, and UTF-8 cannot encode a lone
surrogate; a log message or a step key may hold either (bytes decoded with
``surrogateescape``, a C string read whole).  Such a value is stored as its JSON
string literal (pure ASCII) and a bit in the row's ``escaped`` column says so,
so every string comes back as it went in while ordinary ones stay readable in
``psql``.  Identifiers (run id, pipeline name, host) must be storable as they
are: they are keys other tools join on.

Run config, tags and event data are JSON text, not ``jsonb``: jsonb reorders
keys, drops duplicates and turns ``1e308`` into an integer, and the history must
give back what the run said.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from asyncdag._events import Event, EventType
from asyncdag.storage._base import RunRecord, StorageError
from asyncdag.storage._codec import dumps
from asyncdag.storage._sqlite_rows import record_from_row as _sqlite_record_from_row


def _dumps(value: Any, what: str) -> str:
    """JSON text for ``value`` (``what`` it is, for the reader): any value, never a refusal
    (see :mod:`asyncdag.storage._codec`)."""
    return dumps(value)


__all__ = [
    "EVENT_COLUMNS",
    "RUN_COLUMNS",
    "STEP_KEY_ESCAPED",
    "EventRow",
    "escape_text",
    "event_from_row",
    "event_rows",
    "identifier",
    "record_from_row",
    "run_row",
    "storable_text",
    "unescape_text",
]

# Bits of the ``escaped`` column.
MESSAGE_ESCAPED = 1
STEP_KEY_ESCAPED = 2
FAILURE_REASON_ESCAPED = 1

RUN_COLUMNS = (
    "run_id, pipeline_name, status, run_config, tags, start_time, end_time, "
    "parent_run_id, pid, hostname, failure_reason, escaped, root_run_id"
)
EVENT_COLUMNS = 'seq, "timestamp", type, step_key, level, message, data, escaped'


def storable_text(value: str) -> str | None:
    """``value`` as PostgreSQL text can hold it, or None when it cannot (NUL, lone surrogate)."""
    if "\x00" in value:
        return None
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return value


def escape_text(value: str, bit: int) -> tuple[str, int]:
    """``value`` as stored, and ``bit`` when it is stored escaped (its row's ``escaped`` bit)."""
    stored = storable_text(value)
    if stored is not None:
        return stored, 0
    return json.dumps(value), bit  # ASCII: \u0000 and \udcxx escapes


def unescape_text(value: str, escaped: int, bit: int) -> str:
    """The string :func:`escape_text` stored, given its row's ``escaped`` bits."""
    return json.loads(value) if escaped & bit else value  # type: ignore[no-any-return]


def identifier(value: str | None, what: str) -> str | None:
    """``value`` as is, a key other tools join on; :class:`StorageError` if text cannot hold it."""
    if value is None or storable_text(value) is not None:
        return value
    raise StorageError(
        f"{what} {value!r} holds a NUL character or a lone surrogate, which PostgreSQL "
        "cannot store; use printable text"
    )


def run_row(record: RunRecord) -> tuple[Any, ...]:
    reason, escaped = (None, 0)
    if record.failure_reason is not None:
        reason, escaped = escape_text(record.failure_reason, FAILURE_REASON_ESCAPED)
    return (
        identifier(record.run_id, "run id"),
        identifier(record.pipeline_name, "pipeline name"),
        record.status.value,
        _dumps(record.run_config, f"run {record.run_id!r}'s run_config"),
        _dumps(record.tags, f"run {record.run_id!r}'s tags"),
        record.start_time,
        record.end_time,
        identifier(record.parent_run_id, "parent run id"),
        record.pid,
        identifier(record.hostname, "hostname"),
        reason,
        escaped,
        identifier(record.root_run_id, "root run id"),
    )


def failure_reason_param(reason: str | None) -> tuple[str | None, int]:
    """``failure_reason`` and its ``escaped`` bit, for an UPDATE."""
    return (None, 0) if reason is None else escape_text(reason, FAILURE_REASON_ESCAPED)


def record_from_row(row: Sequence[Any]) -> RunRecord:
    """The record in a row of :data:`RUN_COLUMNS`: SQLite's first eleven columns, then
    ``escaped``, then ``root_run_id``."""
    record = _sqlite_record_from_row(tuple(row[:11]))
    if row[11] & FAILURE_REASON_ESCAPED and record.failure_reason is not None:
        record = attrs.evolve(record, failure_reason=json.loads(record.failure_reason))
    if row[12] is not None:
        record = attrs.evolve(record, root_run_id=row[12])
    return record


#: An event as a row of :data:`EVENT_COLUMNS` (the run id apart: a batch shares it).
EventRow = tuple[int, float, str, str | None, int, str, str | None, int]


def event_rows(events: Sequence[Event]) -> list[EventRow]:
    rows: list[EventRow] = []
    for event in events:
        message, escaped = escape_text(event.message, MESSAGE_ESCAPED)
        step = event.step_key
        if step is not None:
            step, step_escaped = escape_text(step, STEP_KEY_ESCAPED)
            escaped |= step_escaped
        value = event.data  # read once: a step event builds it at every read
        data = None
        if value is not None:
            data = _dumps(value, f"data of run {event.run_id!r} event seq {event.seq}")
        rows.append(
            (
                event.seq,
                event.timestamp,
                event.type.value,
                step,
                event.level,
                message,
                data,
                escaped,
            )
        )
    return rows


def step_key_param(step_key: str) -> tuple[str, int]:
    """What ``step_key`` is stored as, and its escaped bit, to filter on it exactly."""
    return escape_text(step_key, STEP_KEY_ESCAPED)


def event_from_row(run_id: str, row: Sequence[Any]) -> Event:
    seq, stamp, type_, step, level, message, data, escaped = row
    return Event(
        run_id=run_id,
        seq=seq,
        timestamp=stamp,
        type=EventType(type_),
        step_key=None if step is None else unescape_text(step, escaped, STEP_KEY_ESCAPED),
        level=level,
        message=unescape_text(message, escaped, MESSAGE_ESCAPED),
        data=None if data is None else json.loads(data),
    )
