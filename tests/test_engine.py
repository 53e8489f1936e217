"""The engine's behaviour: data flow, concurrency and bounds, failure, retries, timeouts, cancellation.

Every test runs on asyncio and trio.  Nothing here measures time: concurrency
is proven with barriers that only open when enough steps are in flight at once,
bounds with counters, and ordering with the event log.
"""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import pytest

from asyncdag import (
    EventLoopError,
    EventType,
    PipelineRunResult,
    RetryPolicy,
    RetryRequested,
    RunStatus,
    StepStatus,
    StepTimeoutError,
    execute_pipeline,
    execute_pipeline_async,
    open_run,
    pipeline,
    solid,
)

pytestmark = pytest.mark.anyio

# A safety net only: a test that deadlocks fails instead of hanging CI. No assertion depends on it.
DEADLOCK_GUARD = 60


class Barrier:
    """Opens when ``parties`` tasks have arrived: proof that they were in flight together."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event = anyio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.event.set()
        await self.event.wait()


class Gauge:
    """Counts how many callers are inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Gauge:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


async def test_sync_and_async_solids_pass_values_along() -> None:
    @solid
    def start() -> int:
        return 2

    @solid
    async def double(x: int) -> int:
        await anyio.sleep(0)
        return x * 2

    @solid
    def plus_one(x: int) -> int:
        return x + 1

    @pipeline
    def p():
        plus_one(double(start()))

    result = await execute_pipeline_async(p)
    assert result.success
    assert result.status is RunStatus.SUCCESS
    assert result.output_for_solid("double") == 4
    assert result.output_for_solid("plus_one") == 5
    assert {s.status for s in result.step_results.values()} == {StepStatus.SUCCESS}


async def test_fan_in_receives_values_in_the_order_given() -> None:
    @solid
    async def value(context) -> str:
        return context.step_key

    @solid
    def join(parts: list[str]) -> str:
        return ",".join(parts)

    @pipeline
    def p():
        join([value.alias(f"v{i}")() for i in (3, 1, 2)] + ["end"])

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("join") == "v3,v1,v2,end"


async def test_aliased_nodes_are_separate_steps() -> None:
    @solid
    def const() -> int:
        return 7

    @solid
    def add(a: int, b: int) -> int:
        return a + b

    @pipeline
    def p():
        x = const()
        add.alias("first")(x, x)
        add(add(x, x), x)

    result = await execute_pipeline_async(p)
    assert set(result.step_results) == {"const", "first", "add", "add_2"}
    assert result.output_for_solid("first") == 14
    assert result.output_for_solid("add_2") == 21


async def test_independent_async_steps_overlap() -> None:
    width = 20
    barrier = Barrier(width)

    @solid
    async def meet() -> int:
        await barrier.wait()  # deadlocks unless all `width` steps are running at once
        return 1

    @solid
    def count(xs: list[int]) -> int:
        return sum(xs)

    @pipeline
    def p():
        count([meet.alias(f"m{i}")() for i in range(width)])

    with anyio.fail_after(DEADLOCK_GUARD):
        result = await execute_pipeline_async(p, max_concurrency=width)
    assert result.output_for_solid("count") == width
    assert barrier.arrived == width


async def test_independent_sync_steps_overlap_in_threads() -> None:
    width = 4
    barrier = threading.Barrier(width, timeout=DEADLOCK_GUARD)

    @solid
    def meet() -> int:
        barrier.wait()  # raises BrokenBarrierError unless all threads run at once
        return 1

    @pipeline
    def p():
        for i in range(width):
            meet.alias(f"m{i}")()

    result = await execute_pipeline_async(p)
    assert result.success


@pytest.mark.parametrize("bound", [1, 3, 8])
async def test_max_concurrency_is_never_exceeded(bound: int) -> None:
    gauge = Gauge()

    @solid
    async def busy() -> None:
        with gauge:
            for _ in range(3):
                await anyio.sleep(0)

    @solid
    def busy_sync() -> None:
        with gauge:
            pass

    @pipeline
    def p():
        for i in range(30):
            (busy if i % 3 else busy_sync).alias(f"s{i}")()

    result = await execute_pipeline_async(p, max_concurrency=bound)
    assert result.success
    assert 1 <= gauge.peak <= bound
    if bound > 1:
        assert gauge.peak > 1  # async steps that yield do overlap up to the bound


