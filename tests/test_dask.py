"""Runs on a real Dask cluster (2 worker processes), on asyncio and trio.

What must hold: data moves worker to worker; sync solids run in worker
threads and async ones on an event loop in the worker, with a working
``context``; logs arrive live and in order; resources are set up once per
worker per run and torn down at the end, also on failure and cancellation;
the trace context reaches the worker; cancelling leaves nothing running on
the cluster; a solid can ask for worker resources or be pinned to the driver.
Faults (a killed worker, a scheduler gone) are in test_dask_faults.py.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import (
    DaskExecutor,
    DefinitionError,
    DynamicOut,
    DynamicOutput,
    EventType,
    Out,
    RunStatus,
    StepStatus,
    StepTimeoutError,
    execute_pipeline_async,
    open_run,
    pipeline,
    resource,
    solid,
)
from asyncdag.dask import NoWorkerForResources, OutputNotPicklable
from dask_support import executing, wait_until_idle

pytest.importorskip("distributed")

pytestmark = pytest.mark.anyio

DRIVER_PID = os.getpid()


@pytest.fixture
def executor(dask_cluster: Any) -> DaskExecutor:
    return DaskExecutor(cluster=dask_cluster)


def logs(result: Any, step_key: str | None = None) -> list[str]:
    return [
        e.message
        for e in result.events
        if e.type is EventType.LOG and (step_key is None or e.step_key == step_key)
    ]


class DriverOnly:
    """A value that refuses to be unpickled in the driver's process: if it ever travels
    through the driver, the run fails."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __reduce__(self) -> Any:
        return (_rebuild_driver_only, (self.n, DRIVER_PID))


def _rebuild_driver_only(n: int, driver_pid: int) -> DriverOnly:
    if os.getpid() == driver_pid:
        raise RuntimeError("an intermediate value was brought to the driver")
    return DriverOnly(n)


async def test_outputs_move_from_worker_to_worker_never_through_the_driver(
    dask_cluster: Any,
) -> None:
    @solid(outs={"big": Out(), "small": Out()})
    def make() -> tuple[DriverOnly, int]:
        return DriverOnly(20), 1

    @solid
    def grow(big: DriverOnly, small: int) -> DriverOnly:
        return DriverOnly(big.n + small)

    @solid
    def read(value: DriverOnly) -> int:
        return value.n + 1

    @pipeline
    def p() -> None:
        big, small = make()
        read(grow(big, small))

    executor = DaskExecutor(cluster=dask_cluster, fetch_outputs=False)
    result = await execute_pipeline_async(p, executor=executor)
    assert result.success
    # Nothing was fetched: the outputs are still handles to values that lived on workers.
    assert "on the Dask cluster" in repr(result.output_for_solid("read"))


async def test_run_config_can_name_the_cluster_instead_of_executor(dask_cluster: Any) -> None:
    @solid
    def where() -> int:
        return os.getpid()

    @pipeline
    def p() -> None:
        where()

    address = dask_cluster.scheduler_address
    config = {"execution": {"dask": {"cluster": {"existing": {"address": address}}}}}
    result = await execute_pipeline_async(p, config)
    assert result.output_for_solid("where") != DRIVER_PID
    assert f"Running steps on Dask at {address}" in logs(result)


async def test_outputs_are_fetched_when_the_run_ends(executor: DaskExecutor) -> None:
    @solid(outs={"low": Out(), "high": Out()})
    def split() -> tuple[int, int]:
        return 1, 10

    @solid
    def add(a: int, b: int) -> int:
        return a + b

    @pipeline
    def p() -> None:
        low, high = split()
        add(low, high)

    result = await execute_pipeline_async(p, executor=executor)
    assert result.output_for_solid("add") == 11
    assert result.output_for_solid("split", "high") == 10


