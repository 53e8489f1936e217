"""How runs and events become SQLite rows and come back, whatever text and values they carry.

Apart from :mod:`._sqlite` (connections, transactions, queries) because this is
the part that decides whether anything can be lost:

* Text SQLite cannot take (a ``str`` with lone surrogates: UTF-8 has no bytes
  for them) is stored as a BLOB of its ``surrogatepass`` bytes and decoded back
  the same way, so it comes back equal.  Every other ``str`` (NUL and control
  characters included) is stored as TEXT.  Events take the fast path first and
  are re-encoded only when SQLite refuses a batch; a run's few text fields are
  checked one by one.
* Run config, tags and event data are JSON text from :mod:`._codec`: any value.
* Reading a run never fails because of its row: what cannot be read is
  replaced by a neutral value and said in :attr:`RunRecord.note`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage import _codec
from asyncdag.storage._base import RunRecord

__all__ = [
    "EVENT_COLUMNS",
    "RUN_COLUMNS",
    "event_from_row",
    "event_rows",
    "record_from_row",
    "run_row",
    "text",
]

RUN_COLUMNS = (
    "run_id, pipeline_name, status, run_config, tags, start_time, end_time, "
    "parent_run_id, pid, hostname, failure_reason"
)
#: Without the run: a batch belongs to one run, whose key is the first parameter.
EVENT_COLUMNS = "seq, timestamp, type, step_key, level, message, data"

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
        note=f"stored run read in part: {'; '.join(problems)}" if problems else None,
    )


def _optional_text(value: Any) -> str | None:
    value = _untext(value)
    return None if value is None else str(value)


# -- events -------------------------------------------------------------------------------


def event_rows(run: int, events: Sequence[Event], *, safe: bool = False) -> list[tuple[Any, ...]]:
    """Rows for ``events`` of the run keyed ``run``.

    The fast path binds fields as they are.  ``safe=True`` is the retry after
    SQLite refused a batch (text UTF-8 cannot encode, an integer past 64 bits,
    a NaN timestamp, which SQLite turns into NULL): each field is made storable
    without changing what it reads back as.
    """
    dumps = _dumps
    if safe:
        return [
            (
                run,
                e.seq,
                e.timestamp if e.timestamp == e.timestamp else "NaN",
                e.type.value,
                text(e.step_key),
                e.level if -(2**63) <= e.level < 2**63 else str(e.level),
                text(e.message if isinstance(e.message, str) else str(e.message)),
                None if e.data is None else dumps(e.data),
            )
            for e in events
        ]
    return [
        (
            run,
            e.seq,
            e.timestamp,
            e.type.value,
            e.step_key,
            e.level,
            e.message,
            None if e.data is None else dumps(e.data),
        )
        for e in events
    ]


def event_from_row(run_id: str, row: Sequence[Any]) -> Event:
    seq, timestamp, type_, step_key, level, message, data = row
    event_type = _EVENT_TYPES.get(type_)
    if data is not None:
        try:
            data = _codec.loads(_untext(data))
        except (TypeError, ValueError, RecursionError):
            data = {"unreadable_data": str(_untext(data))}
    if event_type is None:  # written by a newer asyncdag: keep it, as a log line
        event_type = EventType.LOG
        data = {"stored_type": str(type_), **(data if isinstance(data, dict) else {})}
    if type(message) is bytes:
        message = message.decode("utf-8", "surrogatepass")
    if type(step_key) is bytes:
        step_key = step_key.decode("utf-8", "surrogatepass")
    if type(timestamp) is not float:
        timestamp = _number(timestamp, float, math.nan)
    if type(level) is not int:
        level = _number(level, int, 0)
    return _new_event(Event, (run_id, seq, timestamp, event_type, step_key, level, message, data))


def _number(value: Any, kind: type, default: Any) -> Any:
    try:
        return kind(_untext(value))
    except (TypeError, ValueError):
        return default