async def test_pool_limits_are_never_exceeded_and_other_steps_go_on() -> None:
    db_gauge = Gauge()
    all_gauge = Gauge()
    barrier = Barrier(4)  # 2 db steps + 2 free steps must be able to meet

    @solid(pool="db")
    async def query() -> None:
        with db_gauge, all_gauge:
            if barrier.arrived < barrier.parties:
                await barrier.wait()
            for _ in range(3):
                await anyio.sleep(0)

    @solid
    async def free() -> None:
        with all_gauge:
            if barrier.arrived < barrier.parties:
                await barrier.wait()

    @pipeline
    def p():
        for i in range(10):
            query.alias(f"q{i}")()
        for i in range(2):
            free.alias(f"f{i}")()

    with anyio.fail_after(DEADLOCK_GUARD):
        result = await execute_pipeline_async(p, concurrency_limits={"db": 2})
    assert result.success
    assert db_gauge.peak == 2
    assert all_gauge.peak >= 4


def start_order(result: PipelineRunResult) -> list[str]:
    return [e.step_key for e in result.events if e.type is EventType.STEP_START and e.step_key]


@solid
def root() -> int:
    return 0


@solid
async def fetch(page: int) -> int:
    return page


@pytest.mark.parametrize("bound", ["max_concurrency", "pool"])
async def test_ready_steps_with_higher_priority_start_first(bound: str) -> None:
    @solid(priority=10, pool="http")
    async def critical(start: int) -> int:
        return start

    @solid(priority=-1, pool="http")
    async def cleanup(start: int) -> int:
        return start

    @solid(pool="http")
    async def page(start: int) -> int:
        return start

    @pipeline
    def p():
        start = root()
        cleanup(start)  # declared first: without priorities it would start first
        for i in range(4):
            page.alias(f"page_{i}")(start)
        critical(start)

    options = {"max_concurrency": 1} if bound == "max_concurrency" else {}
    limits = {"http": 1} if bound == "pool" else None
    result = await execute_pipeline_async(p, concurrency_limits=limits, **options)
    assert result.success
    assert start_order(result) == [
        "root",
        "critical",
        *(f"page_{i}" for i in range(4)),  # equal priorities: in the order they became ready
        "cleanup",
    ]


@pytest.mark.parametrize("priority", [1, 0])
async def test_a_critical_path_step_is_not_queued_behind_page_fetches(priority: int) -> None:
    @solid
    async def parse(start: int) -> int:
        return start

    @solid(priority=priority)
    async def publish(parsed: int) -> int:
        return parsed

    @pipeline
    def p():
        start = root()
        publish(parse(start))
        for i in range(5):
            fetch.alias(f"fetch_{i}")(start)

    result = await execute_pipeline_async(p, max_concurrency=1)
    fetches = [f"fetch_{i}" for i in range(5)]
    if priority:
        # publish became ready after the five fetches were queued, and still goes before them.
        assert start_order(result) == ["root", "parse", "publish", *fetches]
    else:  # without priorities, ready steps start first in, first out
        assert start_order(result) == ["root", "parse", *fetches, "publish"]


async def test_a_failure_skips_dependents_and_independent_branches_go_on() -> None:
    @solid
    def boom() -> int:
        raise ValueError("bad input row 7")

    @solid
    def after(x: int) -> int:
        return x

    @solid
    def after_after(x: int) -> int:
        return x

    @solid
    async def independent() -> str:
        return "fine"

    @pipeline
    def p():
        after_after(after(boom()))
        independent()

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    steps = result.step_results
    assert steps["boom"].status is StepStatus.FAILURE
    assert steps["boom"].error is not None
    assert steps["boom"].error.type == "ValueError"
    assert "bad input row 7" in steps["boom"].error.message
    assert "Traceback" in steps["boom"].error.traceback
    assert steps["after"].status is StepStatus.SKIPPED
    assert steps["after_after"].status is StepStatus.SKIPPED
    assert "boom" in (steps["after"].skip_reason or "")
    assert steps["independent"].status is StepStatus.SUCCESS
    types = [e.type for e in result.events]
    assert types.count(EventType.STEP_SKIPPED) == 2
    assert types[-1] is EventType.RUN_FAILURE


