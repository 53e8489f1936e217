"""Run history: which runs happened, with what config, and every event each one emitted.

Three implementations share one async interface, :class:`RunStorage`:

* :class:`InMemoryStorage`, the default for the Python API: no files, no side
  effects, gone with the process.
* :class:`SqliteStorage` (stdlib ``sqlite3``), the default for the CLI and the
  web UI: one file, ``default_storage_path()``, shared safely by several
  processes (two CLI runs and a UI reading while they write).
* :class:`PostgresStorage` (psycopg 3, ``pip install 'asyncdag[postgres]'``),
  one history for runs, UIs and schedulers on several hosts; psycopg is
  imported only when one opens.

:func:`open_storage` picks one from a URL (``postgresql://...``,
``sqlite:///path``, ``memory://``, a path), or from ``$ASYNCDAG_STORAGE_URL``.

Every method is a coroutine usable from asyncio and trio alike; blocking SQLite
calls run in worker threads through ``anyio.to_thread``.  From sync code (the
CLI), open and close without a loop and wrap single calls in ``anyio.run``::

    with SqliteStorage() as storage:
        runs = anyio.run(functools.partial(storage.list_runs, limit=20))

The engine writes through :class:`RunRecorder`, a plain sync callable that only
appends to a buffer, so a slow disk never blocks a step; a write that fails is
retried, so a database locked by another process only delays the history.

The contract lives in ``_base``, each implementation in a module of its own.
What schedules and sensors keep (on/off state, cursors, ticks, run keys and
leases) is part of the same contract, in ``_automation``, with each backend's
half in a module of its own (``_memory_automation``, ``_sqlite_automation``,
``_postgres_automation``).
"""

from typing import TYPE_CHECKING, Any

from asyncdag._public import publish as _publish

from ._automation import (
    AutomationStorage,
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    Lease,
    TickRecord,
    TickStatus,
)
from ._base import (
    RunNotFoundError,
    RunRecord,
    RunStorage,
    StorageError,
    StorageUnavailableError,
    default_storage_path,
    orphan_reason,
)
from ._memory import InMemoryStorage
from ._recorder import RunRecorder
from ._sqlite import SqliteStorage
from ._url import STORAGE_URL_ENV, open_storage

if TYPE_CHECKING:
    from ._postgres import PostgresStorage

__all__ = [
    "STORAGE_URL_ENV",
    "AutomationStorage",
    "InMemoryStorage",
    "InstigatorState",
    "InstigatorStatus",
    "InstigatorType",
    "Lease",
    "PostgresStorage",
    "RunNotFoundError",
    "RunRecord",
    "RunRecorder",
    "RunStorage",
    "SqliteStorage",
    "StorageError",
    "StorageUnavailableError",
    "TickRecord",
    "TickStatus",
    "default_storage_path",
    "open_storage",
    "orphan_reason",
]

_publish(__name__, globals(), __all__)  # PostgresStorage publishes itself when imported
del _publish


def __getattr__(name: str) -> Any:
    # PostgresStorage is imported on first use: most processes (every CLI command on
    # SQLite) never need its modules, and they cost ~8 ms to import.
    if name == "PostgresStorage":
        from ._postgres import PostgresStorage

        return PostgresStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
