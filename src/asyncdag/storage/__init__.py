"""Run history: which runs happened, with what config, and every event each one emitted.

Two implementations share one async interface, :class:`RunStorage`:

* :class:`InMemoryStorage`, the default for the Python API: no files, no side
  effects, gone with the process.
* :class:`SqliteStorage` (stdlib ``sqlite3``), the default for the CLI and the
  web UI: one file, ``default_storage_path()``, shared safely by several
  processes (two CLI runs and a UI reading while they write).

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
half in a module of its own (``_memory_automation``, ``_sqlite_automation``).
"""

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

__all__ = [
    "AutomationStorage",
    "InMemoryStorage",
    "InstigatorState",
    "InstigatorStatus",
    "InstigatorType",
    "Lease",
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
    "orphan_reason",
]

from asyncdag._public import publish as _publish

_publish(__name__, globals(), __all__)
del _publish