async def test_the_run_s_end_names_failed_steps_in_plan_order_and_counts_the_skipped() -> None:
    """Failed steps are listed in plan order whichever failed first; skips are counted
    whatever skipped them (a failure upstream, a resource that did not start)."""
    from asyncdag import resource

    second_may_fail = anyio.Event()

    @resource
    def broken() -> None:
        raise ConnectionError("no db")

    @solid
    async def first() -> int:
        await second_may_fail.wait()
        raise ValueError("first")

    @solid
    async def second() -> int:
        second_may_fail.set()
        raise ValueError("second")

    @solid
    def after(x: int) -> int:
        return x

    @solid(required_resources={"db"})
    def needs_db() -> None:
        pass

    @pipeline(resources={"db": broken})
    def p():
        after(first())
        after.alias("after_second")(second())
        needs_db()

    with anyio.fail_after(DEADLOCK_GUARD):
        result = await execute_pipeline_async(p, raise_on_error=False)
    end = result.events[-1]
    assert end.type is EventType.RUN_FAILURE
    assert end.data is not None
    assert end.data["failed_steps"] == ["first", "second"]
    assert end.data["skipped"] == 3
    assert "Failed steps: ['first', 'second']; skipped: 3." in end.message


async def test_raise_on_error_reraises_the_solids_own_exception_after_the_run_ended() -> None:
    seen: list[EventType] = []
    finished = []

    @solid
    def boom() -> int:
        raise KeyError("missing-key")

    @solid
    async def slow_sibling() -> None:
        await anyio.sleep(0)
        finished.append("sibling")

    @pipeline
    def p():
        boom()
        slow_sibling()

    with pytest.raises(KeyError, match="missing-key"):
        await execute_pipeline_async(p, listeners=[lambda e: seen.append(e.type)])
    assert seen[-1] is EventType.RUN_FAILURE  # the run ended before the raise
    assert finished == ["sibling"]


async def test_fail_fast_stops_the_run_at_the_first_failure() -> None:
    started = anyio.Event()

    @solid
    async def waits_forever() -> None:
        started.set()
        await anyio.sleep_forever()

    @solid
    async def boom() -> None:
        await started.wait()
        raise RuntimeError("stop everything")

    @solid
    def later(x: None) -> None:
        pass

    @pipeline
    def p():
        waits_forever()
        later(boom())

    with anyio.fail_after(DEADLOCK_GUARD):
        result = await execute_pipeline_async(p, fail_fast=True, raise_on_error=False)
    assert result.status is RunStatus.FAILURE
    assert result.step_results["boom"].status is StepStatus.FAILURE
    assert result.step_results["waits_forever"].status is StepStatus.CANCELED
    assert result.step_results["later"].status is StepStatus.SKIPPED


async def test_retries_run_again_and_emit_events() -> None:
    attempts: list[int] = []

    @solid(retry_policy=RetryPolicy(max_retries=3))
    def flaky(context) -> str:
        attempts.append(context.retry_number)
        if len(attempts) < 3:
            raise ConnectionError(f"try {len(attempts)}")
        return "ok"

    @pipeline
    def p():
        flaky()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("flaky") == "ok"
    assert attempts == [0, 1, 2]
    step = result.step_results["flaky"]
    assert step.attempts == 3
    assert step.status is StepStatus.SUCCESS
    step_events = [e for e in result.events if e.step_key == "flaky"]
    assert [e.type for e in step_events] == [
        EventType.STEP_START,
        EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_START,
        EventType.STEP_UP_FOR_RETRY,
        EventType.STEP_START,
        EventType.STEP_SUCCESS,
    ]
    retries = [e for e in step_events if e.type is EventType.STEP_UP_FOR_RETRY]
    assert [e.data["attempt"] for e in retries] == [1, 2]  # type: ignore[index]
    assert retries[0].error is not None
    assert retries[0].error.message == "try 1"