async def test_sync_solids_run_in_worker_threads_async_ones_on_a_loop_of_the_drivers_backend(
    executor: DaskExecutor, anyio_backend: str
) -> None:
    @solid
    def in_thread() -> dict[str, Any]:
        return {"pid": os.getpid(), "thread": threading.current_thread().name}

    @solid
    async def on_loop() -> dict[str, Any]:
        await anyio.sleep(0)
        import sniffio

        return {"pid": os.getpid(), "library": sniffio.current_async_library()}

    @pipeline
    def p() -> None:
        in_thread()
        on_loop()

    result = await execute_pipeline_async(p, executor=executor)
    sync, async_ = result.output_for_solid("in_thread"), result.output_for_solid("on_loop")
    assert sync["pid"] != DRIVER_PID and "Dask" in sync["thread"]
    assert async_["pid"] != DRIVER_PID and async_["library"] == anyio_backend


async def test_the_context_works_on_the_worker(executor: DaskExecutor) -> None:
    @resource
    def db(init_context: Any) -> str:
        return f"db-{init_context.resource_config['name']}"

    @solid(outs={"keys": DynamicOut()})
    def keys() -> Any:
        yield DynamicOutput("a", mapping_key="a")

    @solid(config_schema={"n": int}, required_resources={"db"})
    def look(context: Any, item: str) -> dict[str, Any]:
        context.log.info(f"looking at {item}")
        return {
            "run_id": context.run_id,
            "config": context.solid_config,
            "db": context.resources.db,
            "retry_number": context.retry_number,
            "mapping_key": context.mapping_key,
            "step_key": context.step_key,
            "cancel": context.is_cancel_requested,
        }

    @solid
    def first(values: list[dict[str, Any]]) -> dict[str, Any]:
        return values[0]

    @pipeline(resources={"db": db})
    def p() -> None:
        first(keys().map(look).collect())

    config = {
        "solids": {"look": {"config": {"n": 3}}},
        "resources": {"db": {"config": {"name": "x"}}},
    }
    result = await execute_pipeline_async(p, config, executor=executor)
    assert result.output_for_solid("first") == {
        "run_id": result.run_id,
        "config": {"n": 3},
        "db": "db-x",
        "retry_number": 0,
        "mapping_key": "a",
        "step_key": "look[a]",
        "cancel": False,
    }
    (log,) = [e for e in result.events if e.type is EventType.LOG and e.step_key == "look[a]"]
    assert log.message == "looking at a" and log.data["attempt"] == 1


async def test_logs_arrive_while_the_step_runs(executor: DaskExecutor, tmp_path: Path) -> None:
    """The solid waits for a file the driver writes when it sees the solid's first log
    line: the run can only end if that line arrived while the solid was running."""
    go = str(tmp_path / "go")

    @solid
    def waits(context: Any) -> bool:
        from dask_support import wait_for_file

        context.log.info("waiting")
        return wait_for_file(go)

    @pipeline
    def p() -> None:
        waits()

    def on_event(event: Any) -> None:
        if event.type is EventType.LOG and event.message == "waiting":
            Path(go).touch()

    result = await execute_pipeline_async(p, executor=executor, listeners=[on_event])
    assert result.output_for_solid("waits") is True


@pytest.mark.parametrize("bridge", ["auto", "thread"])
async def test_logs_arrive_in_order_and_complete_before_the_step_ends(
    dask_cluster: Any, bridge: str
) -> None:
    """Under asyncio, "auto" keeps Dask's client on the driver's loop and "thread" gives it
    a thread of its own (trio always does): the order holds either way."""
    executor = DaskExecutor(cluster=dask_cluster, bridge=bridge)

    @solid
    def chatty(context: Any) -> None:
        for i in range(200):
            context.log.info(f"line {i}")

    @solid
    async def chatty_async(context: Any) -> None:
        for i in range(50):
            context.log.warning(f"async {i}")
            await anyio.sleep(0)

    @pipeline
    def p() -> None:
        chatty()
        chatty_async()

    result = await execute_pipeline_async(p, executor=executor)
    assert logs(result, "chatty") == [f"line {i}" for i in range(200)]
    assert logs(result, "chatty_async") == [f"async {i}" for i in range(50)]
    for key in ("chatty", "chatty_async"):
        seqs = [e.type for e in result.events if e.step_key == key]
        assert seqs[0] is EventType.STEP_START and seqs[-1] is EventType.STEP_SUCCESS


