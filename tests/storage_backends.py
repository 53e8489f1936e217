"""The run-storage backends the shared storage tests run against, and a throwaway PostgreSQL.

Adding a backend: give ``BACKENDS`` its name and ``make_storage`` a branch (and
``SHARED_BACKENDS`` too if other processes can open it by URL); every test that
takes the ``storage`` fixture then runs against it.  Adding a contract method:
write its tests against the ``storage`` fixture, once.

PostgreSQL comes from ``$ASYNCDAG_TEST_POSTGRES_URL`` (``.ci/run`` starts a
server with ``.ci/postgres.sh`` and exports it), else the tests start one with
that script for the session.  When none can be started the PostgreSQL cases
skip and say why, unless ``$ASYNCDAG_TEST_POSTGRES_REQUIRED=1`` (CI sets it),
where they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import attrs
import pytest

from asyncdag.storage import InMemoryStorage, PostgresStorage, RunStorage, SqliteStorage

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
SCRIPT = ROOT / ".ci" / "postgres.sh"

URL_ENV = "ASYNCDAG_TEST_POSTGRES_URL"
DIR_ENV = "ASYNCDAG_TEST_POSTGRES_DIR"
REQUIRED_ENV = "ASYNCDAG_TEST_POSTGRES_REQUIRED"

#: Every backend the shared suite runs against.
BACKENDS = ("memory", "sqlite", "postgres")
#: Backends another process can open by URL (cross-process tests).
SHARED_BACKENDS = ("sqlite", "postgres")


class PostgresUnavailable(Exception):
    """No PostgreSQL server could be found or started; the message says why."""


def postgres_required() -> bool:
    return os.environ.get(REQUIRED_ENV, "") not in ("", "0")


def skip_or_fail(reason: str) -> None:
    """Skip a PostgreSQL case, or fail it where PostgreSQL must be there (CI)."""
    if postgres_required():
        pytest.fail(f"PostgreSQL is required here (${REQUIRED_ENV}) but {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@attrs.frozen
class PostgresServer:
    """A server to make databases on; ``directory`` is set when ``.ci/postgres.sh`` started it."""

    url: str
    directory: str | None = None

    @classmethod
    def start(cls) -> PostgresServer:
        """A new throwaway server, by ``.ci/postgres.sh start``."""
        try:
            out = subprocess.run(
                ["bash", str(SCRIPT), "start"],
                check=False,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{SCRIPT.name} start failed: {exc}") from exc
        if out.returncode != 0:
            detail = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise PostgresUnavailable(f"{SCRIPT.name} start: {detail}")
        values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        return cls(url=values[URL_ENV], directory=values[DIR_ENV])

    def control(self, command: str) -> None:
        """``stop``, ``down``, ``up`` or ``restart`` a server the script started."""
        if self.directory is None:
            raise PostgresUnavailable(f"cannot {command} a server this test run did not start")
        subprocess.run(["bash", str(SCRIPT), command, self.directory], check=True, timeout=120)

    def url_for(self, database: str) -> str:
        return urlunsplit(urlsplit(self.url)._replace(path=f"/{database}"))

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        """A new empty database for one test, dropped after it; yields its URL."""
        import psycopg
        from psycopg import sql

        name = f"asyncdag_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield self.url_for(name)
        finally:
            with psycopg.connect(self.url, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@contextlib.contextmanager
def server_or_skip(find: Callable[[], tuple[PostgresServer, bool]]) -> Iterator[PostgresServer]:
    """The server ``find`` returns (stopped after when it says it started it), or a skip."""
    try:
        server, started = find()
    except PostgresUnavailable as exc:
        skip_or_fail(str(exc))
        raise AssertionError("unreachable") from exc
    try:
        yield server
    finally:
        if started:
            server.control("stop")


def start_server() -> tuple[PostgresServer, bool]:
    """A new throwaway server, to stop after."""
    return PostgresServer.start(), True


def find_or_start_server() -> tuple[PostgresServer, bool]:
    """The server named by ``$ASYNCDAG_TEST_POSTGRES_URL``, or a new one (True: stop it after)."""
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresUnavailable("psycopg is not installed (pip install -e '.[dev]')") from exc
    url = os.environ.get(URL_ENV)
    if url:
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.Error as exc:
            raise PostgresUnavailable(f"${URL_ENV} does not answer: {exc}") from exc
        return PostgresServer(url=url, directory=os.environ.get(DIR_ENV) or None), False
    return PostgresServer.start(), True


@contextlib.contextmanager
def storage_for(backend: str, tmp_path: Path, postgres_url: str | None) -> Iterator[RunStorage]:
    """A fresh, empty store of ``backend``, closed after the test."""
    storage: RunStorage
    if backend == "memory":
        storage = InMemoryStorage()
    elif backend == "sqlite":
        storage = SqliteStorage(tmp_path / "home" / "asyncdag.db")
    elif backend == "postgres":
        assert postgres_url is not None
        storage = PostgresStorage(postgres_url)
    else:
        raise ValueError(f"no storage backend {backend!r}; known: {BACKENDS}")
    try:
        yield storage
    finally:
        storage.close()


# -- writers in other processes --------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import os, sys, time
    import anyio
    from asyncdag._events import Event, EventType
    from asyncdag.storage import RunRecord, RunRecorder, open_storage

    url, prefix, runs, events, backend, go = sys.argv[1:7]

    async def main():
        async with open_storage(url) as storage:
            print("ready", flush=True)
            while go != "-" and not os.path.exists(go):
                await anyio.sleep(0.001)
            for r in range(int(runs)):
                run_id = f"{prefix}-{r}"
                record = RunRecord(run_id=run_id, pipeline_name=prefix)
                async with RunRecorder(storage, record, batch_size=7, flush_interval=0) as rec:
                    for seq in range(int(events)):
                        rec(Event(run_id=run_id, seq=seq, timestamp=time.time(),
                                  type=EventType.LOG, message=f"{prefix} {seq}"))
                        if seq % 3 == 0:
                            await anyio.sleep(0)
                    rec(Event(run_id=run_id, seq=int(events), timestamp=time.time(),
                              type=EventType.RUN_SUCCESS))

    anyio.run(main, backend=backend)
    """
)


def start_writer(
    url: str | Path, prefix: str, *, runs: int, events: int, backend: str, go: str
) -> subprocess.Popen[str]:
    """A process recording ``runs`` runs of ``events`` LOG events each (then RUN_SUCCESS) at ``url``.

    It prints ``ready`` once its storage is open, then waits until the file ``go``
    exists (``-``: starts at once), so several writers can be released together.
    """
    env = {**os.environ, "PYTHONPATH": SRC}
    argv = [sys.executable, "-c", WRITER, str(url), prefix, str(runs), str(events), backend, go]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)


def dead_pid() -> int:
    """The pid of a process that has exited: a STARTED run "of" it is an orphan."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)
