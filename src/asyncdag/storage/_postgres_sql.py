"""The SQL of the PostgreSQL store: one function per statement or transaction, given a connection.

Kept apart from :mod:`._postgres`, which decides *where* each runs (worker
threads, the pool, the outbox) and what errors become.  Every write of a run's
events or status also NOTIFYs :data:`CHANNEL` with the run id in the same
transaction, so readers LISTENing on any host hear of it when it commits.

Connections are in autocommit mode: one statement is one transaction, and
functions that need more open ``conn.transaction()``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._base import (
    _FINISHED,
    _HOSTNAME,
    RunNotFoundError,
    RunRecord,
    StorageError,
    _duplicate_run_message,
    _orphan_end,
    _orphan_event,
    _orphan_reason,
)
from asyncdag.storage._postgres_codec import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    STEP_KEY_ESCAPED,
    EventRow,
    event_from_row,
    event_rows,
    failure_reason_param,
    record_from_row,
    run_row,
    step_key_param,
)

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "CHANNEL",
    "count_events",
    "delete_run",
    "finish_run",
    "has_news",
    "insert_events",
    "insert_run",
    "recover_orphans",
    "select_events",
    "select_run",
    "select_runs",
]

#: The NOTIFY channel every write of a run's events or status signals, with the run id.
CHANNEL = "asyncdag_run_changes"
_MAX_PAYLOAD = 7900  # NOTIFY payloads stop at 8000 bytes; longer ids wake every reader

#: A batch's first write: COPY is the fastest way in, for the server and for this process.
_COPY_EVENTS = f"COPY asyncdag_events (run_id, {EVENT_COLUMNS}) FROM STDIN"
#: A batch written again (it may be stored already): insert what is missing, count it.
_REPLAY_EVENTS = f"""
WITH inserted AS (
    INSERT INTO asyncdag_events (run_id, {EVENT_COLUMNS})
    SELECT %s, * FROM unnest(
        %s::bigint[], %s::float8[], %s::text[], %s::text[],
        %s::bigint[], %s::text[], %s::text[], %s::smallint[])
    ON CONFLICT (run_id, seq) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
#: Locks the run's row against deletion until the batch commits, and NOTIFYs (on commit).
_LOCK_RUN_AND_NOTIFY = "SELECT pg_notify(%s, %s) FROM asyncdag_runs WHERE run_id = %s FOR KEY SHARE"
_INSERT_RUN = f"""
WITH inserted AS (
    INSERT INTO asyncdag_runs ({RUN_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING 1
)
SELECT count(*), pg_notify(%s, %s) FROM inserted
"""
_FINISH_RUN = """
WITH updated AS (
    UPDATE asyncdag_runs SET status = %s, end_time = %s, failure_reason = %s,
        escaped = (escaped & ~1) | %s
    WHERE run_id = %s
    RETURNING 1
)
SELECT count(*), pg_notify(%s, %s) FROM updated
"""
_SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM asyncdag_runs WHERE run_id = %s"


def _payload(run_id: str) -> str:
    return run_id if len(run_id.encode()) <= _MAX_PAYLOAD else ""


# -- writes ------------------------------------------------------------------------------------


def insert_run(conn: psycopg.Connection, record: RunRecord, *, retried: bool) -> None:
    """Store a new run; a run id already stored is a :class:`StorageError`.

    ``retried``: an earlier attempt may have committed before its connection
    died, so finding this very record already stored is success.
    """
    params = (*run_row(record), CHANNEL, _payload(record.run_id))
    (created, _) = conn.execute(_INSERT_RUN, params).fetchone() or (0, None)
    if created:
        return
    if retried:
        stored = conn.execute(_SELECT_RUN, (record.run_id,)).fetchone()
        if stored is not None and record_from_row(stored) == record:
            return
    raise StorageError(_duplicate_run_message(record.run_id))


def insert_events(
    conn: psycopg.Connection, run_id: str, rows: list[EventRow], *, replay: bool
) -> None:
    """Store a batch in one transaction; ``replay``: it may be stored already (idempotent).

    Raises :class:`RunNotFoundError` for a run that does not exist, and
    psycopg's UniqueViolation for a seq stored with other content.
    """
    with conn.transaction():
        locked = conn.execute(_LOCK_RUN_AND_NOTIFY, (CHANNEL, _payload(run_id), run_id))
        if locked.fetchone() is None:
            raise RunNotFoundError(run_id, "add events")
        if replay:
            _replay_events(conn, run_id, rows)
        else:
            with conn.cursor().copy(_COPY_EVENTS) as copy:
                for row in rows:
                    copy.write_row((run_id, *row))


def _replay_events(conn: psycopg.Connection, run_id: str, rows: list[EventRow]) -> None:
    import psycopg.errors

    columns = [list(column) for column in zip(*rows, strict=True)]
    (inserted,) = conn.execute(_REPLAY_EVENTS, (run_id, *columns)).fetchone() or (0,)
    if inserted == len(rows):
        return
    # Committed before the connection died, its acknowledgement lost: the same events
    # are there.  Anything else under these seqs is a genuine duplicate.
    stored = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM asyncdag_events "
        "WHERE run_id = %s AND seq = ANY(%s) ORDER BY seq",
        (run_id, columns[0]),
    ).fetchall()
    if repr(stored) != repr(sorted(rows)):  # repr: NaN timestamps compare equal
        raise psycopg.errors.UniqueViolation(f"run {run_id!r}: another batch holds these seqs")


