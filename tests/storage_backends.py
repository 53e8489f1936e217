"""Helpers for tests that hold every run storage to one behaviour: not a test module.

The ``storage`` fixture is each backend in turn (in memory, SQLite in a
temporary file); import ``storage_fixture`` into a test module and its tests
take ``storage``.  A new backend joins here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from asyncdag.storage import InMemoryStorage, RunStorage, SqliteStorage

__all__ = ["BACKENDS", "dead_pid", "storage_fixture"]

BACKENDS = ["memory", "sqlite"]


@pytest.fixture(params=BACKENDS, name="storage")
async def storage_fixture(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RunStorage]:
    if request.param == "memory":
        yield InMemoryStorage()
        return
    async with SqliteStorage(tmp_path / "asyncdag.db") as sqlite:
        yield sqlite


def dead_pid() -> int:
    """The pid of a process that has exited: a run "of" it is an orphan."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)
