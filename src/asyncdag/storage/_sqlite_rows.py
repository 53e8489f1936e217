"""How runs and events become SQLite rows and come back, whatever text and values they carry.

Apart from :mod:`._sqlite` (connections, transactions, queries) because this is
the part that decides whether anything can be lost:

* A batch of events is one row: the events as tuples of plain values, pickled
  together (:func:`encode_batch`).  Pickle keeps every ``str`` as it is (lone
  surrogates, NUL and control characters included), floats bit for bit (NaN
  too), integers of any size; a value that is not plain (a date, an enum, an
  object) is replaced by its nearest JSON value first, so the bytes never name
  a class, and the reader (:func:`decode_batch`) refuses any that does.  A row
  that cannot be read becomes one event saying which seqs it held.
* A run's text fields are TEXT, except text UTF-8 cannot encode (lone
  surrogates), stored as a BLOB of its ``surrogatepass`` bytes and decoded back
  the same way.  Run config and tags are JSON text from :mod:`._codec`.
* Reading a run never fails because of its row: what cannot be read is
  replaced by a neutral value and said in :attr:`RunRecord.note`.
"""

from __future__ import annotations

import io
import math
import pickle
from collections.abc import Sequence
from typing import Any, NamedTuple

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage import _codec
from asyncdag.storage._base import RunRecord

__all__ = [
    "RUN_COLUMNS",
    "Batch",
    "batches_from_v1_rows",
    "decode_batch",
    "encode_batch",
    "encode_batches",
    "record_from_row",
    "run_row",
    "text",
]

RUN_COLUMNS = (
    "run_id, pipeline_name, status, run_config, tags, start_time, end_time, "
    "parent_run_id, pid, hostname, failure_reason, root_run_id"
)

_EVENT_TYPES = {t.value: t for t in EventType}
_new_event = tuple.__new__
_dumps = _codec.dumps


def text(value: str | None) -> str | bytes | None:
    """``value`` as SQLite can bind it: itself, or its bytes when UTF-8 cannot encode it."""
    if value is None or value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")
    return value


def _untext(value: Any) -> Any:
    if type(value) is bytes:
        return value.decode("utf-8", "surrogatepass")
    return value


# -- runs ---------------------------------------------------------------------------------


def run_row(record: RunRecord) -> tuple[Any, ...]:
    return (
        text(record.run_id),
        text(record.pipeline_name),
        record.status.value,
        _dumps(record.run_config),
        _dumps(record.tags),
        record.start_time,
        record.end_time,
        text(record.parent_run_id),
        record.pid,
        text(record.hostname),
        text(record.failure_reason),
        text(record.root_run_id),
    )


