"""The step-launcher seam: another launcher plugs in and gets retries, timeouts, events for free.

The launchers here stand in for the ones to come: one that wraps the
in-process launcher (as a launcher pinning some solids locally would), one
that runs compute from plain, pickled context data (as a Dask worker would),
and one whose outputs stay handles of its own from step to step (as remote
futures would).
"""

from __future__ import annotations

import pickle
from collections.abc import Awaitable
from typing import Any

import attrs
import pytest

from asyncdag import (
    DynamicOut,
    DynamicOutput,
    EventType,
    Out,
    RetryPolicy,
    RunStatus,
    StepStatus,
    StepTimeoutError,
    pipeline,
    resource,
    solid,
)
from asyncdag._api._execute import execute_with_options
from asyncdag._api._options import RunOptions
from asyncdag._engine import (
    InProcessLauncher,
    RunScope,
    StepAttempt,
    context_from_data,
    outputs_from_value,
    sort_item,
)

pytestmark = pytest.mark.anyio


async def run_with(launcher: Any, p: Any, **options: Any) -> Any:
    return await execute_with_options(p, None, RunOptions(launcher=launcher, **options))


class Recording:
    """Hands every attempt to the in-process launcher, noting what it was given."""

    def __init__(self) -> None:
        self.inner = InProcessLauncher()
        self.seen: list[tuple[str, int, dict[str, Any]]] = []

    def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Awaitable[Any]:
        self.seen.append((attempt.step.key, attempt.number, dict(attempt.inputs)))
        return self.inner.run_attempt(run, attempt)


async def test_a_launcher_sees_each_attempt_with_its_number_and_inputs() -> None:
    calls = {"n": 0}

    @solid
    async def one() -> int:
        return 1

    @solid(retry_policy=RetryPolicy(max_retries=2))
    def flaky(x: int) -> int:
        calls["n"] += 1
        if calls["n"] < 2:
            raise ConnectionError("try again")
        return x + 1

    @pipeline
    def p() -> None:
        flaky(one())

    launcher = Recording()
    result = await run_with(launcher, p)
    assert result.output_for_solid("flaky") == 2
    assert launcher.seen == [("one", 1, {}), ("flaky", 1, {"x": 1}), ("flaky", 2, {"x": 1})]
    # The engine, not the launcher, retried and said so.
    types = [e.type for e in result.events if e.step_key == "flaky"]
    assert types == [
        EventType.STEP_START,
        EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_START,
        EventType.STEP_SUCCESS,
    ]


class Hangs:
    """A launcher whose compute never ends: the engine's timeout still applies."""

    async def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Any:
        import anyio

        await anyio.sleep_forever()


async def test_the_engine_applies_the_solids_timeout_whatever_the_launcher() -> None:
    @solid(timeout=0.01)
    async def quick() -> None:
        pass

    @pipeline
    def p() -> None:
        quick()

    result = await run_with(Hangs(), p, raise_on_error=False)
    step = result.step_result("quick")
    assert step.status is StepStatus.FAILURE
    assert result.exception_for_step("quick").__class__ is StepTimeoutError


class Remote:
    """Runs compute the way another process would: from pickled plain data only."""

    def __init__(self) -> None:
        self.logs: list[tuple[str | None, str]] = []

    async def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Any:
        step = attempt.step
        data = pickle.loads(pickle.dumps(run.context_data(attempt)))
        inputs = pickle.loads(pickle.dumps(dict(attempt.inputs)))

        def emit(type: EventType, /, **event: Any) -> None:  # a worker's log goes back
            self.logs.append((event.get("step_key"), event["message"]))
            run.emit(type, **event)

        context = context_from_data(data, emit=emit, resources={"db": "worker-db"})
        args = (context,) if step.solid.takes_context else ()
        if step.solid.is_generator:
            outputs: dict[str, Any] = {}
            for item in step.solid.fn(*args, **inputs):
                dynamic = sort_item(step.key, step.outs, item, outputs)  # type: ignore[arg-type]
                if dynamic is not None:
                    run.fan_out(attempt, *dynamic)
            return outputs
        return outputs_from_value(step.key, step.outs, step.solid.fn(*args, **inputs))


async def test_a_context_rebuilt_from_plain_data_is_the_one_a_solid_gets_in_process() -> None:
    seen: dict[str, dict[str, Any]] = {}

    @resource
    def db() -> str:
        return "driver-db"

    @solid(config_schema={"n": int}, required_resources={"db"})
    def look(context: Any) -> int:
        context.log.info("looking")
        seen[context.run_id] = {
            "pipeline_name": context.pipeline_name,
            "solid_name": context.solid_name,
            "step_key": context.step_key,
            "retry_number": context.retry_number,
            "solid_config": context.solid_config,
            "tags": context.tags,
            "run_config": context.run_config,
            "mapping_key": context.mapping_key,
            "resource_keys": sorted(context.resources.__dir__()),
        }
        return context.solid_config["n"]

    @pipeline(resources={"db": db}, tags={"team": "data"})
    def p() -> None:
        look()

    config = {"solids": {"look": {"config": {"n": 3}}}}
    local = await execute_with_options(p, config, RunOptions())
    remote_launcher = Remote()
    remote = await execute_with_options(p, config, RunOptions(launcher=remote_launcher))
    assert local.output_for_solid("look") == remote.output_for_solid("look") == 3
    assert seen[local.run_id] == seen[remote.run_id]
    assert remote_launcher.logs == [("look", "looking")]
    (log,) = [e for e in remote.events if e.type is EventType.LOG]
    assert log.step_key == "look" and log.data["attempt"] == 1


