"""A bad solid fails only its own step: hostile solids, stuck threads, broken logs and listeners.

Every test runs on asyncio and trio.  Nothing here measures time: a stuck
solid waits on a threading.Event the test sets only at the end, and the
assertions are about states, events and their order.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import pytest

from asyncdag import (
    Event,
    EventType,
    RunStatus,
    StepStatus,
    StepTimeoutError,
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


# --- a sync solid that never returns ---------------------------------------------------------


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The run waits this long for an abandoned thread before it ends without it."""
    from asyncdag._engine import _executor

    monkeypatch.setattr(_executor, "OUTLIVED_GRACE", 0.05)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets a stuck solid return; set only when the test is over."""
    event = threading.Event()
    yield event
    event.set()


def stuck_solid(release: threading.Event, returned: list[bool], **options: Any) -> Any:
    @solid(**options)
    def stuck() -> str:
        try:
            release.wait()
            return "too late"
        finally:
            returned.append(True)

    return stuck


async def test_a_timeout_ends_a_stuck_sync_solid_and_says_its_thread_was_abandoned(
    short_grace: None, release: threading.Event
) -> None:
    returned: list[bool] = []
    stuck = stuck_solid(release, returned, timeout=0.05)

    @solid
    async def independent() -> str:
        return "fine"

    @pipeline
    def p() -> None:
        stuck()
        independent()

    with anyio.fail_after(HANG_GUARD):
        result = await execute_pipeline_async(p, raise_on_error=False, max_concurrency=1)
    # The run ended while the solid was still blocked in its thread.
    assert returned == []
    step = result.step_result("stuck")
    assert step.status is StepStatus.FAILURE
    assert isinstance(result.exception_for_step("stuck"), StepTimeoutError)
    # Its thread held no slot once abandoned: the other step still ran (bound 1).
    assert result.step_result("independent").status is StepStatus.SUCCESS
    (failure,) = [e for e in result.events if e.type is EventType.STEP_FAILURE]
    assert failure.data is not None and failure.data["thread_abandoned"] is True
    assert failure.data["timeout"] is True
    (still,) = [e for e in result.events if e.type is EventType.LOG and e.step_key == "stuck"]
    assert still.data is not None and still.data["thread_abandoned"] is True
    assert still.seq > failure.seq
    assert result.events[-1].type is EventType.RUN_FAILURE


async def test_cancel_ends_a_run_whose_sync_solid_never_returns(
    short_grace: None, release: threading.Event
) -> None:
    returned: list[bool] = []
    started = anyio.Event()

    @solid
    def stuck() -> None:
        anyio.from_thread.run_sync(started.set)
        try:
            release.wait()
        finally:
            returned.append(True)

    @pipeline
    def p() -> None:
        stuck()

    with anyio.fail_after(HANG_GUARD):
        async with open_run(p) as run:
            await started.wait()
            run.cancel()
        result = await run.result()
    assert returned == []
    assert result.status is RunStatus.CANCELED
    assert result.step_result("stuck").status is StepStatus.CANCELED
    (canceled,) = [e for e in result.events if e.type is EventType.STEP_CANCELED]
    assert canceled.data is not None and canceled.data["thread_abandoned"] is True
    assert result.events[-1].type is EventType.RUN_CANCELED


async def test_a_retried_timeout_says_which_attempt_left_its_thread(
    short_grace: None, release: threading.Event
) -> None:
    from asyncdag import RetryPolicy

    returned: list[bool] = []
    stuck = stuck_solid(release, returned, timeout=0.05, retry_policy=RetryPolicy(max_retries=1))

    @pipeline
    def p() -> None:
        stuck()

    with anyio.fail_after(HANG_GUARD):
        result = await execute_pipeline_async(p, raise_on_error=False)
    retry, failure = [
        e for e in result.events if e.type in {EventType.STEP_UP_FOR_RETRY, EventType.STEP_FAILURE}
    ]
    assert retry.data is not None and retry.data["thread_abandoned"] is True
    assert retry.attempt == 1
    assert failure.data is not None and failure.data["thread_abandoned"] is True
    assert failure.attempt == 2


# --- context.log -------------------------------------------------------------------------------


async def test_a_log_call_that_cannot_be_formatted_is_reported_and_the_step_goes_on() -> None:
    @solid
    def chatty(context: Any) -> str:
        context.log.info("%s %s", 1)
        context.log.info("after %s", "it")
        return "done"

    @pipeline
    def p() -> None:
        chatty()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("chatty") == "done"
    broken, after = [e for e in result.events if e.type is EventType.LOG]
    assert "%s %s" in broken.message and "(1,)" in broken.message
    assert "TypeError" in broken.message
    assert broken.data is not None
    assert broken.data["log_error"]["msg"] == "'%s %s'"
    assert broken.data["log_error"]["args"] == ["1"]
    assert after.message == "after it"


async def test_a_message_whose_str_raises_is_reported_too() -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no str for you")

        def __repr__(self) -> str:
            raise ValueError("no repr either")

    @solid
    async def chatty(context: Any) -> str:
        context.log.warning(Unprintable())
        return "done"

    @pipeline
    def p() -> None:
        chatty()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("chatty") == "done"
    (log,) = [e for e in result.events if e.type is EventType.LOG]
    assert "ValueError" in log.message


# --- listeners ---------------------------------------------------------------------------------


@solid
async def one() -> int:
    return 1


@solid
def two(x: int) -> int:
    return x + 1


@pipeline
def two_steps() -> None:
    two(one())


def failing_listener(exc: BaseException) -> Callable[[Event], None]:
    def listener(event: Event) -> None:
        raise exc

    return listener


@pytest.mark.parametrize(
    "exc",
    [
        BrokenPipeError(32, "Broken pipe"),
        RuntimeError("a listener bug"),
        KeyboardInterrupt(),
        SystemExit(1),
        BaseException("bare"),
    ],
    ids=lambda exc: type(exc).__name__,
)
async def test_a_listener_that_raises_never_changes_the_runs_outcome(exc: BaseException) -> None:
    seen: list[EventType] = []
    with anyio.fail_after(HANG_GUARD):
        result = await execute_pipeline_async(
            two_steps, listeners=[failing_listener(exc), lambda event: seen.append(event.type)]
        )
    assert result.status is RunStatus.SUCCESS
    assert result.output_for_solid("two") == 2
    # Listeners after the broken one still got every event.
    assert seen == [e.type for e in result.events]


async def test_a_listener_failing_on_every_event_is_logged_once_then_summed_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("ERROR", logger="asyncdag.events"):
        result = await execute_pipeline_async(
            two_steps, listeners=[failing_listener(BrokenPipeError(32, "Broken pipe"))]
        )
    records = [r for r in caplog.records if r.name == "asyncdag.events"]
    assert len(records) == 2
    first, summary = records
    assert first.exc_info is not None and first.exc_info[0] is BrokenPipeError
    assert f"raised on {len(result.events)} events" in summary.getMessage()


async def test_the_web_ui_keeps_serving_after_a_launched_solid_calls_sys_exit() -> None:
    import json

    import httpx

    from asyncdag.storage import InMemoryStorage
    from asyncdag.ui import create_app
    from ui_server import lifespan, sse_messages

    @solid
    def quits() -> None:
        sys.exit(3)

    @pipeline
    def exits() -> None:
        quits()

    app = create_app([exits], storage=InMemoryStorage())
    headers = {"Content-Type": "application/json"}
    with anyio.fail_after(HANG_GUARD):
        async with (
            lifespan(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test"
            ) as client,
        ):
            for _ in range(2):  # the second launch proves the first left the server whole
                response = await client.post(
                    "/api/runs", json={"pipeline": "exits"}, headers=headers
                )
                assert response.status_code == 201, response.text
                run_id = response.json()["run_id"]
                messages = await sse_messages(app, f"/api/runs/{run_id}/events/stream")
                kind, _, end = messages[-1]
                assert kind == "end"
                assert json.loads(end)["run"]["status"] == "FAILURE"
            assert (await client.get("/api/pipelines")).status_code == 200
