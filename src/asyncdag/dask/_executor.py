"""``DaskExecutor``: what ``execute_pipeline(p, executor=DaskExecutor(...))`` takes.

A small, plain object (it imports no dask): where the cluster is and how to
use it.  A run opens it (:meth:`DaskExecutor.open_launcher`), which imports
``distributed`` then, connects, and gives the engine a launcher for the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from .._errors import DefinitionError

if TYPE_CHECKING:
    from .._engine import RunScope, StepLauncher

__all__ = ["DaskExecutor"]

_BRIDGES = ("auto", "loop", "thread")


class DaskExecutor:
    """Run a pipeline's steps on a Dask distributed cluster.

    - ``DaskExecutor(address="tcp://scheduler:8786")``: a cluster that runs already;
    - ``DaskExecutor(cluster=LocalCluster(...))`` (or any cluster object with a
      ``scheduler_address``), managed by the caller;
    - ``DaskExecutor()``: a ``LocalCluster`` of worker processes sized to the
      machine, created when the run starts and closed when it ends
      (``cluster_options`` are passed to it: ``n_workers``, ``threads_per_worker``,
      ``memory_limit``, ``resources``...).  A script that does this must run the
      pipeline under ``if __name__ == "__main__":``, since each worker process
      imports the script.

    The engine keeps scheduling (dependencies, bounds, retries, timeouts,
    cancellation, events, spans); each step's compute goes to the cluster.
    Outputs stay on the workers and move between them; ``fetch_outputs=True``
    brings every output to the driver when the run ends, so
    ``result.output_for_solid`` works (False: they are dropped with the run).
    asyncdag must be installed on the scheduler and the workers; a pipeline's
    own files travel with each step.  ``bridge``: where Dask's asyncio client
    lives ("auto": on the driver's loop under asyncio, on a thread of its own
    under trio; "loop"; "thread").  ``watchdog_interval``/``watchdog_timeout``:
    how often the scheduler is asked whether it still answers, and for how
    long, before the run fails instead of hanging.  ``teardown_grace``: how long
    the end of the run waits for cancelled steps on the workers to return
    before their resources are torn down.  ``check_pickle``: pickle each
    output on its worker before returning it, so one that could never leave
    the worker fails its step with a message naming it.
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        cluster: Any = None,
        cluster_options: Mapping[str, Any] | None = None,
        fetch_outputs: bool = True,
        check_pickle: bool = True,
        bridge: str = "auto",
        connect_timeout: float = 10.0,
        watchdog_interval: float = 2.0,
        watchdog_timeout: float = 10.0,
        teardown_grace: float = 5.0,
    ) -> None:
        if address is not None and cluster is not None:
            raise DefinitionError(
                "DaskExecutor takes address= (a running scheduler) or cluster= (a cluster "
                "object), not both"
            )
        if address is not None and (not isinstance(address, str) or not address):
            raise DefinitionError(
                f"DaskExecutor(address=...) must be a scheduler address such as "
                f"'tcp://scheduler:8786', got {address!r}"
            )
        if cluster is not None and not hasattr(cluster, "scheduler_address"):
            raise DefinitionError(
                f"DaskExecutor(cluster=...) takes a Dask cluster (LocalCluster(...), say), "
                f"got {cluster!r}, which has no scheduler_address"
            )
        if cluster_options and (address is not None or cluster is not None):
            raise DefinitionError(
                "DaskExecutor(cluster_options=...) configures the LocalCluster a run creates; "
                "leave it out with address= or cluster="
            )
        if bridge not in _BRIDGES:
            raise DefinitionError(
                f"DaskExecutor(bridge=...) must be one of {_BRIDGES}, got {bridge!r}"
            )
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("watchdog_interval", watchdog_interval),
            ("watchdog_timeout", watchdog_timeout),
        ):
            if not seconds > 0:
                raise DefinitionError(
                    f"DaskExecutor({name}=...) must be > 0 seconds, got {seconds!r}"
                )
        if not teardown_grace >= 0:
            raise DefinitionError(
                f"DaskExecutor(teardown_grace=...) must be >= 0 seconds, got {teardown_grace!r}"
            )
        self.address = address
        self.cluster = cluster
        self.cluster_options = dict(cluster_options or {})
        self.fetch_outputs = fetch_outputs
        self.check_pickle = check_pickle
        self.bridge = bridge
        self.connect_timeout = connect_timeout
        self.watchdog_interval = watchdog_interval
        self.watchdog_timeout = watchdog_timeout
        self.teardown_grace = teardown_grace

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> DaskExecutor:
        """The executor a run config's validated ``execution.dask`` section describes:
        ``{cluster: {existing: {address: ...}}}`` or ``{cluster: {local: {...}}}``."""
        cluster = section.get("cluster") or {}
        if "existing" in cluster:
            return cls(address=cluster["existing"]["address"])
        local = cluster.get("local") or {}
        return cls(cluster_options={k: v for k, v in local.items() if v is not None and v != {}})

    def open_launcher(self, run: RunScope) -> AbstractAsyncContextManager[StepLauncher]:
        """Connect for one run (creating a local cluster first when none was given).

        The engine enters this when the run starts and exits it when the run's
        steps have ended: every worker then tears the run's resources down (also
        after a failure or a cancel), and the client (and a cluster the run
        created) closes.
        """
        from ._launcher import open_launcher

        return open_launcher(self, run)

    def __repr__(self) -> str:
        if self.address is not None:
            where = f"address={self.address!r}"
        elif self.cluster is not None:
            where = f"cluster={self.cluster!r}"
        else:
            where = f"cluster_options={self.cluster_options!r}" if self.cluster_options else ""
        return f"DaskExecutor({where})"