async def test_an_unpicklable_output_fails_its_step_naming_step_output_and_type(
    executor: DaskExecutor,
) -> None:
    @solid(outs={"ok": Out(), "bad": Out()})
    def leaky() -> tuple[int, Any]:
        return 1, threading.Lock()

    @pipeline
    def p() -> None:
        leaky()

    result = await execute_pipeline_async(p, executor=executor, raise_on_error=False)
    error = result.exception_for_step("leaky")
    assert isinstance(error, OutputNotPicklable)
    assert "step 'leaky'" in str(error) and "output 'bad'" in str(error)
    assert "_thread.lock" in str(error)


async def test_a_solid_that_cannot_be_pickled_fails_at_submit_saying_why(
    executor: DaskExecutor,
) -> None:
    lock = threading.Lock()

    @solid
    def holds_a_lock() -> bool:
        return lock.locked()

    @pipeline
    def p() -> None:
        holds_a_lock()

    result = await execute_pipeline_async(p, executor=executor, raise_on_error=False)
    error = result.exception_for_step("holds_a_lock")
    assert isinstance(error, DefinitionError)
    assert "cannot be sent to the Dask cluster" in str(error)
    assert "executor='local'" in str(error)


async def test_a_solid_error_and_its_retry_come_back_as_the_solids_own(
    executor: DaskExecutor,
) -> None:
    from asyncdag import RetryPolicy

    @solid(retry_policy=RetryPolicy(max_retries=1))
    def flaky(context: Any) -> int:
        if context.retry_number == 0:
            raise ConnectionError("try again")
        return context.retry_number

    @solid
    def broken() -> None:
        raise ValueError("boom on the worker")

    @pipeline
    def p() -> None:
        flaky()
        broken()

    result = await execute_pipeline_async(p, executor=executor, raise_on_error=False)
    assert result.output_for_solid("flaky") == 1
    assert result.step_result("flaky").attempts == 2
    error = result.exception_for_step("broken")
    assert isinstance(error, ValueError) and str(error) == "boom on the worker"


async def test_resources_are_set_up_once_per_worker_and_torn_down_when_the_run_ends(
    executor: DaskExecutor,
) -> None:
    @resource
    def counter(init_context: Any) -> Any:
        box = {"pid": os.getpid(), "uses": 0}
        yield box

    @resource
    async def conn(init_context: Any) -> Any:
        import sniffio

        yield {"library": sniffio.current_async_library(), "lock": anyio.Lock()}

    @solid(required_resources={"counter", "conn"})
    async def use(context: Any, i: int) -> tuple[int, int]:
        box = context.resources.counter
        box["uses"] += 1
        async with context.resources.conn["lock"]:  # bound to the loop that made it
            await anyio.sleep(0)
        return box["pid"], id(box)

    @pipeline(resources={"counter": counter, "conn": conn})
    def p() -> None:
        for i in range(8):
            use.alias(f"use{i}")(i)

    result = await execute_pipeline_async(p, executor=executor)
    owners: dict[int, set[int]] = {}
    for i in range(8):
        pid, box = result.output_for_solid(f"use{i}")
        owners.setdefault(pid, set()).add(box)
    assert all(len(boxes) == 1 for boxes in owners.values())  # one per worker process
    setups = [e for e in result.events if e.type is EventType.RESOURCE_INIT_SUCCESS]
    teardowns = [e for e in result.events if e.type is EventType.RESOURCE_TEARDOWN]
    assert len(setups) == 2 * len(owners)  # counter and conn, once on each worker used
    assert sorted((e.data["resource"], e.data["dask_worker"]) for e in teardowns) == sorted(
        (e.data["resource"], e.data["dask_worker"]) for e in setups
    )
    assert result.events.index(teardowns[-1]) < len(result.events) - 1  # before the run's end


