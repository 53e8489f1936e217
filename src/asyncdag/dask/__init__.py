"""Running a pipeline's steps on a Dask distributed cluster.

``execute_pipeline(p, executor=DaskExecutor(address="tcp://scheduler:8786"))``
(``DaskExecutor`` is exported from :mod:`asyncdag`); this module holds the
errors only a cluster can cause.  Importing it imports neither dask nor
distributed: a run that uses the executor does, through ``pip install
'asyncdag[dask]'``.  The worker side is :mod:`asyncdag.dask._worker`, which
asyncdag's installation on every worker provides.
"""

from __future__ import annotations

from ._errors import (
    DaskUnavailable,
    NoWorkerForResources,
    OutputNotPicklable,
    SchedulerUnreachable,
    WorkerLost,
)
from ._executor import DaskExecutor as DaskExecutor

__all__ = [
    "DaskUnavailable",
    "NoWorkerForResources",
    "OutputNotPicklable",
    "SchedulerUnreachable",
    "WorkerLost",
]

from .._public import publish as _publish

_publish(__name__, globals(), __all__)
del _publish
