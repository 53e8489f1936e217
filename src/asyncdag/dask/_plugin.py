"""A scheduler plugin that stops Dask from running an asyncdag attempt again by itself.

Dask, left alone, runs a task again elsewhere when the worker running it dies
(up to ``allowed-failures`` times), and recomputes a finished task whose
result died with its worker.  Either would run a step's solid again without
the engine knowing: its side effects twice, its events once.  For the keys of
one run (``prefix``) only, on any cluster, so other clients' work is untouched:

- a task entering ``processing`` counts as having failed ``allowed-failures``
  times already, so a worker dying under it fails it at once (``KilledWorker``,
  which the driver reports as :class:`~asyncdag.dask.WorkerLost`, for the
  solid's retry policy to decide);
- a finished task whose result was lost is swapped for one that raises,
  so whoever needed that output fails with a clear message instead of a
  silent recomputation.

The scheduler unpickles this class, so asyncdag must be installed there too.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["NoTransparentRerun", "output_lost"]


def output_lost(key: str) -> Any:
    from ._errors import WorkerLost

    raise WorkerLost(
        f"the output of Dask task {key!r} was lost with its worker; asyncdag does not let "
        "Dask compute it again behind the engine's back (a retry of the step that needs it "
        "fails the same way; run the pipeline again)"
    )


class NoTransparentRerun(SchedulerPlugin):  # type: ignore[misc]
    idempotent = True

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.name = f"asyncdag-no-rerun-{prefix}"
        self.scheduler: Any = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if self.scheduler is None or not (isinstance(key, str) and key.startswith(self.prefix)):
            return
        task = self.scheduler.tasks.get(key)
        if task is None:
            return
        if finish == "processing":
            task.suspicious = max(task.suspicious, self.scheduler.allowed_failures)
        elif start == "memory" and finish == "released":
            try:
                from dask._task_spec import Task  # private: how a task's code is held
            except ImportError:  # another Dask version: recomputation stays possible
                return
            task.run_spec = Task(key, output_lost, key)
