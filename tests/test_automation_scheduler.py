"""The scheduler on a clock the tests move: ticks, catch-up, failures, limits, sensors, leases.

No test sleeps for a tick: a :class:`ManualClock` jumps to the next tick and
``scheduler.wait_idle()`` returns once everything due is done, so a week of
ticks, a daylight-saving change or a lease expiry take microseconds.  Every test
that takes ``storage`` runs on each backend (tests/conftest.py: in-memory, SQLite,
PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncdag import (
    RunRequest,
    RunStatus,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SkipReason,
    pipeline,
    schedule,
    sensor,
    solid,
)
from asyncdag.automation import ManualClock, Scheduler
from asyncdag.automation._status import set_running
from asyncdag.config import Field
from asyncdag.storage import RunStorage, TickStatus

pytestmark = pytest.mark.anyio

HANG_GUARD = 60  # seconds; only stops a broken test from hanging, never asserts speed
#: 2024-01-01 00:00:00 UTC, a Monday.
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).timestamp()
HOUR = 3600.0

SEEN: list[Any] = []


@solid(config_schema={"label": Field(str, default="-")})
def record(context) -> str:
    SEEN.append(context.solid_config["label"])
    return context.solid_config["label"]


@pipeline
def job():
    record()


GATE: dict[str, anyio.Event] = {}


@solid
async def held(context) -> None:
    await GATE["open"].wait()


@pipeline
def held_job():
    held()


def label(value: str) -> dict[str, Any]:
    return {"solids": {"record": {"config": {"label": value}}}}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    SEEN.clear()
    yield
    SEEN.clear()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@schedule(cron_schedule="0 * * * *", pipeline=job)
def hourly(context: ScheduleEvaluationContext) -> dict[str, Any]:
    return label(context.scheduled_execution_time.strftime("%H:%M"))


def make(
    definitions: list[Any], storage: RunStorage, clock: ManualClock, **options: Any
) -> Scheduler:
    """A scheduler whose lease outlives the test: its keeper then adds no steps to walk through."""
    options.setdefault("lease_ttl", 30 * 86400)
    return Scheduler(definitions, storage=storage, clock=clock, **options)


async def settle(scheduler: Scheduler) -> None:
    with anyio.fail_after(HANG_GUARD):
        await scheduler.wait_idle()


async def step_to(scheduler: Scheduler, clock: ManualClock, t: float, *more: Scheduler) -> None:
    """Move the clock to ``t`` one due time at a time, letting everything due finish in between."""
    everyone = (scheduler, *more)
    while True:
        for each in everyone:
            await settle(each)
        due = clock.next_deadline
        if due is None or due > t:
            break
        clock.set(max(due, clock.now()))
    clock.set(max(t, clock.now()))
    for each in everyone:
        await settle(each)


async def ticks_of(storage: RunStorage, name: str) -> list[tuple[str, TickStatus]]:
    ticks = await storage.list_ticks(name)
    return [
        (dt.datetime.fromtimestamp(t.tick_time, dt.UTC).strftime("%d %H:%M"), t.status)
        for t in reversed(ticks)
    ]


# -- schedules -----------------------------------------------------------------------------


async def test_a_schedule_runs_each_tick_once_with_its_scheduled_time(
    storage: RunStorage, clock: ManualClock
) -> None:
    scheduler = make([hourly], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + 3 * HOUR + 30)
    assert SEEN == ["01:00", "02:00", "03:00"]
    assert await ticks_of(storage, "hourly") == [
        ("01 01:00", TickStatus.SUCCESS),
        ("01 02:00", TickStatus.SUCCESS),
        ("01 03:00", TickStatus.SUCCESS),
    ]
    runs = await storage.list_runs()
    assert len(runs) == 3
    assert all(r.status is RunStatus.SUCCESS for r in runs)
    tagged = sorted(r.tags["asyncdag/scheduled_execution_time"] for r in runs)
    assert tagged == [f"2024-01-01T0{h}:00:00+00:00" for h in (1, 2, 3)]
    assert {r.tags["asyncdag/schedule_name"] for r in runs} == {"hourly"}
    for t in await storage.list_ticks("hourly"):
        assert len(t.run_ids) == 1


async def test_a_schedule_in_a_named_zone_follows_its_wall_clock_across_dst(
    storage: RunStorage,
) -> None:
    @schedule(cron_schedule="30 2 * * *", pipeline=job, execution_timezone="Europe/Berlin")
    def nightly(context: ScheduleEvaluationContext) -> dict[str, Any]:
        return label(context.scheduled_execution_time.isoformat())

    start = dt.datetime(2024, 3, 29, 12, tzinfo=dt.UTC).timestamp()
    clock = ManualClock(start)
    scheduler = make([nightly], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, start + 3 * 86400)
    # 03-31 is the spring-forward day: 02:30 does not exist, so the tick runs at 03:00.
    assert SEEN == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]


async def test_a_failing_schedule_function_records_a_failed_tick_and_the_schedule_goes_on(
    storage: RunStorage, clock: ManualClock
) -> None:
    calls = []

    @schedule(cron_schedule="0 * * * *", pipeline=job)
    def flaky(context: ScheduleEvaluationContext) -> dict[str, Any]:
        calls.append(context.scheduled_execution_time.hour)
        if len(calls) == 1:
            raise ConnectionError("the config service is down")
        return label("ok")

    scheduler = make([flaky], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + 2 * HOUR)
    failed, succeeded = reversed(await storage.list_ticks("flaky"))
    assert failed.status is TickStatus.FAILURE
    assert failed.error is not None
    assert failed.error.type == "ConnectionError"
    assert "config service is down" in failed.error.message
    assert failed.run_ids == ()
    assert succeeded.status is TickStatus.SUCCESS
    assert SEEN == ["ok"]


async def test_a_base_exception_from_a_schedule_function_fails_the_tick_not_the_loop(
    storage: RunStorage, clock: ManualClock
) -> None:
    @schedule(cron_schedule="0 * * * *", pipeline=job)
    def exits(context: ScheduleEvaluationContext) -> dict[str, Any]:
        raise SystemExit(3)

    scheduler = make([exits, hourly], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + HOUR)
    (tick,) = await storage.list_ticks("exits")
    assert tick.status is TickStatus.FAILURE
    assert SEEN == ["01:00"]  # the other schedule was not disturbed


@pytest.mark.parametrize(
    ("returned", "status", "reason"),
    [
        (SkipReason("nothing new"), TickStatus.SKIPPED, "nothing new"),
        ([], TickStatus.SKIPPED, "requested no run"),
        (None, TickStatus.FAILURE, None),
        (42, TickStatus.FAILURE, None),
    ],
    ids=["skip-reason", "empty-list", "none", "an-int"],
)
async def test_what_a_schedule_function_returns_decides_its_tick(
    storage: RunStorage, clock: ManualClock, returned: Any, status: TickStatus, reason: str | None
) -> None:
    @schedule(cron_schedule="0 * * * *", pipeline=job)
    def decides(context: ScheduleEvaluationContext) -> Any:
        return returned

    scheduler = make([decides], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + HOUR)
    (tick,) = await storage.list_ticks("decides")
    assert tick.status is status
    if reason is not None:
        assert reason in (tick.skip_reason or "")
    if status is TickStatus.FAILURE:
        assert tick.error is not None and "decides" in tick.error.message
    assert SEEN == []


async def test_async_and_generator_schedule_functions_request_several_runs(
    storage: RunStorage, clock: ManualClock
) -> None:
    @schedule(cron_schedule="0 * * * *", pipeline=job)
    async def fan_out(context: ScheduleEvaluationContext) -> list[RunRequest]:
        await anyio.sleep(0)
        return [RunRequest(run_config=label(f"part-{i}"), tags={"part": str(i)}) for i in range(3)]

    scheduler = make([fan_out], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + HOUR)
    (tick,) = await storage.list_ticks("fan_out")
    assert tick.status is TickStatus.SUCCESS
    assert len(tick.run_ids) == 3
    assert sorted(SEEN) == ["part-0", "part-1", "part-2"]
    assert sorted(r.tags["part"] for r in await storage.list_runs()) == ["0", "1", "2"]


async def test_a_schedule_returning_invalid_run_config_fails_its_tick_with_the_config_error(
    storage: RunStorage, clock: ManualClock
) -> None:
    @schedule(cron_schedule="0 * * * *", pipeline=job)
    def misconfigured(context: ScheduleEvaluationContext) -> dict[str, Any]:
        return {"solids": {"record": {"config": {"label": 5}}}}

    scheduler = make([misconfigured], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + HOUR)
    (tick,) = await storage.list_ticks("misconfigured")
    assert tick.status is TickStatus.FAILURE
    assert tick.error is not None and "solids.record.config.label" in tick.error.message
    assert await storage.list_runs() == []


async def test_a_plain_schedule_definition_runs_its_static_config(
    storage: RunStorage, clock: ManualClock
) -> None:
    from asyncdag import ScheduleDefinition

    plain = ScheduleDefinition(cron_schedule="@hourly", pipeline=job, run_config=label("static"))
    assert plain.name == "job_schedule"
    scheduler = make([plain], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + 2 * HOUR)
    assert SEEN == ["static", "static"]


# -- catch-up after downtime ---------------------------------------------------------------


async def run_after_downtime(
    storage: RunStorage, definition: Any, *, down_hours: int, up_hours: float = 0.5
) -> None:
    """Run a scheduler for an hour, stop it for ``down_hours``, start another."""
    clock = ManualClock(T0)
    first = make([definition], storage, clock)
    async with first.running():
        await step_to(first, clock, T0 + HOUR + 60)
    clock.set(T0 + (1 + down_hours) * HOUR + 60)  # downtime: nobody runs
    second = make([definition], storage, clock)
    async with second.running():
        await step_to(second, clock, clock.now() + up_hours * HOUR)


def hourly_with(catchup: str, **options: Any) -> Any:
    @schedule(cron_schedule="0 * * * *", pipeline=job, catchup=catchup, **options)
    def catching(context: ScheduleEvaluationContext) -> dict[str, Any]:
        return label(context.scheduled_execution_time.strftime("%H:%M"))

    return catching


async def test_catchup_latest_runs_the_most_recent_missed_tick(storage: RunStorage) -> None:
    await run_after_downtime(storage, hourly_with("latest"), down_hours=5)
    assert SEEN == ["01:00", "06:00"]
    statuses = await ticks_of(storage, "catching")
    assert statuses == [
        ("01 01:00", TickStatus.SUCCESS),
        ("01 05:00", TickStatus.SKIPPED),  # stands for 02:00..05:00, not run
        ("01 06:00", TickStatus.SUCCESS),
    ]
    skipped = (await storage.list_ticks("catching", statuses=[TickStatus.SKIPPED]))[0]
    assert "02:00:00+00:00 to 2024-01-01T05:00:00+00:00" in (skipped.skip_reason or "")
    assert "catchup='latest'" in (skipped.skip_reason or "")


async def test_catchup_all_runs_the_missed_ticks_oldest_first_up_to_the_limit(
    storage: RunStorage,
) -> None:
    await run_after_downtime(storage, hourly_with("all", max_catchup_runs=3), down_hours=5)
    # The caught-up runs go at once, each sync solid in a worker thread: the order they
    # record in is the threads', so compare the set; the ticks say which were run.
    assert sorted(SEEN) == ["01:00", "04:00", "05:00", "06:00"]
    statuses = await ticks_of(storage, "catching")
    assert [s for _, s in statuses].count(TickStatus.SKIPPED) == 1
    assert statuses[1] == ("01 03:00", TickStatus.SKIPPED)


async def test_catchup_all_within_the_limit_runs_every_missed_tick(storage: RunStorage) -> None:
    await run_after_downtime(storage, hourly_with("all", max_catchup_runs=10), down_hours=3)
    assert sorted(SEEN) == ["01:00", "02:00", "03:00", "04:00"]  # run at once: any order
    assert all(s is TickStatus.SUCCESS for _, s in await ticks_of(storage, "catching"))


async def test_catchup_none_runs_no_missed_tick_but_the_next_on_time(storage: RunStorage) -> None:
    await run_after_downtime(storage, hourly_with("none"), down_hours=5, up_hours=1)
    assert SEEN == ["01:00", "07:00"]
    statuses = await ticks_of(storage, "catching")
    assert statuses[1] == ("01 06:00", TickStatus.SKIPPED)


async def test_a_stopped_schedule_runs_nothing_and_catches_nothing_up_when_started(
    storage: RunStorage, clock: ManualClock
) -> None:
    definition = hourly_with("all", max_catchup_runs=10)
    scheduler = make([definition], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + HOUR + 60)
        await set_running(storage, definition, False, now=clock.now())
        await step_to(scheduler, clock, T0 + 4 * HOUR + 60)
        assert SEEN == ["01:00"]
        await set_running(storage, definition, True, now=clock.now())
        await step_to(scheduler, clock, T0 + 5 * HOUR + 60)
    assert SEEN == ["01:00", "05:00"]


async def test_a_schedule_starting_stopped_runs_only_once_started(
    storage: RunStorage, clock: ManualClock
) -> None:
    definition = hourly_with("latest", default_status="stopped")
    scheduler = make([definition], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + 2 * HOUR + 60)
        assert SEEN == []
        await set_running(storage, definition, True, now=clock.now())
        await step_to(scheduler, clock, T0 + 3 * HOUR + 60)
    assert SEEN == ["03:00"]


# -- concurrency limit ---------------------------------------------------------------------


async def test_a_tick_that_would_exceed_max_concurrent_runs_is_skipped_with_the_reason(
    storage: RunStorage, clock: ManualClock
) -> None:
    GATE["open"] = anyio.Event()

    @schedule(cron_schedule="0 * * * *", pipeline=held_job, max_concurrent_runs=1)
    def limited(context: ScheduleEvaluationContext) -> dict[str, Any]:
        return {}

    scheduler = make([limited], storage, clock)
    async with scheduler.running():
        await step_to_loops(scheduler, clock, T0 + HOUR)
        await step_to_loops(scheduler, clock, T0 + 2 * HOUR)  # the 01:00 run is still going
        GATE["open"].set()
        await settle(scheduler)
        await step_to(scheduler, clock, T0 + 3 * HOUR)
    statuses = [s for _, s in await ticks_of(storage, "limited")]
    assert statuses == [TickStatus.SUCCESS, TickStatus.SKIPPED, TickStatus.SUCCESS]
    skipped = (await storage.list_ticks("limited", statuses=[TickStatus.SKIPPED]))[0]
    assert "max_concurrent_runs=1" in (skipped.skip_reason or "")


async def step_to_loops(scheduler: Scheduler, clock: ManualClock, t: float) -> None:
    """Like step_to, but waits only for the loops: a run may still be going."""
    with anyio.fail_after(HANG_GUARD):
        await scheduler.wait_idle(runs=False)
        clock.set(t)
        await scheduler.wait_idle(runs=False)


# -- evaluation time limit -----------------------------------------------------------------


async def test_a_schedule_function_that_never_returns_fails_its_tick_after_the_timeout(
    storage: RunStorage, clock: ManualClock
) -> None:
    import threading

    release = threading.Event()

    @schedule(cron_schedule="0 * * * *", pipeline=job)
    def stuck(context: ScheduleEvaluationContext) -> dict[str, Any]:
        release.wait()  # a sync function that never returns (until the test ends)
        return label("late")

    scheduler = make([stuck], storage, clock, evaluation_timeout=10)
    try:
        async with scheduler.running():
            await settle(scheduler)
            clock.set(T0 + HOUR)
            with anyio.fail_after(HANG_GUARD):
                while not await storage.list_ticks("stuck"):
                    await anyio.sleep(0.01)
                # The tick is claimed before its evaluation's watchdog starts sleeping on the
                # clock: move the clock only once the watchdog waits for its deadline.
                while clock.next_deadline != T0 + HOUR + 10:
                    await anyio.sleep(0.01)
                clock.advance(10)  # the timeout passes on the scheduler's clock
                while (await storage.list_ticks("stuck"))[0].status is TickStatus.STARTED:
                    await anyio.sleep(0.01)
    finally:
        release.set()
    (tick,) = await storage.list_ticks("stuck")
    assert tick.status is TickStatus.FAILURE
    assert tick.error is not None and "did not return within 10 s" in tick.error.message
    assert SEEN == []


# -- sensors -------------------------------------------------------------------------------


async def test_a_sensor_keeps_its_cursor_and_never_reuses_a_run_key_across_restarts(
    storage: RunStorage, clock: ManualClock, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()

    @sensor(pipeline=job, minimum_interval_seconds=30)
    def new_files(context: SensorEvaluationContext) -> Iterator[RunRequest]:
        # Yields every file each time: the run keys keep each file to one run.
        for path in sorted(inbox.iterdir()):
            yield RunRequest(run_key=path.name, run_config=label(path.name))
        context.update_cursor(str(len(list(inbox.iterdir()))))

    (inbox / "a.csv").touch()
    first = make([new_files], storage, clock)
    async with first.running():
        await step_to(first, clock, T0 + 31)
        (inbox / "b.csv").touch()
        await step_to(first, clock, T0 + 61)
    assert SEEN == ["a.csv", "b.csv"]

    (inbox / "c.csv").touch()
    second = make([new_files], storage, clock)  # a restart
    async with second.running():
        await step_to(second, clock, T0 + 121)
    assert SEEN == ["a.csv", "b.csv", "c.csv"]
    state = await storage.get_instigator_state("new_files")
    assert state is not None and state.cursor == "3"
    runs = await storage.list_runs()
    assert sorted(r.tags["asyncdag/run_key"] for r in runs) == ["a.csv", "b.csv", "c.csv"]
    assert {r.tags["asyncdag/sensor_name"] for r in runs} == {"new_files"}
    latest = (await storage.list_ticks("new_files"))[0]
    assert latest.status is TickStatus.SKIPPED
    assert "already started run" in (latest.skip_reason or "")


async def test_a_sensor_runs_every_minimum_interval_and_reads_its_cursor(
    storage: RunStorage, clock: ManualClock
) -> None:
    seen_cursors: list[str | None] = []

    @sensor(pipeline=job, minimum_interval_seconds=30)
    async def counter(context: SensorEvaluationContext) -> SkipReason:
        seen_cursors.append(context.cursor)
        context.update_cursor(str(int(context.cursor or "0") + 1))
        return SkipReason("just counting")

    scheduler = make([counter], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + 95)
    assert seen_cursors == [None, "1", "2", "3"]  # at 0, 30, 60, 90
    ticks = await storage.list_ticks("counter")
    assert [t.tick_time - T0 for t in reversed(ticks)] == [0, 30, 60, 90]
    assert all(t.skip_reason == "just counting" for t in ticks)


async def test_a_failing_sensor_keeps_its_old_cursor(
    storage: RunStorage, clock: ManualClock
) -> None:
    @sensor(pipeline=job, minimum_interval_seconds=30)
    def broken(context: SensorEvaluationContext) -> None:
        context.update_cursor("moved")
        raise RuntimeError("cannot list the bucket")

    scheduler = make([broken], storage, clock)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + 35)
    ticks = await storage.list_ticks("broken")
    assert [t.status for t in ticks] == [TickStatus.FAILURE, TickStatus.FAILURE]
    state = await storage.get_instigator_state("broken")
    assert state is not None and state.cursor is None


# -- leases --------------------------------------------------------------------------------


async def test_two_schedulers_on_one_history_run_each_tick_once(
    storage: RunStorage, clock: ManualClock
) -> None:
    a = Scheduler([hourly], storage=storage, clock=clock, owner="a")
    b = Scheduler([hourly], storage=storage, clock=clock, owner="b")
    async with a.running(), b.running():
        for hour in range(1, 6):
            await step_to(a, clock, T0 + hour * HOUR, b)
    assert SEEN == ["01:00", "02:00", "03:00", "04:00", "05:00"]
    assert len(await storage.list_runs()) == 5


async def test_a_lease_left_by_a_stopped_scheduler_passes_on_at_once(
    storage: RunStorage, clock: ManualClock
) -> None:
    a = Scheduler([hourly], storage=storage, clock=clock, owner="a")
    b = Scheduler([hourly], storage=storage, clock=clock, owner="b", lease_ttl=30)
    async with b.running():
        async with a.running():
            await step_to(a, clock, T0 + HOUR, b)
        # a released its lease on the way out: b takes the next tick without waiting.
        await step_to(b, clock, T0 + 2 * HOUR)
    ticks = await storage.list_ticks("hourly")
    assert [t.status for t in ticks] == [TickStatus.SUCCESS, TickStatus.SUCCESS]
    assert SEEN == ["01:00", "02:00"]


# -- stored outputs ----------------------------------------------------------------------------

FLAKY = {"fail": True}


@solid
def fetched() -> int:
    return 20


@solid
def summed(value: int) -> int:
    if FLAKY["fail"]:
        raise RuntimeError("the summary service is down")
    return value + 1


@pipeline
def nightly_job() -> None:
    summed(fetched())


@schedule(cron_schedule="0 * * * *", pipeline=nightly_job)
def nightly(context: ScheduleEvaluationContext) -> dict[str, Any]:
    return {}


async def test_a_scheduled_run_stores_its_outputs_and_is_reexecuted_from_its_failure(
    storage: RunStorage, clock: ManualClock, tmp_path: Path
) -> None:
    from asyncdag import EventType, execute_pipeline_async
    from asyncdag.outputs import FilesystemOutputStore, OutputKey

    store = FilesystemOutputStore(tmp_path / "outputs")
    FLAKY["fail"] = True
    scheduler = make([nightly], storage, clock, output_store=store)
    async with scheduler.running():
        await step_to(scheduler, clock, T0 + HOUR + 30)
    (failed,) = await storage.list_runs()
    assert failed.status is RunStatus.FAILURE
    assert store.get(OutputKey(failed.run_id, "fetched", "result")) == 20

    FLAKY["fail"] = False
    again = await execute_pipeline_async(
        nightly_job,
        storage=storage,
        output_store=store,
        reexecute_from=failed.run_id,
        from_failure=True,
    )
    assert again.output_for_solid("summed") == 21
    started = [e.step_key for e in again.events if e.type is EventType.STEP_START]
    assert started == ["summed"]  # fetched came from the scheduled run's store