async def test_the_calls_retry_policy_wins_then_the_solids_then_the_pipelines() -> None:
    attempts: dict[str, int] = {}

    @solid
    def flaky(context) -> str:
        key = context.step_key
        attempts[key] = attempts.get(key, 0) + 1
        raise ConnectionError(key)

    @solid(retry_policy=RetryPolicy(max_retries=2))
    def own(context) -> str:
        return flaky.fn(context)

    @pipeline(solid_retry_policy=RetryPolicy(max_retries=1))
    def p():
        flaky.alias("by_call").with_retry_policy(RetryPolicy(max_retries=3))()
        own()
        flaky.alias("by_pipeline")()

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert attempts == {"by_call": 4, "own": 3, "by_pipeline": 2}
    assert {k: result.step_results[k].attempts for k in attempts} == attempts


async def test_retry_budget_exhausted_fails_with_the_last_error() -> None:
    calls = []

    @solid(retry_policy=RetryPolicy(max_retries=2))
    async def always_fails() -> None:
        calls.append(1)
        raise TimeoutError(f"attempt {len(calls)}")

    @pipeline
    def p():
        always_fails()

    result = await execute_pipeline_async(p, raise_on_error=False)
    step = result.step_results["always_fails"]
    assert step.status is StepStatus.FAILURE
    assert step.attempts == 3
    assert len(calls) == 3
    assert step.error is not None
    assert step.error.message == "attempt 3"


async def test_retry_on_limits_which_errors_are_retried() -> None:
    calls = []

    @solid(retry_policy=RetryPolicy(max_retries=5, retry_on=(ConnectionError,)))
    def bug() -> None:
        calls.append(1)
        raise TypeError("a bug, not a blip")

    @pipeline
    def p():
        bug()

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert len(calls) == 1
    assert result.step_results["bug"].attempts == 1


async def test_retry_requested_from_a_solid() -> None:
    calls = []

    @solid
    def asks() -> int:
        calls.append(1)
        if len(calls) < 2:
            raise RetryRequested(max_retries=2)
        return len(calls)

    @pipeline
    def p():
        asks()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("asks") == 2


async def test_a_retrying_step_does_not_hold_a_concurrency_slot() -> None:
    release = anyio.Event()
    order: list[str] = []

    @solid(retry_policy=RetryPolicy(max_retries=1, delay=3600))
    async def waits_to_retry(context) -> None:
        order.append(f"retry{context.retry_number}")
        if context.retry_number == 0:
            raise ConnectionError("first try fails")

    @solid
    async def other() -> None:
        order.append("other")
        release.set()

    @pipeline
    def p():
        waits_to_retry()
        other()

    # With one slot, `other` can only run while the failed step waits its hour-long delay.
    async with open_run(p, max_concurrency=1) as run:
        with anyio.fail_after(DEADLOCK_GUARD):
            await release.wait()
        run.cancel()
    result = await run.result()
    assert order == ["retry0", "other"]
    assert result.status is RunStatus.CANCELED
    assert result.step_results["waits_to_retry"].status is StepStatus.CANCELED


async def test_timeout_fails_the_step_with_a_clear_error() -> None:
    @solid(timeout=0.01)
    async def hangs() -> None:
        await anyio.sleep_forever()

    @pipeline
    def p():
        hangs()

    with anyio.fail_after(DEADLOCK_GUARD):
        result = await execute_pipeline_async(p, raise_on_error=False)
    step = result.step_results["hangs"]
    assert step.status is StepStatus.FAILURE
    assert step.error is not None
    assert "timed out after 0.01s" in step.error.message
    failure = next(e for e in result.events if e.type is EventType.STEP_FAILURE)
    assert failure.data is not None
    assert failure.data["timeout"] is True
    assert isinstance(result.exception_for_step("hangs"), StepTimeoutError)


