"""PostgreSQL's automation half: schedule and sensor state, ticks, run keys and leases.

A mixin of :class:`~asyncdag.storage.PostgresStorage`, kept apart from its runs
and events as SQLite's is (``_sqlite_automation``, whose row layout it shares);
the tables arrive with schema version 2 (``_postgres_schema``).  SQLite makes
each method atomic by taking the file's write lock before it reads; here the
database's own keys and row locks do it, so schedulers on several hosts never
wait on each other for different schedules:

* **A claim** is ``INSERT ... ON CONFLICT DO NOTHING`` on the tick's key: a
  racing claimant waits for the winner's commit, then finds its row.  Taking
  over an abandoned tick locks the tick (``FOR UPDATE``) and then the lease
  (``FOR SHARE``), so the lease cannot change hands between the check and the
  take-over, and two claimants cannot both take it.
* **A run key** is a unique key: the insert stores the registration or finds
  the run that holds the key.
* **A lease** is one upsert whose ``WHERE`` lets it change hands only when it
  is free, expired, or the caller's own.

Each call runs on a pooled connection in a worker thread, like the rest of the
store, never through the outbox: the scheduler needs every answer before it
acts, so an unreachable server is a :class:`StorageError` it tries again after.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from asyncdag._events import RunStatus
from asyncdag.storage._automation import (
    AutomationStorage,
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    Lease,
    TickRecord,
    TickStatus,
    _abandoned,
    _check_ttl,
    _tick_filter,
)
from asyncdag.storage._base import StorageError
from asyncdag.storage._postgres_codec import (
    escape_text,
    identifier,
    storable_text,
    unescape_text,
)
from asyncdag.storage._sql_where import ticks_where
from asyncdag.storage._sqlite_automation import (
    _STATE_COLUMNS,
    _TICK_COLUMNS,
    _lease_from_row,
    _state_from_row,
    _tick_from_row,
    _tick_row,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresAutomation"]

T = TypeVar("T")

# Bits of the ``escaped`` columns (see _postgres_codec): text PostgreSQL cannot hold as is.
_SKIP_REASON = 1
_CURSOR = 2

#: How often a write that lost a race with a delete (a lease released, a run key freed
#: between two statements) starts over before it gives up.
_ATTEMPTS = 5

_STATE = f"{_STATE_COLUMNS}, escaped"
_TICK = f"{_TICK_COLUMNS}, escaped"
_ACTIVE = [RunStatus.NOT_STARTED.value, RunStatus.STARTED.value]

_SET_STATUS = f"""
INSERT INTO asyncdag_automation_state AS s (name, instigator_type, status, last_tick_time, updated_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    status = EXCLUDED.status,
    updated_at = EXCLUDED.updated_at,
    last_tick_time = coalesce(EXCLUDED.last_tick_time, s.last_tick_time)
RETURNING {_STATE}
"""
# greatest() ignores NULL: a state without a cursor yet takes the new one.
_SET_CURSOR = """
INSERT INTO asyncdag_automation_state AS s
    (name, instigator_type, last_tick_time, cursor, updated_at, escaped)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    last_tick_time = greatest(s.last_tick_time, EXCLUDED.last_tick_time),
    cursor = EXCLUDED.cursor,
    escaped = EXCLUDED.escaped,
    updated_at = EXCLUDED.updated_at
"""
_TICK_VALUES = ", ".join(["%s"] * 13)
_KEY_COLUMNS = ("instigator_name", "tick_time")
_TICK_KEY = "instigator_name = %s AND tick_time = %s"
_CLAIM_TICK = f"""
INSERT INTO asyncdag_automation_ticks ({_TICK}) VALUES ({_TICK_VALUES})
ON CONFLICT (instigator_name, tick_time) DO NOTHING
RETURNING {_TICK}
"""
_LOCK_TICK = f"SELECT {_TICK} FROM asyncdag_automation_ticks WHERE {_TICK_KEY} FOR UPDATE"
_TAKE_TICK = f"UPDATE asyncdag_automation_ticks SET owner = %s WHERE {_TICK_KEY} RETURNING {_TICK}"
_REPLACE_TICK = f"""
INSERT INTO asyncdag_automation_ticks ({_TICK}) VALUES ({_TICK_VALUES})
ON CONFLICT (instigator_name, tick_time) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _TICK.split(", ") if c not in _KEY_COLUMNS)}
"""
_LEASE = "SELECT name, owner, expires_at FROM asyncdag_automation_leases WHERE name = %s"
_ACQUIRE_LEASE = """
INSERT INTO asyncdag_automation_leases AS l (name, owner, expires_at) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
    WHERE l.owner = EXCLUDED.owner OR l.expires_at <= %s