@pytest.mark.parametrize("ending", ["failure", "cancel"])
async def test_resources_are_torn_down_when_the_run_fails_or_is_cancelled(
    executor: DaskExecutor, ending: str
) -> None:
    @resource
    def counter(init_context: Any) -> Any:
        yield {"uses": 0}

    @solid(required_resources={"counter"})
    def use(context: Any) -> int:
        context.log.info("used")
        if ending == "failure":
            raise ValueError("fails")
        from dask_support import wait_for_file

        while not context.is_cancel_requested:
            wait_for_file("/nonexistent", timeout=0.01)
        return 1

    @pipeline(resources={"counter": counter})
    def p() -> None:
        use()

    async with open_run(p, executor=executor) as run:
        async for event in run.events():
            if ending == "cancel" and event.type is EventType.LOG and event.message == "used":
                run.cancel()
    result = await run.result()
    assert result.status is (RunStatus.FAILURE if ending == "failure" else RunStatus.CANCELED)
    kinds = [e.type for e in result.events]
    assert kinds.count(EventType.RESOURCE_INIT_SUCCESS) == 1
    assert kinds.count(EventType.RESOURCE_TEARDOWN) == 1


async def test_the_step_span_context_reaches_the_worker_and_worker_spans_nest_under_it(
    executor: DaskExecutor, dask_client: Any
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from dask_worker_spans import install_exporter, worker_spans

    await anyio.to_thread.run_sync(dask_client.run, install_exporter)

    @solid
    def traced_sync() -> None:
        from opentelemetry import trace

        with trace.get_tracer("user").start_as_current_span("inner sync"):
            pass

    @solid
    async def traced_async() -> None:
        from opentelemetry import trace

        with trace.get_tracer("user").start_as_current_span("inner async"):
            await anyio.sleep(0)

    @pipeline
    def p() -> None:
        traced_sync()
        traced_async()

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    result = await execute_pipeline_async(p, executor=executor, tracer_provider=provider)
    driver = {s.attributes.get("asyncdag.step_key"): s for s in exporter.get_finished_spans()}
    spans = [
        s
        for found in (await anyio.to_thread.run_sync(dask_client.run, worker_spans)).values()
        for s in found
    ]
    for key, inner in (("traced_sync", "inner sync"), ("traced_async", "inner async")):
        step = driver[key].get_span_context()
        worker = next(s for s in spans if s["name"] == f"dask {key}")
        assert worker["trace_id"] == step.trace_id == int(result.trace_id, 16)
        assert worker["parent"] == step.span_id
        user = next(s for s in spans if s["name"] == inner and s["trace_id"] == step.trace_id)
        assert user["parent"] == worker["span_id"]


async def test_cancelling_the_run_leaves_nothing_running_on_the_cluster(
    executor: DaskExecutor, dask_client: Any
) -> None:
    @solid
    def cooperative(context: Any) -> str:
        context.log.info("started")
        from dask_support import wait_for_file

        while not context.is_cancel_requested:
            if wait_for_file("/nonexistent", timeout=0.01):
                break
        return "stopped"

    @solid
    async def sleeper(context: Any) -> None:
        context.log.info("started")
        await anyio.sleep(3600)

    @solid
    def never(a: Any, b: Any) -> None:
        raise AssertionError("runs after its inputs were cancelled")

    @pipeline
    def p() -> None:
        never(cooperative(), sleeper())

    started = 0
    async with open_run(p, executor=executor) as run:
        async for event in run.events():
            if event.type is EventType.LOG and event.message == "started":
                started += 1
                if started == 2:
                    run.cancel()
    result = await run.result()
    assert result.status is RunStatus.CANCELED
    assert {k: s.status for k, s in result.step_results.items()} == {
        "cooperative": StepStatus.CANCELED,
        "sleeper": StepStatus.CANCELED,
        "never": StepStatus.CANCELED,
    }
    keys, counts = await anyio.to_thread.run_sync(wait_until_idle, dask_client, result.run_id)
    assert keys == [] and set(counts.values()) == {0}


async def test_a_timed_out_async_step_is_cancelled_on_its_worker(
    executor: DaskExecutor, dask_client: Any
) -> None:
    @solid(timeout=0.5)
    async def slow() -> None:
        await anyio.sleep(3600)

    @pipeline
    def p() -> None:
        slow()

    result = await execute_pipeline_async(p, executor=executor, raise_on_error=False)
    assert isinstance(result.exception_for_step("slow"), StepTimeoutError)
    keys, counts = await anyio.to_thread.run_sync(wait_until_idle, dask_client, result.run_id)
    assert keys == [] and set(counts.values()) == {0}


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_timed_out_step_stops_on_its_worker_while_the_run_goes_on(
    executor: DaskExecutor, dask_client: Any, tmp_path: Path, kind: str
) -> None:
    """Not only at the run's end: the worker is told as soon as the attempt is cancelled."""
    go = str(tmp_path / "go")

    if kind == "sync":

        @solid(name="slow", timeout=0.5)
        def slow(context: Any) -> None:
            from dask_support import wait_for_file

            while not context.is_cancel_requested:
                wait_for_file("/nonexistent", timeout=0.01)

    else:

        @solid(name="slow", timeout=0.5)
        async def slow(context: Any) -> None:  # type: ignore[misc]
            await anyio.sleep(3600)

    @solid
    def still_going() -> bool:
        from dask_support import wait_for_file

        return wait_for_file(go)

    @pipeline
    def p() -> None:
        slow()
        still_going()

    seen: list[dict[str, int]] = []
    async with open_run(p, executor=executor) as run:
        async for event in run.events():
            if event.type is EventType.STEP_FAILURE and event.step_key == "slow":

                def one_left() -> None:
                    for _ in range(400):
                        counts = executing(dask_client)
                        if sum(counts.values()) == 1:  # still_going's, alone
                            break
                        time.sleep(0.05)
                    seen.append(counts)

                await anyio.to_thread.run_sync(one_left)
                Path(go).touch()
    result = await run.result()
    assert sum(seen[0].values()) == 1
    assert result.output_for_solid("still_going") is True


async def test_a_solid_gets_the_worker_resources_it_asks_for_or_fails_fast(
    executor: DaskExecutor,
) -> None:
    @solid(tags={"dask/resources": {"GPU": 1}})
    def on_gpu() -> int:
        return os.getpid()

    @solid(tags={"dask/resources": {"TPU": 1}})
    def on_tpu() -> int:
        return os.getpid()

    @pipeline
    def p() -> None:
        on_gpu()
        on_tpu()

    result = await execute_pipeline_async(p, executor=executor, raise_on_error=False)
    assert result.output_for_solid("on_gpu") != DRIVER_PID
    error = result.exception_for_step("on_tpu")
    assert isinstance(error, NoWorkerForResources)
    assert "{'TPU': 1}" in str(error) and "step 'on_tpu'" in str(error)


async def test_a_solid_pinned_to_the_driver_runs_here_on_values_from_the_cluster(
    executor: DaskExecutor,
) -> None:
    @resource
    def local_only(init_context: Any) -> int:
        return os.getpid()

    @solid(outs={"items": DynamicOut()})
    def produce() -> Any:
        for i in range(3):
            yield DynamicOutput(i, mapping_key=f"k{i}")

    @solid
    def square(x: int) -> tuple[int, int]:
        return x * x, os.getpid()

    @solid(executor="local", required_resources={"local_only"})
    def here(context: Any, pairs: list[tuple[int, int]]) -> tuple[list[int], int, int]:
        return [v for v, _ in pairs], os.getpid(), context.resources.local_only

    @solid
    def after(summary: tuple[list[int], int, int]) -> int:
        return sum(summary[0])

    @pipeline(resources={"local_only": local_only})
    def p() -> None:
        after(here(produce().map(square).collect()))

    result = await execute_pipeline_async(p, executor=executor)
    values, pid, resource_pid = result.output_for_solid("here")
    assert values == [0, 1, 4] and pid == resource_pid == DRIVER_PID
    assert result.output_for_solid("after") == 5
    assert result.output_for_solid("square[k2]")[1] != DRIVER_PID


async def test_fan_out_items_stay_remote_and_mapped_steps_start_while_the_generator_runs(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    """The generator waits, after its first item, for a file the first mapped step
    writes: the run can only end if that step ran while the generator was running."""
    go = str(tmp_path / "go")

    @solid(outs={"items": DynamicOut(), "count": Out(is_required=False)})
    def produce() -> Any:
        from dask_support import wait_for_file

        yield DynamicOutput(DriverOnly(0), mapping_key="first")
        if not wait_for_file(go):
            raise TimeoutError("the first mapped step never ran")
        yield DynamicOutput(DriverOnly(1), mapping_key="second")

    @solid
    def mark(item: DriverOnly) -> int:
        if item.n == 0:
            Path(go).touch()
        return item.n

    @solid
    def total(values: list[int]) -> int:
        return sum(values)

    @solid
    def never(count: int) -> None:
        raise AssertionError("the optional output was not produced")

    @pipeline
    def p() -> None:
        items, count = produce()
        total(items.map(mark).collect())
        never(count)

    result = await execute_pipeline_async(p, executor=executor)
    assert result.output_for_solid("total") == 1
    assert result.step_result("never").status is StepStatus.SKIPPED
    assert result.step_result("mark[first]").status is StepStatus.SUCCESS


async def test_resources_given_to_the_run_go_to_the_workers_when_they_pickle(
    executor: DaskExecutor,
) -> None:
    @solid(required_resources={"settings"})
    def read(context: Any) -> str:
        return str(context.resources.settings["name"])

    @pipeline
    def p() -> None:
        read()

    result = await execute_pipeline_async(
        p, executor=executor, resources={"settings": {"name": "given"}}
    )
    assert result.output_for_solid("read") == "given"
    failed = await execute_pipeline_async(
        p, executor=executor, resources={"settings": threading.Lock()}, raise_on_error=False
    )
    error = failed.exception_for_step("read")
    assert isinstance(error, DefinitionError)
    assert "resource 'settings' was given to the run" in str(error)
    assert "executor='local'" in str(error)


async def test_a_run_on_dask_stores_the_values_and_reexecutes_from_its_failure(
    executor: DaskExecutor, tmp_path: Path
) -> None:
    """Outputs stay remote for the steps that read them, while the store gets the values
    behind them (items of a fan-out too); a re-execution from failure on Dask reads them back."""
    from asyncdag.outputs import FilesystemOutputStore, OutputKey
    from asyncdag.storage import InMemoryStorage

    flag = tmp_path / "fail"
    flag.touch()
    store = FilesystemOutputStore(tmp_path / "outputs")
    storage = InMemoryStorage()

    @solid(outs={"items": DynamicOut()})
    def produce() -> Any:
        for n in (1, 2):
            yield DynamicOutput(n * 10, mapping_key=f"k{n}")

    @solid
    def double(x: int) -> int:
        return 2 * x

    @solid
    def total(values: list[int]) -> int:
        if Path(flag).exists():
            raise RuntimeError("flag is up")
        return sum(values)

    @pipeline
    def p() -> None:
        total(produce().map(double).collect())

    failed = await execute_pipeline_async(
        p, executor=executor, output_store=store, storage=storage, raise_on_error=False
    )
    assert failed.step_result("total").status is StepStatus.FAILURE
    assert store.get(OutputKey(failed.run_id, "double[k2]", "result")) == 40
    assert store.get(OutputKey(failed.run_id, "produce", "items", mapping_key="k1")) == 10

    flag.unlink()
    again = await execute_pipeline_async(
        p,
        executor=executor,
        output_store=store,
        storage=storage,
        reexecute_from=failed.run_id,
        from_failure=True,
    )
    assert again.output_for_solid("total") == 60
    starts = {e.step_key for e in again.events if e.type is EventType.STEP_START}
    assert starts == {"total"}