async def test_timeout_is_retried_by_a_policy() -> None:
    calls = []

    @solid(timeout=0.01, retry_policy=RetryPolicy(max_retries=1))
    async def slow_then_fast() -> str:
        calls.append(1)
        if len(calls) == 1:
            await anyio.sleep_forever()
        return "second try"

    @pipeline
    def p():
        slow_then_fast()

    with anyio.fail_after(DEADLOCK_GUARD):
        result = await execute_pipeline_async(p)
    assert result.output_for_solid("slow_then_fast") == "second try"
    assert result.step_results["slow_then_fast"].attempts == 2


async def test_run_cancel_runs_every_finally_and_leaves_no_thread() -> None:
    width = 6
    started = Barrier(width + 1)
    cleaned: list[str] = []
    thread_done = threading.Event()

    @solid
    async def waits(context) -> None:
        try:
            await started.wait()
            await anyio.sleep_forever()
        finally:
            cleaned.append(context.step_key)

    @solid
    def sync_loop(context) -> None:
        try:
            anyio.from_thread.run(started.wait)
            while not context.is_cancel_requested:
                threading.Event().wait(0.001)
        finally:
            cleaned.append(context.step_key)
            thread_done.set()

    @solid
    def never(x: None) -> None:
        cleaned.append("never")

    @pipeline
    def p():
        for i in range(width - 1):
            never.alias(f"after{i}")(waits.alias(f"w{i}")())
        sync_loop()

    with anyio.fail_after(DEADLOCK_GUARD):
        async with open_run(p) as run:
            await started.wait()
            run.cancel()
    result = await run.result()
    assert result.status is RunStatus.CANCELED
    assert sorted(cleaned) == sorted([*(f"w{i}" for i in range(width - 1)), "sync_loop"])
    assert thread_done.is_set()  # the sync solid's thread saw the cancel and finished
    for i in range(width - 1):
        assert result.step_results[f"w{i}"].status is StepStatus.CANCELED
        assert result.step_results[f"after{i}"].status is StepStatus.CANCELED
    assert result.events[-1].type is EventType.RUN_CANCELED
    assert any(e.type is EventType.RUN_CANCELING for e in result.events)


async def test_outer_cancel_scope_cancels_the_run_and_records_it() -> None:
    started = anyio.Event()
    cleaned: list[str] = []
    events = []

    @solid
    async def waits() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        finally:
            cleaned.append("waits")

    @pipeline
    def p():
        waits()

    with anyio.fail_after(DEADLOCK_GUARD):
        async with anyio.create_task_group() as tg:

            async def run_it() -> None:
                await execute_pipeline_async(p, listeners=[events.append])
                events.append("returned normally")  # must not happen

            tg.start_soon(run_it)
            await started.wait()
            tg.cancel_scope.cancel()
    assert cleaned == ["waits"]
    assert "returned normally" not in events
    assert events[-1].type is EventType.RUN_CANCELED
    step_events = [e.type for e in events if e.step_key == "waits"]
    assert step_events == [EventType.STEP_START, EventType.STEP_CANCELED]


async def test_events_stream_from_the_start_even_when_read_late() -> None:
    gate = anyio.Event()

    @solid
    async def first() -> int:
        await gate.wait()
        return 1

    @solid
    def second(x: int) -> int:
        return x + 1

    @pipeline
    def p():
        second(first())

    seen = []
    async with open_run(p) as run:
        gate.set()
        async for event in run.events():
            seen.append(event)
    result = await run.result()
    assert [e.seq for e in seen] == list(range(len(result.events)))
    assert seen == list(result.events)