RETURNING name, owner, expires_at
"""
# No conflict target: a run id registered already, or a run key used already, stores nothing.
_ADD_RUN = """
INSERT INTO asyncdag_automation_runs (instigator_name, run_id, run_key, tick_time, created_at)
VALUES (%s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
RETURNING 1
"""
_ACTIVE_RUNS = """
SELECT a.run_id FROM asyncdag_automation_runs a JOIN asyncdag_runs r ON r.run_id = a.run_id
WHERE a.instigator_name = %s AND r.status = ANY(%s)
ORDER BY a.created_at, a.run_id
"""


class PostgresAutomation(AutomationStorage):
    """The automation methods of :class:`~asyncdag.storage.PostgresStorage`."""

    if TYPE_CHECKING:
        # Provided by PostgresStorage: ``fn`` on a pooled connection, in a worker thread
        # (``_call``) or in this one (``_answered``, told whether it is a second attempt).
        async def _call(self, fn: Callable[[psycopg.Connection], T]) -> T: ...

        def _answered(self, fn: Callable[[psycopg.Connection, bool], T]) -> T: ...

    async def get_instigator_state(self, name: str) -> InstigatorState | None:
        return await self._call(functools.partial(_get_state, name=name))

    async def list_instigator_states(self) -> list[InstigatorState]:
        return await self._call(_list_states)

    async def set_instigator_status(
        self,
        name: str,
        instigator_type: InstigatorType,
        status: InstigatorStatus,
        *,
        now: float,
        last_tick_time: float | None = None,
    ) -> InstigatorState:
        params = (
            identifier(name, "schedule or sensor name"),
            InstigatorType(instigator_type).value,
            InstigatorStatus(status).value,
            last_tick_time,
            now,
        )
        return await self._call(functools.partial(_set_status, params=params))

    async def update_instigator_cursor(
        self,
        name: str,
        instigator_type: InstigatorType,
        *,
        last_tick_time: float,
        cursor: str | None = None,
        now: float,
    ) -> None:
        stored, escaped = (None, 0) if cursor is None else escape_text(cursor, _CURSOR)
        params = (
            identifier(name, "schedule or sensor name"),
            InstigatorType(instigator_type).value,
            last_tick_time,
            stored,
            now,
            escaped,
        )
        await self._call(functools.partial(_execute, query=_SET_CURSOR, params=params))

    async def claim_tick(self, tick: TickRecord) -> TickRecord:
        return await self._call(functools.partial(_claim_tick, tick=tick))

    async def update_tick(self, tick: TickRecord) -> None:
        params = _tick_params(tick)
        await self._call(functools.partial(_execute, query=_REPLACE_TICK, params=params))

    async def list_ticks(
        self,
        name: str,
        *,
        limit: int | None = None,
        before: float | None = None,
        statuses: Collection[TickStatus] | None = None,
    ) -> list[TickRecord]:
        wanted = _tick_filter(limit, statuses)
        if wanted is not None and not wanted:
            return []
        where, params = ticks_where("%s", name=name, before=before, statuses=wanted)
        query = f"SELECT {_TICK} FROM asyncdag_automation_ticks{where}"
        query += " ORDER BY tick_time DESC LIMIT %s"  # LIMIT NULL is no limit
        params.append(limit)
        return await self._call(functools.partial(_ticks, query=query, params=params))

    async def add_instigator_run(
        self,
        name: str,
        run_id: str,
        *,
        run_key: str | None,
        tick_time: float | None,
        now: float,
    ) -> str | None:
        params = (
            identifier(name, "schedule or sensor name"),
            identifier(run_id, "run id"),
            _run_key(run_key),
            tick_time,
            now,
        )

        def add(conn: psycopg.Connection, retried: bool) -> str | None:
            return _add_run(conn, params, retried=retried)

        return await anyio.to_thread.run_sync(self._answered, add)

    async def remove_instigator_run(self, name: str, run_id: str) -> None:
        query = "DELETE FROM asyncdag_automation_runs WHERE instigator_name = %s AND run_id = %s"
        await self._call(functools.partial(_execute, query=query, params=(name, run_id)))

    async def active_instigator_runs(self, name: str) -> list[str]:
        return await self._call(functools.partial(_active_runs, name=name))

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> Lease:
        _check_ttl(ttl)
        params = (
            identifier(name, "schedule or sensor name"),
            identifier(owner, "lease owner"),
            now + ttl,
            now,
        )
        return await self._call(functools.partial(_acquire_lease, params=params))

    async def release_lease(self, name: str, owner: str) -> None:
        query = "DELETE FROM asyncdag_automation_leases WHERE name = %s AND owner = %s"
        await self._call(functools.partial(_execute, query=query, params=(name, owner)))


# -- statements, each given a connection (autocommit: one statement, one transaction) ---------


def _execute(conn: psycopg.Connection, *, query: str, params: tuple[Any, ...]) -> None:
    conn.execute(query, params)  # type: ignore[arg-type]  # our own literal SQL


def _get_state(conn: psycopg.Connection, *, name: str) -> InstigatorState | None:
    query = f"SELECT {_STATE} FROM asyncdag_automation_state WHERE name = %s"
    row = conn.execute(query, (name,)).fetchone()  # type: ignore[arg-type]
    return None if row is None else _state_from_pg(row)


def _list_states(conn: psycopg.Connection) -> list[InstigatorState]:
    query = f"SELECT {_STATE} FROM asyncdag_automation_state ORDER BY name"
    return [_state_from_pg(row) for row in conn.execute(query)]  # type: ignore[arg-type]


def _set_status(conn: psycopg.Connection, *, params: tuple[Any, ...]) -> InstigatorState:
    row = conn.execute(_SET_STATUS, params).fetchone()  # type: ignore[arg-type]
    assert row is not None  # an upsert returns its row
    return _state_from_pg(row)


def _claim_tick(conn: psycopg.Connection, *, tick: TickRecord) -> TickRecord:
    params = _tick_params(tick, status=TickStatus.STARTED)
    key = (tick.instigator_name, tick.tick_time)
    for _ in range(_ATTEMPTS):
        with conn.transaction():
            row = conn.execute(_CLAIM_TICK, params).fetchone()  # type: ignore[arg-type]
            if row is not None:
                return _tick_from_pg(row)  # a new tick: ours
            # Stored: the insert waited for its writer to commit, so this sees it, and the
            # lock keeps a second claimant out until this transaction ends.
            row = conn.execute(_LOCK_TICK, key).fetchone()  # type: ignore[arg-type]
            if row is None:
                continue  # deleted since the insert looked (by hand: nothing here deletes)
            stored = _tick_from_pg(row)
            if stored.status is not TickStatus.STARTED:
                return stored
            lease = _lease(conn, tick.instigator_name, lock=True)
            if not _abandoned(lease, stored, tick):
                return stored
            row = conn.execute(_TAKE_TICK, (tick.owner, *key)).fetchone()  # type: ignore[arg-type]
            assert row is not None  # locked above
            return _tick_from_pg(row)
    raise StorageError(
        f"tick {tick.tick_time} of {tick.instigator_name!r} kept vanishing while being "
        f"claimed ({_ATTEMPTS} attempts); is something deleting ticks?"
    )


def _ticks(conn: psycopg.Connection, *, query: str, params: list[Any]) -> list[TickRecord]:
    return [_tick_from_pg(row) for row in conn.execute(query, params)]  # type: ignore[arg-type]


def _add_run(conn: psycopg.Connection, params: tuple[Any, ...], *, retried: bool) -> str | None:
    name, run_id, key = params[:3]
    for _ in range(_ATTEMPTS):
        if conn.execute(_ADD_RUN, params).fetchone() is not None:
            return None  # registered
        if key is not None:
            row = conn.execute(
                "SELECT run_id FROM asyncdag_automation_runs "
                "WHERE instigator_name = %s AND run_key = %s",
                (name, key),
            ).fetchone()
            if row is not None:
                # ``retried``: this very registration may have committed on a connection
                # that died before it answered; finding it is success, not a duplicate.
                return None if retried and row[0] == run_id else str(row[0])
        registered = conn.execute(
            "SELECT 1 FROM asyncdag_automation_runs WHERE instigator_name = %s AND run_id = %s",
            (name, run_id),
        ).fetchone()
        if registered is not None:
            return None  # this run id was registered already: the first registration stays
        # The registration the insert ran into is gone (its launch failed): try again.
    raise StorageError(
        f"run key {key!r} of {name!r} kept changing hands while run {run_id!r} was being "
        f"registered ({_ATTEMPTS} attempts)"
    )


def _active_runs(conn: psycopg.Connection, *, name: str) -> list[str]:
    return [str(row[0]) for row in conn.execute(_ACTIVE_RUNS, (name, _ACTIVE))]


def _lease(conn: psycopg.Connection, name: str, *, lock: bool = False) -> Lease | None:
    query = _LEASE + " FOR SHARE" if lock else _LEASE
    row = conn.execute(query, (name,)).fetchone()  # type: ignore[arg-type]
    return None if row is None else _lease_from_row(row)


def _acquire_lease(conn: psycopg.Connection, *, params: tuple[Any, ...]) -> Lease:
    for _ in range(_ATTEMPTS):
        row = conn.execute(_ACQUIRE_LEASE, params).fetchone()  # type: ignore[arg-type]
        if row is not None:
            return _lease_from_row(row)  # taken or renewed
        lease = _lease(conn, params[0])  # held by another; unless released meanwhile
        if lease is not None:
            return lease
    raise StorageError(f"the lease of {params[0]!r} kept changing hands ({_ATTEMPTS} attempts)")


# -- rows: SQLite's layout (_sqlite_automation), then ``escaped`` ------------------------------


def _run_key(key: str | None) -> str | None:
    """``key`` as stored: as is, or as its JSON literal when text cannot hold it.

    Only compared, never read back, so it needs no ``escaped`` bit, only to stay
    one-to-one: a key that itself starts with ``"`` is stored as a literal too, so
    an escaped key never equals a plain one.
    """
    if key is None:
        return None
    if storable_text(key) is not None and not key.startswith('"'):
        return key
    return json.dumps(key)


def _tick_params(tick: TickRecord, *, status: TickStatus | None = None) -> tuple[Any, ...]:
    identifier(tick.instigator_name, "schedule or sensor name")
    identifier(tick.owner, "tick owner")
    row = list(_tick_row(tick, status=status))
    escaped = 0
    for index, bit in ((9, _SKIP_REASON), (11, _CURSOR)):
        if row[index] is not None:
            row[index], escaped_bit = escape_text(row[index], bit)
            escaped |= escaped_bit
    return (*row, escaped)


def _tick_from_pg(row: Any) -> TickRecord:
    *values, escaped = row
    for index, bit in ((9, _SKIP_REASON), (11, _CURSOR)):
        if values[index] is not None:
            values[index] = unescape_text(values[index], escaped, bit)
    return _tick_from_row(tuple(values))


def _state_from_pg(row: Any) -> InstigatorState:
    *values, escaped = row
    if values[4] is not None:
        values[4] = unescape_text(values[4], escaped, _CURSOR)
    return _state_from_row(tuple(values))
