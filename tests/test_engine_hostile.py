"""A bad solid fails only its own step: hostile solids, stuck threads, broken logs and listeners.

Every test runs on asyncio and trio.  Nothing here measures time: a stuck
solid waits on a threading.Event the test sets only at the end, and the
assertions are about states, events and their order.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import pytest

from asyncdag import (
    EventType,
    RunStatus,
    StepStatus,
    execute_pipeline,
    execute_pipeline_async,
    failure_hook,
    open_run,
    pipeline,
    solid,
)

pytestmark = pytest.mark.anyio

# A hang guard only: a broken engine fails the test instead of hanging CI.
HANG_GUARD = 60


def raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


def call_sys_exit() -> None:
    sys.exit(3)


def raise_generator_exit() -> None:
    raise GeneratorExit


def raise_base_exception() -> None:
    raise BaseException("a bare BaseException")


HOSTILE = {
    "KeyboardInterrupt": raise_keyboard_interrupt,
    "SystemExit": call_sys_exit,
    "GeneratorExit": raise_generator_exit,
    "BaseException": raise_base_exception,
}


def hostile_pipeline(raiser: Callable[[], None], *, sync: bool, seen: list[str]) -> Any:
    """``bad`` raises; ``after`` depends on it; ``independent`` does not."""
    if sync:

        @solid
        def bad() -> int:
            raiser()
            return 1

    else:

        @solid
        async def bad() -> int:  # type: ignore[misc]
            raiser()
            return 1

    @solid
    async def after(x: int) -> int:
        return x

    @solid
    async def independent() -> str:
        await anyio.sleep(0)
        return "fine"

    @failure_hook
    def note(context: Any) -> None:
        seen.append(type(context.error).__name__)

    @pipeline
    def p() -> None:
        after(bad.with_hooks({note})())
        independent()

    return p


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_a_solid_raising_a_base_exception_fails_its_step_and_the_run(
    kind: str, sync: bool
) -> None:
    seen: list[str] = []
    p = hostile_pipeline(HOSTILE[kind], sync=sync, seen=seen)
    with anyio.fail_after(HANG_GUARD):
        result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    bad = result.step_result("bad")
    assert bad.status is StepStatus.FAILURE
    assert bad.error is not None and bad.error.type == kind
    assert type(result.exception_for_step("bad")).__name__ == kind
    assert result.step_result("after").status is StepStatus.SKIPPED
    # Not fail-fast: the independent branch finished.
    assert result.step_result("independent").status is StepStatus.SUCCESS
    assert seen == [kind]  # the failure hook saw the step's own exception
    assert result.events[-1].type is EventType.RUN_FAILURE


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_raise_on_error_reraises_a_base_exception_itself_not_a_group(kind: str) -> None:
    p = hostile_pipeline(HOSTILE[kind], sync=False, seen=[])
    with anyio.fail_after(HANG_GUARD), pytest.raises(BaseException) as caught:
        await execute_pipeline_async(p)
    assert type(caught.value).__name__ == kind


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_execute_pipeline_returns_when_a_solid_calls_sys_exit(backend: str) -> None:
    p = hostile_pipeline(call_sys_exit, sync=True, seen=[])
    result = execute_pipeline(p, raise_on_error=False, backend=backend)
    assert result.status is RunStatus.FAILURE
    assert result.step_result("bad").error.type == "SystemExit"  # type: ignore[union-attr]


async def test_a_host_task_group_keeps_running_after_a_solid_raises_keyboard_interrupt() -> None:
    p = hostile_pipeline(raise_keyboard_interrupt, sync=False, seen=[])
    host_alive = anyio.Event()
    stop_host = anyio.Event()

    async def host_work() -> None:
        host_alive.set()
        await stop_host.wait()

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as host:
            host.start_soon(host_work)
            await host_alive.wait()
            async with open_run(p) as run:
                pass
            result = await run.result()
            # The host's other task was not cancelled by the run's failure.
            assert not host.cancel_scope.cancel_called
            stop_host.set()
    assert result.status is RunStatus.FAILURE


async def test_fail_fast_still_stops_the_run_on_a_base_exception() -> None:
    p = hostile_pipeline(raise_base_exception, sync=False, seen=[])
    with anyio.fail_after(HANG_GUARD):
        result = await execute_pipeline_async(p, fail_fast=True, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    assert result.step_result("bad").status is StepStatus.FAILURE