async def test_event_log_is_complete_and_ordered() -> None:
    @solid
    def a() -> int:
        return 1

    @solid
    async def b(x: int) -> int:
        return x

    @pipeline
    def p():
        b(a())
        b(a())

    result = await execute_pipeline_async(p)
    events = result.events
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].type is EventType.RUN_START
    assert events[-1].type is EventType.RUN_SUCCESS
    assert all(e.run_id == result.run_id for e in events)
    timestamps = [e.timestamp for e in events]
    assert timestamps == sorted(timestamps)
    for key in result.step_results:
        kinds = [e.type for e in events if e.step_key == key]
        assert kinds == [EventType.STEP_START, EventType.STEP_SUCCESS]
    position = {(e.step_key, e.type): e.seq for e in events}
    assert position[("a", EventType.STEP_SUCCESS)] < position[("b", EventType.STEP_START)]


async def test_inputs_from_run_config_and_defaults() -> None:
    @solid
    def greet(name: str, punctuation: str = "!") -> str:
        return f"Hello, {name}{punctuation}"

    @pipeline
    def p():
        greet()

    result = await execute_pipeline_async(p, {"solids": {"greet": {"inputs": {"name": "Kan"}}}})
    assert result.output_for_solid("greet") == "Hello, Kan!"


async def test_execute_pipeline_inside_a_loop_says_to_await_the_async_twin() -> None:
    @solid
    def a() -> int:
        return 1

    @pipeline
    def p():
        a()

    with pytest.raises(EventLoopError, match="use `await execute_pipeline_async"):
        execute_pipeline(p)


async def test_context_exposes_the_run() -> None:
    seen = {}

    @solid
    async def look(context) -> None:
        seen.update(
            run_id=context.run_id,
            pipeline_name=context.pipeline_name,
            solid_name=context.solid_name,
            step_key=context.step_key,
            retry_number=context.retry_number,
            tags=context.tags,
        )
        context.log.warning("careful: %s", "hot")

    @pipeline
    def watch():
        look.alias("peek")()

    result = await execute_pipeline_async(watch, tags={"team": "data"})
    assert seen == {
        "run_id": result.run_id,
        "pipeline_name": "watch",
        "solid_name": "look",
        "step_key": "peek",
        "retry_number": 0,
        "tags": {"team": "data"},
    }
    log = next(e for e in result.events if e.type is EventType.LOG)
    assert (log.step_key, log.level_name, log.message) == ("peek", "WARNING", "careful: hot")


def test_execute_pipeline_runs_on_asyncio_and_trio() -> None:
    @solid
    async def where() -> str:
        backend = anyio.lowlevel.current_token().backend_class
        return backend.__module__.rpartition("._")[2]

    @pipeline
    def p():
        where()

    assert execute_pipeline(p).output_for_solid("where") == "asyncio"
    assert execute_pipeline(p, backend="trio").output_for_solid("where") == "trio"


async def test_chain_runs_in_order() -> None:
    order = []

    @solid
    async def link(context, x: int) -> int:
        order.append(context.step_key)
        return x + 1

    @pipeline
    def chain():
        value = 0
        for i in range(50):
            value = link.alias(f"l{i}")(value)

    result = await execute_pipeline_async(chain, max_concurrency=4)
    assert result.output_for_solid("l49") == 50
    assert order == [f"l{i}" for i in range(50)]


async def test_logs_from_sync_solids_in_threads_reach_live_readers_in_order() -> None:
    lines_per_step = 300

    @solid
    def chatty(context) -> None:
        for i in range(lines_per_step):
            context.log.info(f"{context.step_key} line {i}")

    @pipeline
    def p():
        for i in range(4):
            chatty.alias(f"c{i}")()

    seen = []
    with anyio.fail_after(DEADLOCK_GUARD):
        async with open_run(p) as run:
            async for event in run.events():  # a live reader waiting while threads log
                seen.append(event)
    result = await run.result()
    assert result.success
    assert [e.seq for e in seen] == list(range(len(result.events)))
    for i in range(4):
        lines = [e.message for e in seen if e.type is EventType.LOG and e.step_key == f"c{i}"]
        assert lines == [f"c{i} line {n}" for n in range(lines_per_step)]
