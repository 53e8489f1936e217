"""The scheduler: a loop per schedule and sensor that claims its ticks and starts their runs.

It runs inside whatever process hosts it (the web UI's lifespan, or
``asyncdag scheduler run``); several may share one run storage.  Its
guarantees come from storage operations (see ``storage/_automation.py``):

* A loop evaluates only while it holds its instigator's **lease**, renewed
  every ``lease_ttl / 3`` seconds by one keeper task; a dead process's lease
  expires and another process's loop takes over.
* Each tick is **claimed** before it is evaluated, by a unique
  ``(name, tick_time)`` row; a claim abandoned by a dead process passes to the
  new lease holder, so no tick is lost and none is evaluated twice.
* Each run gets a **deterministic run id** (from the tick, or from the run
  key) registered before it is launched; a run that already exists is never
  launched again, so even a process that stalled past its lease and woke up
  cannot start a second copy.

A schedule's cursor (``last_tick_time``) is the newest tick it handled; the
ticks after it and up to now are due.  Those before this process took the
lease were *missed* (nobody was running): ``catchup`` decides which of them
run.  One SKIPPED tick records the missed ticks that did not run.

Time comes from the injected :class:`~asyncdag.automation.Clock`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import anyio.abc
import attrs

from asyncdag._api import RunHandle, open_run
from asyncdag._errors import AsyncdagError
from asyncdag._events import ErrorInfo
from asyncdag.storage import InstigatorType, TickRecord, TickStatus

from ._clock import Clock, SystemClock
from ._context import ScheduleEvaluationContext, SensorEvaluationContext
from ._definitions import (
    AutomationDefinition,
    Catchup,
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
)
from ._evaluate import Outcome, evaluate
from ._status import by_name, effective_status, iso

if TYPE_CHECKING:
    from asyncdag._definitions import PipelineDefinition
    from asyncdag.outputs import OutputStore
    from asyncdag.storage import RunStorage

__all__ = [
    "RUN_KEY_TAG",
    "SCHEDULED_EXECUTION_TIME_TAG",
    "SCHEDULE_NAME_TAG",
    "SENSOR_NAME_TAG",
    "Launcher",
    "Scheduler",
]

_log = logging.getLogger("asyncdag.automation")

#: Tags on every run a schedule or sensor starts (Dagster's, under ``asyncdag/``).
SCHEDULE_NAME_TAG = "asyncdag/schedule_name"
SCHEDULED_EXECUTION_TIME_TAG = "asyncdag/scheduled_execution_time"
SENSOR_NAME_TAG = "asyncdag/sensor_name"
RUN_KEY_TAG = "asyncdag/run_key"

_RUN_IDS = uuid.UUID("6f1d3c0e-5b7a-4c59-9a0e-2f7d8e3a4b21")  # namespace of derived run ids
_NEVER = 86_400.0  # how long a loop sleeps when its schedule never fires again
_KEEPER = ""  # the lease keeper's key among the naps (no definition has an empty name)


class Launcher(Protocol):
    """Starts a run and returns as soon as it runs (config errors raise, before anything runs)."""

    def __call__(
        self,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any],
        *,
        tags: Mapping[str, str],
        run_id: str,
    ) -> Awaitable[RunHandle]: ...


class Scheduler:
    """Runs schedules and sensors against a run storage until stopped.

    ::

        scheduler = Scheduler([hourly, new_files], storage=SqliteStorage())
        async with scheduler.running():
            await anyio.sleep_forever()

    ``launcher`` starts runs (default: a task group of the scheduler's own,
    whose runs ``running(on_stop=...)`` waits for or cancels); the web UI
    passes its own so scheduled runs show live.  ``lease_ttl`` is how long a
    silent process keeps its schedules before another takes them over;
    ``evaluation_timeout`` bounds a schedule or sensor function, on ``clock``.
    ``output_store`` keeps the default launcher's runs' step outputs, so a
    scheduled run that failed can be re-executed from its failure (the
    ``asyncdag scheduler run`` command passes the CLI's store).
    """

    def __init__(
        self,
        definitions: Iterable[AutomationDefinition],
        *,
        storage: RunStorage,
        clock: Clock | None = None,
        launcher: Launcher | None = None,
        lease_ttl: float = 30.0,
        evaluation_timeout: float | None = 60.0,
        error_backoff: float = 5.0,
        owner: str | None = None,
        output_store: OutputStore | None = None,
    ) -> None:
        if not lease_ttl > 0:
            raise AsyncdagError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        self.definitions = by_name(definitions)
        self.storage = storage
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl = float(lease_ttl)
        self.evaluation_timeout = evaluation_timeout
        self.error_backoff = error_backoff
        self._launcher = launcher
        self.output_store = output_store
        self._since: dict[str, float] = {}  # name -> when this process took its lease
        self._naps: dict[str, tuple[float, anyio.CancelScope]] = {}
        self._inflight: dict[str, dict[str, RunHandle]] = {}  # name -> run id -> handle
        self._run_tasks = 0  # runs in the scheduler's own task group, not yet recorded as ended
        self._runs_group: anyio.abc.TaskGroup | None = None
        self._changed: anyio.Event | None = None  # created in running(): an Event needs a loop
        self._loops_started = False

    def __repr__(self) -> str:
        return f"<Scheduler {self.owner} of {sorted(self.definitions)}>"

    # -- running ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(
        self, *, on_stop: Literal["wait", "cancel"] = "wait"
    ) -> AsyncIterator[Scheduler]:
        """Run every loop while the block runs; on leaving, stop them and release the leases.

        Runs started with the default launcher then finish (``on_stop="wait"``)
        or are cancelled and recorded CANCELED (``"cancel"``).
        """
        if on_stop not in ("wait", "cancel"):
            raise AsyncdagError(f"on_stop must be 'wait' or 'cancel', got {on_stop!r}")
        self._changed = anyio.Event()
        async with anyio.create_task_group() as runs:
            self._runs_group = runs
            try:
                async with anyio.create_task_group() as loops:
                    for definition in self.definitions.values():
                        loops.start_soon(self._loop, definition)
                    loops.start_soon(self._keep_leases)
                    self._loops_started = True
                    try:
                        yield self
                    finally:
                        loops.cancel_scope.cancel()
            finally:
                self._loops_started = False
                with anyio.CancelScope(shield=True):
                    await self._release_leases()
                if on_stop == "cancel":
                    self.cancel_runs()
        self._runs_group = None

    def cancel_runs(self) -> None:
        """Cancel every run this scheduler started that is still going."""
        for handles in self._inflight.values():
            for handle in handles.values():
                handle.cancel()

    @property
    def active_runs(self) -> list[str]:
        """Run ids this scheduler started that have not ended yet."""
        return [run_id for handles in self._inflight.values() for run_id in handles]

    def wake(self, name: str | None = None) -> None:
        """Make a loop (or every loop) look at its schedule now: after a start, say."""
        for key, (_, scope) in list(self._naps.items()):
            if name is None or key == name:
                scope.cancel()

    async def wait_idle(self, *, runs: bool = True) -> None:
        """Wait until every loop sleeps until a future time (and, with ``runs``, no run is going).

        For tests driving a :class:`ManualClock`: after ``clock.advance(...)``,
        ``await scheduler.wait_idle()`` returns once everything now due is done.
        """
        while not self._idle(runs):
            changed = self._changed
            with anyio.move_on_after(0.05):  # also recheck: the clock may move without notice
                if changed is not None:
                    await changed.wait()
                else:
                    await anyio.sleep_forever()

    def _idle(self, runs: bool) -> bool:
        if not self._loops_started or len(self._naps) < len(self.definitions) + 1:  # + keeper
            return False
        now = self.clock.now()
        if any(until <= now for until, _ in self._naps.values()):
            return False
        return not runs or (self._run_tasks == 0 and not self.active_runs)

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None:
            self._changed = anyio.Event()
            changed.set()

    async def _nap(self, name: str, until: float) -> None:
        with anyio.CancelScope() as scope:
            self._naps[name] = (until, scope)
            self._notify()
            try:
                await self.clock.sleep_until(until)
            finally:
                del self._naps[name]
                self._notify()

    async def _loop(self, definition: AutomationDefinition) -> None:
        while True:
            try:
                if isinstance(definition, ScheduleDefinition):
                    wake_at = await self._schedule_pass(definition)
                else:
                    wake_at = await self._sensor_pass(definition)
            except Exception:
                # Storage trouble (a locked database, a lost connection): never let one
                # schedule's loop die; log once per failure and retry later.
                _log.exception("scheduler: %s failed; retrying", definition.name)
                wake_at = self.clock.now() + self.error_backoff
            await self._nap(definition.name, wake_at)

    # -- leases ----------------------------------------------------------------------------

    async def _hold_lease(self, name: str, now: float) -> float | None:
        """Take or renew ``name``'s lease: None when held, else when the holder's lease expires."""
        lease = await self.storage.acquire_lease(name, self.owner, now=now, ttl=self.lease_ttl)
        if lease.owner == self.owner:
            self._since.setdefault(name, now)
            return None
        if self._since.pop(name, None) is not None:
            _log.info("scheduler: %s is now evaluated by %s", name, lease.owner)
        return lease.expires_at

    async def _keep_leases(self) -> None:
        interval = self.lease_ttl / 3
        while True:
            await self._nap(_KEEPER, self.clock.now() + interval)
            for name in list(self._since):
                try:
                    lost = await self._hold_lease(name, self.clock.now()) is not None
                except Exception:
                    _log.exception("scheduler: renewing the lease of %s failed", name)
                    continue
                if lost:
                    self.wake(name)

    async def _release_leases(self) -> None:
        for name in list(self._since):
            try:
                await self.storage.release_lease(name, self.owner)
            except Exception:
                _log.exception("scheduler: releasing the lease of %s failed", name)
        self._since.clear()

    # -- schedules -------------------------------------------------------------------------

    async def _schedule_pass(self, schedule: ScheduleDefinition) -> float:
        storage, cron, name = self.storage, schedule.cron, schedule.name
        now = self.clock.now()
        retry = await self._hold_lease(name, now)
        if retry is not None:
            return retry
        state = await storage.get_instigator_state(name)
        next_tick = cron.next_after(now)
        wake = next_tick if next_tick is not None else now + _NEVER
        if effective_status(schedule, state) != "RUNNING":
            return wake
        cursor = None if state is None else state.last_tick_time
        if cursor is None:  # first sight: from now on, nothing from before
            await storage.update_instigator_cursor(
                name, InstigatorType.SCHEDULE, last_tick_time=now, now=now
            )
            return wake
        for tick_time, skip_reason in self._due_ticks(schedule, cursor, now):
            if skip_reason is None:
                await self._fire_schedule(schedule, tick_time)
            else:
                await self._record_skip(schedule, tick_time, skip_reason)
            await storage.update_instigator_cursor(
                name, InstigatorType.SCHEDULE, last_tick_time=tick_time, now=self.clock.now()
            )
        later = self.clock.now()
        if later > now:  # time passed while evaluating: more may be due already
            nxt = cron.next_after(now)
            if nxt is not None and nxt <= later:
                return later
        return wake

    def _due_ticks(
        self, schedule: ScheduleDefinition, cursor: float, now: float
    ) -> list[tuple[float, str | None]]:
        """The ticks in ``(cursor, now]`` to handle, oldest first: (time, None to run or a skip reason)."""
        cron = schedule.cron
        since = self._since[schedule.name]
        due: list[tuple[float, str | None]] = []
        if cursor < since:  # ticks came due while no scheduler held this schedule
            before = math.nextafter(min(since, now + 1), -math.inf)
            keep = {Catchup.LATEST: 1, Catchup.ALL: schedule.max_catchup_runs, Catchup.NONE: 0}
            wanted = keep[schedule.catchup]
            missed, older = cron.latest_between(cursor, min(before, now), wanted + 1)
            run, not_run = (
                missed[len(missed) - wanted :] if wanted else [],
                missed[: len(missed) - wanted],
            )
            if not_run:
                first = cron.next_after(cursor)
                last = not_run[-1] if not_run else missed[0]
                more = older or len(not_run) > 1
                reason = _missed_reason(schedule, first, last, more)
                due.append((last, reason))
            due.extend((t, None) for t in run)
            cursor = max(cursor, before)
        for t in cron.iter_after(cursor):
            if t > now:
                break
            due.append((t, None))
        due.sort(key=lambda item: item[0])
        return due

    async def _fire_schedule(self, schedule: ScheduleDefinition, tick_time: float) -> None:
        tick = await self._claim(schedule, tick_time)
        if tick is None:
            return
        scheduled = schedule.cron.localize(tick_time)
        try:
            if schedule.execution_fn is None:
                outcome = Outcome(requests=(RunRequest(run_config=schedule.run_config),))
            else:
                context = ScheduleEvaluationContext(
                    scheduled_execution_time=scheduled,
                    schedule_name=schedule.name,
                    pipeline_name=schedule.pipeline.name,
                )
                outcome = await self._evaluate(schedule, schedule.execution_fn, context)
        except Exception as exc:
            await self._finish(tick, error=exc)
            return
        tags = {
            SCHEDULE_NAME_TAG: schedule.name,
            SCHEDULED_EXECUTION_TIME_TAG: scheduled.isoformat(),
        }
        await self._launch_outcome(schedule, tick, outcome, tags)

    async def _record_skip(
        self, schedule: ScheduleDefinition, tick_time: float, reason: str
    ) -> None:
        tick = await self._claim(schedule, tick_time)
        if tick is not None:
            await self._finish(tick, skip_reason=reason)

    # -- sensors ---------------------------------------------------------------------------

    async def _sensor_pass(self, sensor: SensorDefinition) -> float:
        storage, name, interval = self.storage, sensor.name, sensor.minimum_interval_seconds
        now = self.clock.now()
        retry = await self._hold_lease(name, now)
        if retry is not None:
            return retry
        state = await storage.get_instigator_state(name)
        if effective_status(sensor, state) != "RUNNING":
            return now + interval
        last = None if state is None else state.last_tick_time
        if last is not None and now < last + interval:
            return last + interval
        cursor = None if state is None else state.cursor
        tick = await self._claim(sensor, now)
        if tick is None:
            return now + interval
        context = SensorEvaluationContext(
            cursor=cursor,
            evaluation_time=_utc(now),
            last_evaluation_time=None if last is None else _utc(last),
            sensor_name=name,
            pipeline_name=sensor.pipeline.name,
        )
        try:
            outcome = await self._evaluate(sensor, sensor.evaluation_fn, context)
        except Exception as exc:
            await self._finish(tick, error=exc, cursor=cursor)
        else:
            cursor = context.cursor
            await self._launch_outcome(
                sensor, tick, outcome, {SENSOR_NAME_TAG: name}, cursor=cursor
            )
        await storage.update_instigator_cursor(
            name, InstigatorType.SENSOR, last_tick_time=now, cursor=cursor, now=self.clock.now()
        )
        return now + interval

    # -- one tick ------------------------------------------------------------------------------

    async def _claim(self, definition: AutomationDefinition, tick_time: float) -> TickRecord | None:
        """Claim a tick for this process: the tick, or None when it is (being) done elsewhere."""
        kind = (
            InstigatorType.SCHEDULE
            if isinstance(definition, ScheduleDefinition)
            else InstigatorType.SENSOR
        )
        mine = TickRecord(
            instigator_name=definition.name,
            instigator_type=kind,
            tick_time=tick_time,
            owner=self.owner,
            start_time=self.clock.now(),
        )
        stored = await self.storage.claim_tick(mine)
        if stored.owner != self.owner or stored.status is not TickStatus.STARTED:
            return None
        return stored

    async def _evaluate(
        self, definition: AutomationDefinition, fn: Callable[..., Any], context: Any
    ) -> Outcome:
        is_schedule = isinstance(definition, ScheduleDefinition)
        return await evaluate(
            fn,
            context,
            takes_context=definition.takes_context,
            kind="schedule" if is_schedule else "sensor",
            name=definition.name,
            clock=self.clock,
            timeout=self.evaluation_timeout,
            allow_config=is_schedule,
        )

    async def _launch_outcome(
        self,
        definition: AutomationDefinition,
        tick: TickRecord,
        outcome: Outcome,
        tags: dict[str, str],
        *,
        cursor: str | None = None,
    ) -> None:
        if outcome.skip_reason is not None:
            await self._finish(tick, skip_reason=outcome.skip_reason, cursor=cursor)
            return
        run_ids: list[str] = []
        keys: list[str] = []
        skips: list[str] = []
        errors: list[BaseException] = []
        for index, request in enumerate(outcome.requests):
            run_id = _run_id(definition, tick.tick_time, index, request.run_key)
            try:
                skipped = await self._launch(definition, tick, request, run_id, tags)
            except Exception as exc:
                errors.append(exc)
                continue
            if skipped is not None:
                skips.append(skipped)
            else:
                run_ids.append(run_id)
                if request.run_key is not None:
                    keys.append(request.run_key)
        reason = "; ".join(skips) or None
        await self._finish(
            tick,
            run_ids=run_ids,
            run_keys=keys,
            skip_reason=reason,
            error=errors[0] if errors else None,
            cursor=cursor,
        )

    async def _launch(
        self,
        definition: AutomationDefinition,
        tick: TickRecord,
        request: RunRequest,
        run_id: str,
        tags: dict[str, str],
    ) -> str | None:
        """Start one requested run; None when started, else why it was not."""
        from asyncdag.config import resolve_run_config

        storage, name = self.storage, definition.name
        resolve_run_config(definition.pipeline, request.run_config)  # ConfigError: the tick fails
        limit = (
            definition.max_concurrent_runs if isinstance(definition, ScheduleDefinition) else None
        )
        if limit is not None:
            active = set(await storage.active_instigator_runs(name)) | set(
                self._inflight.get(name, {})
            )
            if len(active) >= limit:
                return (
                    f"{len(active)} run(s) of {name!r} still running, the most allowed at once "
                    f"(max_concurrent_runs={limit})"
                )
        now = self.clock.now()
        holder = await storage.add_instigator_run(
            name, run_id, run_key=request.run_key, tick_time=tick.tick_time, now=now
        )
        if holder is not None and holder != run_id:
            return f"run key {request.run_key!r} already started run {holder}"
        if run_id in self._inflight.get(name, {}) or await storage.get_run(run_id) is not None:
            if request.run_key is not None:
                return f"run key {request.run_key!r} already started run {run_id}"
            return None  # this tick's run, launched before its process died: done already
        run_tags = {**definition.tags, **request.tags, **tags}
        if request.run_key is not None:
            run_tags[RUN_KEY_TAG] = request.run_key
        try:
            handle = await self._start_run(
                definition.pipeline, request.run_config, run_tags, run_id
            )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await storage.remove_instigator_run(name, run_id)
            raise
        self._inflight.setdefault(name, {})[run_id] = handle
        _log.info("scheduler: %s started run %s", name, run_id)
        return None

    async def _start_run(
        self,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any],
        tags: Mapping[str, str],
        run_id: str,
    ) -> RunHandle:
        if self._launcher is not None:
            handle = await self._launcher(pipeline, run_config, tags=tags, run_id=run_id)
            self._watch(handle)
            return handle
        group = self._runs_group
        if group is None:
            raise AsyncdagError(
                "the scheduler is not running; enter `async with scheduler.running():`"
            )
        started: RunHandle = await group.start(self._own_run, pipeline, run_config, tags, run_id)
        return started

    def _watch(self, handle: RunHandle) -> None:
        # Runs from another launcher: forget them once they are done.
        group = self._runs_group
        if group is not None:
            group.start_soon(self._forget_when_done, handle)

    async def _forget_when_done(self, handle: RunHandle) -> None:
        self._run_tasks += 1
        try:
            await handle.result()
        finally:
            self._run_tasks -= 1
            self._drop(handle.run_id)

    async def _own_run(
        self,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any],
        tags: Mapping[str, str],
        run_id: str,
        *,
        task_status: anyio.abc.TaskStatus[RunHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        started = False
        self._run_tasks += 1
        try:
            async with open_run(
                pipeline,
                run_config,
                tags=tags,
                storage=self.storage,
                run_id=run_id,
                output_store=self.output_store,
            ) as handle:
                started = True
                task_status.started(handle)
            # open_run has exited: every event and the final status are stored.
        except Exception:
            if not started:
                raise  # before started(): the tick records the error
            _log.exception("scheduler: run %s ended with an error outside its steps", run_id)
        finally:
            self._run_tasks -= 1
            self._drop(run_id)

    def _drop(self, run_id: str) -> None:
        for handles in self._inflight.values():
            handles.pop(run_id, None)
        self._notify()

    async def _finish(
        self,
        tick: TickRecord,
        *,
        run_ids: Iterable[str] = (),
        run_keys: Iterable[str] = (),
        skip_reason: str | None = None,
        error: BaseException | None = None,
        cursor: str | None = None,
    ) -> None:
        run_ids = tuple(run_ids)
        if error is not None:
            status = TickStatus.FAILURE
            _log.warning(
                "scheduler: tick of %s at %s failed: %s",
                tick.instigator_name,
                iso(tick.tick_time),
                error,
            )
        elif run_ids:
            status = TickStatus.SUCCESS
        else:
            status = TickStatus.SKIPPED
        done = attrs.evolve(
            tick,
            status=status,
            end_time=self.clock.now(),
            run_ids=run_ids,
            run_keys=tuple(run_keys),
            skip_reason=skip_reason,
            error=None if error is None else ErrorInfo.from_exception(error),
            cursor=cursor,
        )
        with anyio.CancelScope(shield=True):  # a claimed tick always gets its outcome
            await self.storage.update_tick(done)


def _run_id(
    definition: AutomationDefinition, tick_time: float, index: int, run_key: str | None
) -> str:
    """The run's id: derived from its run key or its tick, so a retried tick finds its run."""
    if run_key is not None:
        return str(uuid.uuid5(_RUN_IDS, f"{definition.name}\0key\0{run_key}"))
    if isinstance(definition, ScheduleDefinition):
        return str(uuid.uuid5(_RUN_IDS, f"{definition.name}\0tick\0{tick_time!r}\0{index}"))
    return str(uuid.uuid4())  # a sensor's request without a key promises no deduplication


def _missed_reason(
    schedule: ScheduleDefinition, first: float | None, last: float, more: bool
) -> str:
    tz = schedule.cron.tz
    span = f"{iso(first, tz)} to {iso(last, tz)}" if first is not None and more else iso(last, tz)
    policy = {
        Catchup.LATEST: "catchup='latest' runs only the most recent",
        Catchup.ALL: f"catchup='all' runs at most max_catchup_runs={schedule.max_catchup_runs}",
        Catchup.NONE: "catchup='none' runs none of them",
    }[schedule.catchup]
    return f"missed while no scheduler was running ({span}); not run: {policy}"


def _utc(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)
