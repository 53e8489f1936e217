"""The PostgreSQL run-history schema, as a list of migrations applied when a store opens.

Why versioned migrations rather than ``CREATE TABLE IF NOT EXISTS``: several
hosts share one database and do not upgrade at once.  Each migration moves the
schema one version up; ``asyncdag_schema`` records every version applied, so a
store opening on a database that an older asyncdag created brings it up to date
(once: an advisory lock makes concurrent openers wait for each other), and a
store opening on a database that a *newer* asyncdag migrated refuses, saying
so, instead of misreading tables it does not know.

Adding to the contract (schedule and sensor state, output metadata...) means
appending a migration here, never editing one that has shipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncdag.storage._base import StorageError

if TYPE_CHECKING:
    import psycopg

__all__ = ["SCHEMA_VERSION", "migrate", "schema_version"]

#: Each entry migrates from version i to i + 1 (all statements in one transaction).
MIGRATIONS: list[tuple[str, ...]] = [
    (
        # ``id`` orders runs created in the same instant; ``escaped`` marks text columns
        # that hold a JSON string literal because PostgreSQL text cannot hold the value
        # as is (a NUL, a lone surrogate): see _postgres_codec.
        """CREATE TABLE asyncdag_runs (
            id bigserial PRIMARY KEY,
            run_id text NOT NULL UNIQUE,
            pipeline_name text NOT NULL,
            status text NOT NULL,
            run_config text NOT NULL,
            tags text NOT NULL,
            start_time double precision,
            end_time double precision,
            parent_run_id text,
            pid bigint,
            hostname text,
            failure_reason text,
            escaped smallint NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX asyncdag_runs_by_start ON asyncdag_runs (start_time DESC NULLS LAST, id DESC)",
        """CREATE INDEX asyncdag_runs_by_pipeline
            ON asyncdag_runs (pipeline_name, start_time DESC NULLS LAST, id DESC)""",
        """CREATE INDEX asyncdag_runs_by_status
            ON asyncdag_runs (status, start_time DESC NULLS LAST, id DESC)""",
        # No foreign key to asyncdag_runs: its check costs a query per row (it measured
        # ~10 us an event, a third of a batch's cost).  A batch locks its run's row once
        # instead (FOR KEY SHARE), and deleting a run deletes its events (_postgres_sql).
        """CREATE TABLE asyncdag_events (
            run_id text NOT NULL,
            seq bigint NOT NULL,
            "timestamp" double precision NOT NULL,
            type text NOT NULL,
            step_key text,
            level bigint NOT NULL,
            message text NOT NULL,
            data text,
            escaped smallint NOT NULL DEFAULT 0,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE INDEX asyncdag_events_by_step ON asyncdag_events (run_id, step_key, seq)",
    ),
    (
        # Version 2: what schedules and sensors keep (see _postgres_automation).  The
        # unique keys are the guarantees: a tick is stored once, a run key starts one run.
        # ``escaped`` bits as in version 1: 1 skip_reason, 2 cursor.
        """CREATE TABLE asyncdag_automation_state (
            name text PRIMARY KEY,
            instigator_type text NOT NULL,
            status text,
            last_tick_time double precision,
            cursor text,
            updated_at double precision,
            escaped smallint NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE asyncdag_automation_ticks (
            instigator_name text NOT NULL,
            instigator_type text NOT NULL,
            tick_time double precision NOT NULL,
            status text NOT NULL,
            owner text NOT NULL,
            start_time double precision NOT NULL,
            end_time double precision,
            run_ids text NOT NULL,
            run_keys text NOT NULL,
            skip_reason text,
            error text,
            cursor text,
            escaped smallint NOT NULL DEFAULT 0,
            PRIMARY KEY (instigator_name, tick_time)
        )""",
        """CREATE TABLE asyncdag_automation_runs (
            instigator_name text NOT NULL,
            run_id text NOT NULL,
            run_key text,
            tick_time double precision,
            created_at double precision NOT NULL,
            PRIMARY KEY (instigator_name, run_id),
            UNIQUE (instigator_name, run_key)
        )""",
        """CREATE TABLE asyncdag_automation_leases (
            name text PRIMARY KEY,
            owner text NOT NULL,
            expires_at double precision NOT NULL
        )""",
    ),
    (
        # Version 3: the first run of a re-execution chain (SQLite's v3 too), and listing a
        # chain by it.  Older rows keep NULL: they were not re-executions of anything.
        "ALTER TABLE asyncdag_runs ADD COLUMN root_run_id text",
        "CREATE INDEX asyncdag_runs_by_root ON asyncdag_runs (root_run_id, start_time)",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)

# pg_advisory_xact_lock key: "asyncdag" in ASCII, so it is recognisable in pg_locks.
_MIGRATION_LOCK = 0x6173796E63646167

_CURRENT = "SELECT coalesce(max(version), 0) FROM asyncdag_schema"


def schema_version(conn: psycopg.Connection) -> int:
    """The version the database is at; 0 for a database asyncdag never touched."""
    (exists,) = conn.execute("SELECT to_regclass('asyncdag_schema') IS NOT NULL").fetchone() or (
        False,
    )
    if not exists:
        return 0
    row = conn.execute(_CURRENT).fetchone()
    return int(row[0]) if row else 0


def migrate(conn: psycopg.Connection, where: str) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version the database was at.

    ``conn`` is in autocommit mode; the migration is one transaction under an
    advisory lock, so two hosts opening a new database at once create it once.
    """
    found = schema_version(conn)
    if found == SCHEMA_VERSION:
        return found  # the common case: no lock, no write, fine for a read-only role
    _refuse_newer(found, where)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS asyncdag_schema (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )"""
        )
        row = conn.execute(_CURRENT).fetchone()
        found = int(row[0]) if row else 0  # another host may have migrated meanwhile
        _refuse_newer(found, where)
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)  # type: ignore[arg-type]  # our own literal DDL
            conn.execute("INSERT INTO asyncdag_schema (version) VALUES (%s)", (version + 1,))
    return found


def _refuse_newer(found: int, where: str) -> None:
    if found > SCHEMA_VERSION:
        raise StorageError(
            f"{where} has run-history schema v{found}, newer than this asyncdag "
            f"understands (v{SCHEMA_VERSION}); upgrade asyncdag on this host, or point "
            "it at another database"
        )
