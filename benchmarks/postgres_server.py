"""A PostgreSQL database for the POSTGRES benchmark row: a given server, or a throwaway one.

The server comes from ``$ASYNCDAG_BENCH_POSTGRES_URL``, else
``$ASYNCDAG_TEST_POSTGRES_URL`` (what ``.ci/run`` exports), else the suite
starts one with ``.ci/postgres.sh`` and stops it after.  Either way the row
writes into a database of its own, dropped at the end, so benchmark runs never
mix with anything else on the server.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from _harness import ROOT

__all__ = ["NoServerError", "bench_database"]

SCRIPT = ROOT / ".ci" / "postgres.sh"


class NoServerError(Exception):
    """No PostgreSQL to benchmark against; the message says why."""


@contextlib.contextmanager
def _server() -> Iterator[str]:
    url = os.environ.get("ASYNCDAG_BENCH_POSTGRES_URL") or os.environ.get(
        "ASYNCDAG_TEST_POSTGRES_URL"
    )
    if url:
        yield url
        return
    started = subprocess.run(
        ["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=120, check=False
    )
    if started.returncode != 0:
        why = (started.stderr.strip().splitlines() or ["no output"])[-1]
        raise NoServerError(
            f"no $ASYNCDAG_BENCH_POSTGRES_URL and {SCRIPT.name} start failed: {why}"
        )
    settings = dict(line.split("=", 1) for line in started.stdout.splitlines() if "=" in line)
    try:
        yield settings["ASYNCDAG_TEST_POSTGRES_URL"]
    finally:
        subprocess.run(
            ["bash", str(SCRIPT), "stop", settings["ASYNCDAG_TEST_POSTGRES_DIR"]],
            timeout=120,
            check=False,
        )


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """The URL of a new, empty database on a server, dropped afterwards."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError as exc:
        raise NoServerError(f"psycopg not installed (pip install -e '.[postgres]'): {exc}") from exc
    with _server() as server:
        name = f"asyncdag_bench_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(server, autocommit=True, connect_timeout=10) as admin:
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise NoServerError(f"cannot create a database on the server: {exc}") from exc
        try:
            yield urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
        finally:
            with psycopg.connect(server, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