def finish_run(
    conn: psycopg.Connection,
    run_id: str,
    status: RunStatus,
    *,
    end_time: float,
    failure_reason: str | None,
) -> None:
    """Record the final status (idempotent: writing it twice writes the same)."""
    reason, escaped = failure_reason_param(failure_reason)
    params = (status.value, end_time, reason, escaped, run_id, CHANNEL, _payload(run_id))
    (updated, _) = conn.execute(_FINISH_RUN, params).fetchone() or (0, None)
    if not updated:
        raise RunNotFoundError(run_id, "finish run")


def delete_run(conn: psycopg.Connection, run_id: str) -> bool:
    """Forget a run and its events.

    The run's row goes first: that waits for any batch of its events still being
    written (it holds the row FOR KEY SHARE), and the events' DELETE, a statement
    later, then sees that batch too.  A batch after it finds no run.
    """
    with conn.transaction():
        deleted = conn.execute("DELETE FROM asyncdag_runs WHERE run_id = %s", (run_id,)).rowcount
        conn.execute("DELETE FROM asyncdag_events WHERE run_id = %s", (run_id,))
    return deleted > 0


def recover_orphans(conn: psycopg.Connection) -> list[str]:
    """Fail this host's STARTED runs whose process is gone, each once even with two recoverers."""
    import time

    recovered: list[str] = []
    with conn.transaction():
        rows = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM asyncdag_runs WHERE status = %s AND hostname = %s "
            "ORDER BY id FOR UPDATE",
            (RunStatus.STARTED.value, _HOSTNAME),
        ).fetchall()
        for row in rows:
            record = record_from_row(row)
            reason = _orphan_reason(record)
            if reason is None:
                continue
            now = time.time()
            last, last_time = conn.execute(
                'SELECT seq, "timestamp" FROM asyncdag_events WHERE run_id = %s '
                "ORDER BY seq DESC LIMIT 1",
                (record.run_id,),
            ).fetchone() or (None, None)
            end = _orphan_end(record, last_time, now)  # its last event, not this moment
            seq = 0 if last is None else last + 1
            event = _orphan_event(record.run_id, seq, reason, end, now)
            conn.execute(
                f"INSERT INTO asyncdag_events (run_id, {EVENT_COLUMNS}) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (record.run_id, *event_rows([event])[0]),
            )
            finish_run(conn, record.run_id, RunStatus.FAILURE, end_time=end, failure_reason=reason)
            recovered.append(record.run_id)
    return recovered


# -- reads -------------------------------------------------------------------------------------


def select_run(conn: psycopg.Connection, run_id: str) -> RunRecord | None:
    row = conn.execute(_SELECT_RUN, (run_id,)).fetchone()
    return None if row is None else record_from_row(row)


def select_runs(
    conn: psycopg.Connection,
    *,
    pipeline_name: str | None,
    statuses: Collection[RunStatus] | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    offset: int,
    root_run_id: str | None = None,
) -> list[RunRecord]:
    """Newest first (by start time, then creation), runs never started last."""
    where: list[str] = []
    params: list[Any] = []
    if root_run_id is not None:
        where.append("(root_run_id = %s OR run_id = %s)")
        params += [root_run_id, root_run_id]
    if pipeline_name is not None:
        where.append("pipeline_name = %s")
        params.append(pipeline_name)
    if statuses is not None:
        where.append("status = ANY(%s)")
        params.append([s.value for s in statuses])
    if since is not None:
        where.append("start_time >= %s")
        params.append(since)
    if until is not None:
        where.append("start_time < %s")
        params.append(until)
    query = f"SELECT {RUN_COLUMNS} FROM asyncdag_runs"
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY start_time DESC NULLS LAST, id DESC LIMIT %s OFFSET %s"
    params += [limit, offset]  # LIMIT NULL is no limit
    return [record_from_row(row) for row in conn.execute(query, params)]  # type: ignore[arg-type]


def select_events(
    conn: psycopg.Connection,
    run_id: str,
    *,
    after_seq: int,
    limit: int | None,
    step_key: str | None,
    types: Collection[EventType] | None,
) -> list[Event]:
    """The run's events after ``after_seq``, in seq order."""
    query = f"SELECT {EVENT_COLUMNS} FROM asyncdag_events WHERE run_id = %s AND seq > %s"
    params: list[Any] = [run_id, after_seq]
    if step_key is not None:
        stored, escaped = step_key_param(step_key)
        query += f" AND step_key = %s AND (escaped & {STEP_KEY_ESCAPED}) = %s"
        params += [stored, escaped]
    if types is not None:
        query += " AND type = ANY(%s)"
        params.append([t.value for t in types])
    query += " ORDER BY seq LIMIT %s"
    params.append(limit)
    rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
    return [event_from_row(run_id, row) for row in rows]


def count_events(conn: psycopg.Connection, run_id: str) -> int:
    row = conn.execute("SELECT count(*) FROM asyncdag_events WHERE run_id = %s", (run_id,))
    found = row.fetchone()
    return int(found[0]) if found else 0


def has_news(conn: psycopg.Connection, run_id: str, after_seq: int) -> bool:
    """Whether a reader at ``after_seq`` has anything to read: events after it, or an end."""
    row = conn.execute(
        "SELECT r.status, (SELECT max(seq) FROM asyncdag_events e WHERE e.run_id = r.run_id) "
        "FROM asyncdag_runs r WHERE r.run_id = %s",
        (run_id,),
    ).fetchone()
    if row is None:
        return True  # unknown (or deleted): nothing to wait for
    status, last = row
    return RunStatus(status) in _FINISHED or (last is not None and last > after_seq)
