"""One run's connection to a Dask cluster, on the client's asyncio loop.

It connects (creating a ``LocalCluster`` first when the executor was given
no cluster), installs the scheduler plugin that keeps Dask from re-running
the run's tasks behind the engine's back, subscribes to the run's event
topic, watches the scheduler, submits each attempt and waits for it, and at
the end tears the run down on every worker and disconnects.

Everything here runs on the client's loop (:class:`~._bridge.ClientHost`
calls into it) and talks to Dask only; the engine's side of a run is
:mod:`._launcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import NoWorkerForResources, SchedulerUnreachable, WorkerLost
from ._protocol import AttemptPayload

if TYPE_CHECKING:
    from ._executor import DaskExecutor

__all__ = ["DaskSession"]

# Bounds on the calls the end of a run makes, so a dying cluster cannot hang it.
_CANCEL_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 10.0
_CLUSTER_CLOSE_TIMEOUT = 30.0


class DaskSession:
    """The client side of one run on one cluster."""

    def __init__(
        self,
        executor: DaskExecutor,
        run_id: str,
        on_message: Callable[[dict[str, Any]], None],
    ) -> None:
        self.executor = executor
        self.run_id = run_id
        self.prefix = f"asyncdag-{run_id}-"
        self.topic = f"asyncdag-{run_id}"
        self.client: Any = None
        self.address: str | None = None
        self.own_cluster: Any = None
        self._on_message = on_message
        self._broken: BaseException | None = None
        self._broken_event: asyncio.Event | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._worker_resources: list[Mapping[str, float]] | None = None

    # --- the run's start and end ----------------------------------------------------------------

    async def start(self) -> None:
        from distributed import Client

        from ._plugin import NoTransparentRerun

        self._broken_event = asyncio.Event()
        executor = self.executor
        address = executor.address
        if address is None and executor.cluster is not None:
            address = executor.cluster.scheduler_address
        if address is None:
            address = await self._start_local_cluster()
        self.address = address
        try:
            self.client = await Client(
                address,
                asynchronous=True,
                timeout=executor.connect_timeout,
                set_as_default=False,
            )
        except (OSError, TimeoutError) as exc:
            raise SchedulerUnreachable(
                f"could not connect to the Dask scheduler at {address} within "
                f"{executor.connect_timeout:g}s ({type(exc).__name__}: {exc}); check the address "
                "and that the scheduler is running"
            ) from exc
        # Scoped to this run's keys: other clients of the cluster keep Dask's own behaviour.
        await self.client.register_plugin(NoTransparentRerun(self.prefix))
        self.client.subscribe_topic(self.topic, self._on_event)
        self._watchdog = asyncio.ensure_future(self._watch())

    async def _start_local_cluster(self) -> str:
        from distributed import LocalCluster

        options = {
            "processes": True,
            "dashboard_address": ":0",
            # Every failing step would print a "Compute Failed" traceback from its worker;
            # the run's own events already say what failed.
            "silence_logs": logging.CRITICAL,
            **self.executor.cluster_options,
        }
        try:
            # allowed_failures=0: a worker dying under a task fails it; the engine retries.
            self.own_cluster = LocalCluster(
                asynchronous=True, scheduler_kwargs={"allowed_failures": 0}, **options
            )
            await self.own_cluster
        except Exception as exc:
            raise RuntimeError(
                f"could not start a local Dask cluster ({type(exc).__name__}: {exc}); a "
                "script that runs a pipeline on DaskExecutor() must start it under "
                "`if __name__ == '__main__':`, since each worker process imports the script"
            ) from exc
        return str(self.own_cluster.scheduler_address)

    async def workers(self) -> dict[str, Any]:
        """The workers the scheduler knows now, by address."""
        identity = await self.client.scheduler.identity(n_workers=-1)
        return dict(identity["workers"])

    async def stop(self, grace: float) -> dict[str, Any]:
        """Tear the run down on every worker (``{address: report}``), then disconnect."""
        from ._worker import teardown_run

        if self._watchdog is not None:
            self._watchdog.cancel()
        client = self.client
        reports: dict[str, Any] = {}
        try:
            if client is not None and self._broken is None and client.status == "running":
                teardown = asyncio.wait_for(
                    client.run(teardown_run, self.run_id, grace, on_error="return"),
                    grace + _CLOSE_TIMEOUT,
                )
                outcome: tuple[Any, ...] = await asyncio.gather(
                    teardown, self._forget(client), return_exceptions=True
                )
                reports = outcome[0] if isinstance(outcome[0], dict) else {}
        finally:
            if client is not None:
                # A frozen scheduler would hold a polite close for its whole timeout.
                timeout = 1.0 if self._broken is not None else _CLOSE_TIMEOUT
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(timeout=timeout), timeout + 1)
            if self.own_cluster is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.own_cluster.close(), _CLUSTER_CLOSE_TIMEOUT)
        return reports

    async def _forget(self, client: Any) -> None:
        """Leave nothing of the run on a cluster that outlives it."""
        topic = self.topic

        def truncate(dask_scheduler: Any = None) -> None:
            # Private, but the only way found: the scheduler keeps 1000 events per topic.
            dask_scheduler._broker.truncate(topic)

        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)
        await asyncio.gather(
            asyncio.wait_for(client.run_on_scheduler(truncate), _CLOSE_TIMEOUT),
            asyncio.wait_for(
                client.unregister_scheduler_plugin(f"asyncdag-no-rerun-{self.prefix}"),
                _CLOSE_TIMEOUT,
            ),
            return_exceptions=True,
        )

    # --- watching the scheduler -----------------------------------------------------------------

    async def _watch(self) -> None:
        """A frozen scheduler (its TCP connection open, no answers) makes every client call
        wait forever: ask it something cheap now and then, and fail the run's waiting
        attempts when it does not answer in time."""
        executor = self.executor
        while True:
            await asyncio.sleep(executor.watchdog_interval)
            try:
                await asyncio.wait_for(
                    self.client.scheduler.identity(n_workers=0), executor.watchdog_timeout
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._set_broken(
                    SchedulerUnreachable(
                        f"the Dask scheduler at {self.address} did not answer within "
                        f"{executor.watchdog_timeout:g}s ({type(exc).__name__}: {exc}); the "
                        "run cannot go on there"
                    )
                )
                return

    def _set_broken(self, exc: BaseException) -> None:
        if self._broken is None:
            self._broken = exc
            assert self._broken_event is not None
            self._broken_event.set()

    def _check(self) -> None:
        if self._broken is not None:
            raise self._broken
        if self.client.status not in ("running", "connecting"):
            raise SchedulerUnreachable(
                f"the connection to the Dask scheduler at {self.address} is "
                f"{self.client.status}; the run cannot go on there"
            )

    # --- worker events ----------------------------------------------------------------------

    def _on_event(self, event: tuple[float, Any]) -> None:
        """A message from a worker, on the client's loop.  A dynamic item becomes a future
        here, at once, pinned to the worker that keeps it."""
        message = event[1]
        if not isinstance(message, dict):
            return
        if message.get("k") == "item":
            from ._worker import take_item

            message["future"] = self.client.submit(
                take_item,
                self.run_id,
                message["item"],
                key=f"{self.prefix}item-{message['item']}",
                workers=[message["worker"]],
                allow_other_workers=False,
                pure=False,
                retries=0,
            )
        self._on_message(message)

    # --- attempts -------------------------------------------------------------------------------

    async def attempt(
        self,
        payload: AttemptPayload,
        upstream: list[Any],
        resources: Mapping[str, float] | None,
    ) -> Any:
        """Submit one attempt and wait for it to end without fetching its outputs.

        Returns its future (finished); raises what the solid raised, or
        :class:`WorkerLost` / :class:`SchedulerUnreachable`.  Cancelled (the
        run's cancel, the solid's timeout), it cancels the task on the
        cluster and tells the worker, before the cancellation goes on.
        """
        from ._worker import run_attempt

        self._check()
        if resources:
            await self._check_resources(payload, resources)
        future = self.client.submit(
            run_attempt,
            payload,
            *upstream,
            key=payload.key,
            pure=False,
            retries=0,
            resources=dict(resources) if resources else None,
        )
        try:
            await self._wait(future)
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CANCEL_TIMEOUT):
                await self.cancel(future, payload.key)
            raise
        return await self._outcome(future, payload)

    async def _wait(self, future: Any) -> None:
        """Until ``future`` is done or the scheduler stopped answering; fetches nothing."""
        from distributed.client import FuturesCancelledError, _wait

        async def done() -> None:
            # distributed.wait() needs a default client; the function behind it does not.
            with contextlib.suppress(FuturesCancelledError):
                await _wait([future])

        assert self._broken_event is not None
        waiter = asyncio.ensure_future(done())
        broken = asyncio.ensure_future(self._broken_event.wait())
        try:
            await asyncio.wait({waiter, broken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            broken.cancel()

    async def _outcome(self, future: Any, payload: AttemptPayload) -> Any:
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        status = future.status
        if status == "finished":
            return future
        if status not in ("error", "cancelled"):
            assert self._broken is not None
            raise self._broken
        try:
            await future
        except KilledWorker:
            raise WorkerLost(
                f"{payload.describe()}: its Dask worker died while running it (killed, "
                "crashed or out of memory); Dask did not run it again, the solid's "
                "RetryPolicy decides (retry_on=WorkerLost)"
            ) from None
        except FutureCancelledError as exc:
            if self._broken is not None:
                raise self._broken from None
            if "scheduler-connection-lost" in str(exc):
                raise SchedulerUnreachable(
                    f"{payload.describe()}: lost the connection to the Dask scheduler at "
                    f"{self.address} while it ran"
                ) from None
            raise RuntimeError(
                f"{payload.describe()}: its Dask task was cancelled from outside the run ({exc})"
            ) from None
        raise AssertionError(f"Dask future {future.key!r} is {status} but raised nothing")

    async def cancel(self, future: Any, key: str) -> None:
        """Cancel the attempt's task and tell its worker: a sync solid sees
        ``context.is_cancel_requested``, an async one is cancelled on the run's loop."""
        from ._worker import request_cancel

        if self._broken is not None or self.client.status != "running":
            return
        with contextlib.suppress(Exception):
            await self.client.cancel([future], force=True)
        with contextlib.suppress(Exception):
            await self.client.run(request_cancel, self.run_id, key, on_error="ignore")

    async def stop_attempt(self, key: str) -> None:
        """Tell the worker running attempt ``key`` to stop (its fan-out failed on the driver)."""
        from ._worker import request_cancel

        with contextlib.suppress(Exception):
            await self.client.run(request_cancel, self.run_id, key, on_error="ignore")

    async def _check_resources(self, payload: AttemptPayload, wanted: Mapping[str, float]) -> None:
        """Fail at once when no worker offers what a solid asks for: Dask would keep the
        task waiting for such a worker forever."""

        def offered(known: list[Mapping[str, float]]) -> bool:
            return any(all(r.get(k, 0) >= v for k, v in wanted.items()) for r in known)

        if self._worker_resources is None or not offered(self._worker_resources):
            workers = await self.workers()
            self._worker_resources = [w.get("resources") or {} for w in workers.values()]
        if not offered(self._worker_resources):
            raise NoWorkerForResources(
                f"{payload.describe()} asks for Dask worker resources {dict(wanted)} (tag "
                f"'dask/resources'), but no worker of the cluster at {self.address} offers them "
                f"(workers offer {self._worker_resources or 'nothing'}); start workers with "
                "--resources, or change the tag"
            )

    # --- values ---------------------------------------------------------------------------------

    async def output_names(self, future: Any) -> list[str]:
        """The outputs a finished attempt produced (when its worker's word did not arrive)."""
        names = self.client.submit(list, future, pure=False)
        return list(await names)

    async def gather(self, futures: list[Any]) -> list[Any]:
        """The values of ``futures`` (an exception in place of one that could not be had)."""
        self._check()
        assert self._broken_event is not None

        async def one(future: Any) -> Any:
            return await future

        results: asyncio.Future[list[Any]] = asyncio.gather(
            *(one(f) for f in futures), return_exceptions=True
        )
        broken: asyncio.Future[Any] = asyncio.ensure_future(self._broken_event.wait())
        try:
            await asyncio.wait({results, broken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            broken.cancel()
        if not results.done():
            results.cancel()
            assert self._broken is not None
            raise self._broken
        return list(results.result())

    async def pick(self, future: Any, name: str) -> Any:
        """One output of a multi-output attempt: only that value travels to the driver."""
        import operator

        part = self.client.submit(operator.getitem, future, name, pure=False)
        (value,) = await self.gather([part])
        if isinstance(value, BaseException):
            raise value
        return value