def record_from_row(row: Sequence[Any]) -> RunRecord:
    """The run in ``row``; what cannot be read is replaced and said in ``note``."""
    problems: list[str] = []

    def loaded(index: int, name: str, kind: type) -> Any:
        raw = _untext(row[index])
        try:
            value = _codec.loads(raw)
        except (TypeError, ValueError, RecursionError) as exc:
            problems.append(f"its {name} could not be read ({type(exc).__name__}: {exc})")
            return kind()
        if not isinstance(value, kind):
            problems.append(f"its {name} is not a {kind.__name__}: {raw[:200]!r}")
            return kind()
        return value

    def number(index: int, name: str) -> Any:
        value = row[index]
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        problems.append(f"its {name} is not a number: {value!r}")
        return None

    run_config = loaded(3, "run config", dict)
    tags = loaded(4, "tags", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        problems.append("its tags are not all text")
        tags = {str(k): str(v) for k, v in tags.items()}
    try:
        status = RunStatus(row[2])
    except ValueError:
        problems.append(f"its status {row[2]!r} is unknown (written by a newer asyncdag?)")
        status = RunStatus.NOT_STARTED
    pid = row[8]
    if pid is not None and not isinstance(pid, int):
        problems.append(f"its pid is not a number: {pid!r}")
        pid = None
    run_id = _untext(row[0])
    return RunRecord(
        run_id=str(run_id) if run_id else "?",
        pipeline_name=str(_untext(row[1])),
        status=status,
        run_config=run_config,
        tags=tags,
        start_time=number(5, "start time"),
        end_time=number(6, "end time"),
        parent_run_id=_optional_text(row[7]),
        pid=pid,
        hostname=_optional_text(row[9]),
        failure_reason=_optional_text(row[10]),
        root_run_id=_optional_text(row[11]) if len(row) > 11 else None,
        note=f"stored run read in part: {'; '.join(problems)}" if problems else None,
    )


def _optional_text(value: Any) -> str | None:
    value = _untext(value)
    return None if value is None else str(value)


# -- events: a batch a row ----------------------------------------------------------------


class Batch(NamedTuple):
    """One stored row of events: their seq range, how many, and the encoded events."""

    first_seq: int
    last_seq: int
    size: int  # how many events
    blob: bytes


class _PlainPickler(pickle.Pickler):
    """Pickles only Python's plain types: anything else stops it (see :func:`encode_batch`)."""

    def reducer_override(self, obj: Any) -> Any:
        # Called only for objects that are not None, a bool or an exact int, float, str,
        # bytes, list, tuple, dict, set or frozenset: those are written without a class.
        raise _NotPlain


class _NotPlain(Exception):
    pass


class _PlainUnpickler(pickle.Unpickler):
    """Reads what :class:`_PlainPickler` wrote and refuses anything that names a class, so a
    tampered database can never make a reader import or call anything."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"stored events hold only plain values, yet this batch names {module}.{name}"
        )


def encode_batches(events: Sequence[Event], size: int) -> list[Batch]:
    """``events`` (one run's, unique seqs) sorted by seq, as rows of at most ``size`` events.

    Bounded rows keep a read cheap: a reader paging through a run decodes only the
    rows its page needs, however many events one write brought at once.
    """
    ordered = events if _is_sorted(events) else sorted(events, key=_seq)
    return [encode_batch(ordered[i : i + size]) for i in range(0, len(ordered), size)]


def encode_batch(events: Sequence[Event]) -> Batch:
    """``events`` (one run's, unique seqs) as one row, sorted by seq.

    Each event is a tuple of plain values, pickled with the rest of its batch:
    floats in 8 bytes, text as is (lone surrogates included), no per-event JSON.
    That is what makes storing an event cost a few microseconds.  A value that is
    not plain (a date, an enum, an object) is replaced by its nearest JSON value.
    """
    ordered = events if _is_sorted(events) else sorted(events, key=_seq)
    # One read of each event's fields: a step event builds its message and data when read
    # (see asyncdag._events), so indexing it field by field would build them seven times.
    rows = [(e[1], e[2], e[3]._value_, e[4], e[5], e[6], e[7]) for e in map(_plain, ordered)]
    try:
        blob = _pickle(rows)
    except (_NotPlain, RecursionError, AttributeError):
        rows = [_codec.plain(row) for row in _rows_of(ordered)]
        blob = _pickle(rows)
    return Batch(ordered[0].seq, ordered[-1].seq, len(rows), blob)


def _rows_of(events: Sequence[Event]) -> list[tuple[Any, ...]]:
    return [
        (e[1], e[2], getattr(e[3], "_value_", e[3]), e[4], e[5], e[6], e[7])
        for e in map(_plain, events)
    ]


def _pickle(rows: list[tuple[Any, ...]]) -> bytes:
    out = io.BytesIO()
    _PlainPickler(out, protocol=5).dump(rows)
    return out.getvalue()


def _plain(event: Event) -> Event:
    """``event`` as a plain Event: a step event's message and data built once (one read)."""
    return event if event.__class__ is Event else tuple.__new__(Event, event)


def _seq(event: Event) -> int:
    return event.seq  # the field, not event[1]: no message or data built (see encode_batch)


def _is_sorted(events: Sequence[Event]) -> bool:
    return all(events[i].seq < events[i + 1].seq for i in range(len(events) - 1))


def decode_batch(run_id: str, first_seq: int, last_seq: int, blob: Any) -> list[Event]:
    """The events of one stored row; a row that cannot be read becomes one event saying so."""
    try:
        rows = _PlainUnpickler(io.BytesIO(blob)).load()
        return [_event(run_id, row) for row in rows]
    except Exception as exc:  # a damaged row: say so where its events were, lose no others
        return [
            _new_event(
                Event,
                (
                    run_id,
                    first_seq,
                    math.nan,
                    EventType.LOG,
                    None,
                    40,  # logging.ERROR
                    f"events {first_seq} to {last_seq} could not be read from the run history "
                    f"({type(exc).__name__}: {exc})",
                    {"unreadable": True, "first_seq": first_seq, "last_seq": last_seq},
                ),
            )
        ]


def _event(run_id: str, row: tuple[Any, ...]) -> Event:
    seq, timestamp, type_, step_key, level, message, data = row
    event_type = _EVENT_TYPES.get(type_)
    if event_type is None:  # written by a newer asyncdag: keep it, as a log line
        event_type = EventType.LOG
        data = {"stored_type": str(type_), **(data if isinstance(data, dict) else {})}
    return _new_event(Event, (run_id, seq, timestamp, event_type, step_key, level, message, data))


def batches_from_v1_rows(rows: Sequence[Sequence[Any]], size: int) -> list[Batch]:
    """Schema v1 stored an event a row (data as JSON text): its rows as batches (schema v3)."""
    events = []
    for seq, timestamp, type_, step_key, level, message, data in rows:
        if data is not None:
            try:
                data = _codec.loads(data)
            except (TypeError, ValueError, RecursionError):
                data = {"unreadable_data": str(data)}
        event_type = _EVENT_TYPES.get(type_, EventType.LOG)
        events.append(
            _new_event(Event, ("", seq, timestamp, event_type, step_key, level, message, data))
        )
    return encode_batches(events, size)
