"""What can go wrong on a Dask cluster that cannot go wrong in one process.

Each is an :class:`~asyncdag.AsyncdagError` (so it pickles intact from a worker
back to the driver) whose message names the step and says what to do.  A
``RetryPolicy(retry_on=(WorkerLost,))`` on a solid retries the attempts a dead
worker took with it.
"""

from __future__ import annotations

from .._errors import AsyncdagError

__all__ = [
    "DaskUnavailable",
    "NoWorkerForResources",
    "OutputNotPicklable",
    "SchedulerUnreachable",
    "WorkerLost",
]


class DaskUnavailable(AsyncdagError):
    """The Dask executor was asked for, but ``distributed`` is not installed here."""


class WorkerLost(AsyncdagError):
    """The Dask worker running an attempt (or holding an output it needs) died.

    Dask does not run the attempt again by itself (asyncdag turns that off for its
    own tasks): the solid's retry policy decides, so a step never runs twice unseen.
    """


class SchedulerUnreachable(AsyncdagError):
    """The Dask scheduler went away or stopped answering; the run cannot go on there."""


class NoWorkerForResources(AsyncdagError):
    """No worker of the cluster offers the abstract resources a solid asks for."""


class OutputNotPicklable(AsyncdagError, TypeError):
    """A step's output cannot be pickled, so it could never leave the worker that made it."""