async def test_a_remote_launchers_dynamic_items_fan_out_on_the_driver() -> None:
    @solid(outs={"items": DynamicOut()})
    def produce() -> Any:
        for i in range(3):
            yield DynamicOutput(i, mapping_key=f"k{i}")

    @solid
    def double(x: int) -> int:
        return 2 * x

    @solid
    def total(xs: list[int]) -> int:
        return sum(xs)

    @pipeline
    def p() -> None:
        total(produce().map(double).collect())

    result = await run_with(Remote(), p)
    assert result.output_for_solid("total") == 6
    assert result.step_result("double[k2]").status is StepStatus.SUCCESS


@attrs.frozen
class Handle:
    """A value that lives elsewhere (a remote future, say)."""

    key: str


class KeepsHandles:
    """Outputs stay handles from step to step; only the launcher looks inside them."""

    def __init__(self) -> None:
        self.store: dict[str, Any] = {}

    async def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Any:
        step = attempt.step
        inputs = {
            name: self.store[value.key] if isinstance(value, Handle) else value
            for name, value in attempt.inputs.items()
        }
        value = outputs_from_value(step.key, step.outs, step.solid.fn(**inputs))
        if step.outs is None:
            self.store[step.key] = value
            return Handle(step.key)
        handles = {}
        for name, output in value.items():
            self.store[f"{step.key}.{name}"] = output
            handles[name] = Handle(f"{step.key}.{name}")
        return handles


async def test_outputs_may_stay_a_launchers_own_handles_between_steps() -> None:
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

    launcher = KeepsHandles()
    result = await run_with(launcher, p)
    assert result.status is RunStatus.SUCCESS
    assert result.output_for_solid("add") == Handle("add")
    assert launcher.store["add"] == 11


# --- executors: a launcher opened for the run ----------------------------------------------------


class Opened:
    """An executor whose launcher is the in-process one, noting when it opens and closes."""

    def __init__(self, *, fail_open: BaseException | None = None, block: bool = False) -> None:
        self.fail_open = fail_open
        self.block = block
        self.calls: list[str] = []

    def open_launcher(self, run: RunScope) -> Any:
        import contextlib

        import anyio

        @contextlib.asynccontextmanager
        async def opened() -> Any:
            self.calls.append("open")
            if self.block:
                await anyio.sleep_forever()
            if self.fail_open is not None:
                raise self.fail_open
            try:
                yield InProcessLauncher()
            finally:
                self.calls.append("close")

        return opened()


async def test_an_executor_is_opened_after_run_start_and_closed_before_the_run_ends() -> None:
    executor = Opened()
    seen: list[str] = []

    @solid
    def one() -> int:
        seen.append(f"step ran after {executor.calls}")
        return 1

    @pipeline
    def p() -> None:
        one()

    result = await execute_with_options(p, None, RunOptions(executor=executor))
    assert result.output_for_solid("one") == 1
    assert seen == ["step ran after ['open']"] and executor.calls == ["open", "close"]


async def test_an_executor_that_cannot_open_fails_the_run_with_its_error() -> None:
    executor = Opened(fail_open=ConnectionRefusedError("no cluster there"))

    @solid
    def one() -> int:
        raise AssertionError("ran without its executor")

    @pipeline
    def p() -> None:
        one()

    options = RunOptions(executor=executor)
    result = await execute_with_options(p, None, options)
    assert result.status is RunStatus.FAILURE
    assert isinstance(result.run_exception, ConnectionRefusedError)
    assert result.step_result("one").status is StepStatus.SKIPPED
    end = result.events[-1]
    assert end.type is EventType.RUN_FAILURE and "no cluster there" in end.message
    with pytest.raises(ConnectionRefusedError, match="no cluster there"):
        await execute_with_options(p, None, attrs.evolve(options, raise_on_error=True))


async def test_cancelling_a_run_while_its_executor_opens_ends_it_canceled() -> None:
    from asyncdag._api._run import run_with_options

    executor = Opened(block=True)

    @solid
    def one() -> int:
        return 1

    @pipeline
    def p() -> None:
        one()

    async with run_with_options(p, None, RunOptions(executor=executor)) as run:
        async for event in run.events():
            if event.type is EventType.RUN_START:
                run.cancel()
    result = await run.result()
    assert result.status is RunStatus.CANCELED
    assert result.step_result("one").status is StepStatus.CANCELED


async def test_a_launcher_can_take_the_run_resources_off_steps_it_runs_elsewhere() -> None:
    set_up: list[str] = []

    @resource
    def db() -> str:
        set_up.append("db")
        return "driver-db"

    class Elsewhere(Recording):
        def uses_run_resources(self, step: Any) -> bool:
            return step.key == "here"

    @solid(required_resources={"db"})
    def remote(context: Any) -> bool:
        return "db" in context.resources

    @solid(required_resources={"db"})
    def here(context: Any) -> str:
        return context.resources.db  # type: ignore[no-any-return]

    @pipeline(resources={"db": db})
    def only_remote() -> None:
        remote()

    @pipeline(resources={"db": db})
    def both() -> None:
        here.after(remote())()

    await run_with(Elsewhere(), only_remote)
    assert set_up == []  # the launcher sets it up where it runs the step
    result = await run_with(Elsewhere(), both)
    assert result.output_for_solid("here") == "driver-db" and set_up == ["db"]
