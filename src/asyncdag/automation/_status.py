"""Schedules and sensors as the CLI and the UI show them, and turning them on and off.

Both shells list the same things (effective on/off state, next ticks in the
schedule's zone, the last tick's outcome) and toggle the same way, so that
logic lives once, here, on top of the storage contract.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from asyncdag._errors import AsyncdagError

from ._definitions import AutomationDefinition, ScheduleDefinition, SensorDefinition

if TYPE_CHECKING:
    from asyncdag.storage import InstigatorState, RunStorage, TickRecord

__all__ = [
    "UnknownInstigatorError",
    "by_name",
    "describe",
    "effective_status",
    "instigator_type",
    "iso",
    "lookup",
    "set_running",
    "tick_data",
]


class UnknownInstigatorError(AsyncdagError, LookupError):
    """A command or request named a schedule or sensor that was not loaded."""


def by_name(definitions: Iterable[AutomationDefinition]) -> dict[str, AutomationDefinition]:
    """Definitions by name; two with one name (a schedule and a sensor included) is an error."""
    found: dict[str, AutomationDefinition] = {}
    for definition in definitions:
        if not isinstance(definition, ScheduleDefinition | SensorDefinition):
            raise AsyncdagError(
                f"expected schedules and sensors (made with @schedule / @sensor), got {definition!r}"
            )
        previous = found.get(definition.name)
        if previous is not None and previous is not definition:
            raise AsyncdagError(
                f"two schedules or sensors are named {definition.name!r}; names are unique "
                "across schedules and sensors (they key their state): pass name=... to one"
            )
        found[definition.name] = definition
    return found


def lookup(
    definitions: Mapping[str, AutomationDefinition], name: str, kind: type | None = None
) -> AutomationDefinition:
    """The definition called ``name`` (of ``kind``), or an error listing the ones there are."""
    definition = definitions.get(name)
    if definition is None or (kind is not None and not isinstance(definition, kind)):
        noun = _noun(kind)
        known = sorted(n for n, d in definitions.items() if kind is None or isinstance(d, kind))
        raise UnknownInstigatorError(
            f"no {noun} named {name!r}; {noun}s loaded: {', '.join(known) or 'none'}"
        )
    return definition


def _noun(kind: type | None) -> str:
    if kind is ScheduleDefinition:
        return "schedule"
    if kind is SensorDefinition:
        return "sensor"
    return "schedule or sensor"


def instigator_type(definition: AutomationDefinition) -> Any:
    from asyncdag.storage import InstigatorType

    if isinstance(definition, ScheduleDefinition):
        return InstigatorType.SCHEDULE
    return InstigatorType.SENSOR


def effective_status(definition: AutomationDefinition, state: InstigatorState | None) -> str:
    """RUNNING or STOPPED: the stored status once someone set one, else the definition's default."""
    if state is not None and state.status is not None:
        return str(state.status.value)
    return definition.default_status


async def set_running(
    storage: RunStorage, definition: AutomationDefinition, running: bool, *, now: float
) -> InstigatorState:
    """Start or stop a schedule or sensor.

    Starting a stopped schedule moves its cursor to ``now``: the ticks it
    missed while stopped are not caught up (that is what stopping means).
    """
    from asyncdag.storage import InstigatorStatus

    state = await storage.get_instigator_state(definition.name)
    was_running = effective_status(definition, state) == "RUNNING"
    status = InstigatorStatus.RUNNING if running else InstigatorStatus.STOPPED
    reset = (
        now if running and not was_running and isinstance(definition, ScheduleDefinition) else None
    )
    return await storage.set_instigator_status(
        definition.name, instigator_type(definition), status, now=now, last_tick_time=reset
    )


def iso(t: float, tz: dt.tzinfo | None = None) -> str:
    return dt.datetime.fromtimestamp(t, tz or dt.UTC).isoformat()


async def describe(
    definition: AutomationDefinition,
    storage: RunStorage,
    *,
    now: float,
    next_ticks: int = 5,
    last_tick: TickRecord | None = None,
) -> dict[str, Any]:
    """One schedule or sensor as JSON-ready data: settings, state, next ticks, last tick."""
    state = await storage.get_instigator_state(definition.name)
    if last_tick is None:
        ticks = await storage.list_ticks(definition.name, limit=1)
        last_tick = ticks[0] if ticks else None
    status = effective_status(definition, state)
    out: dict[str, Any] = {
        "name": definition.name,
        "type": "schedule" if isinstance(definition, ScheduleDefinition) else "sensor",
        "pipeline": definition.pipeline.name,
        "description": definition.description,
        "status": status,
        "default_status": definition.default_status,
        "tags": dict(definition.tags),
        "last_tick": None if last_tick is None else tick_data(last_tick, definition),
        "cursor": None if state is None else state.cursor,
    }
    if isinstance(definition, ScheduleDefinition):
        cron = definition.cron
        times = cron.next_ticks(now, next_ticks) if status == "RUNNING" else []
        out.update(
            cron_schedule=definition.cron_schedule,
            execution_timezone=definition.execution_timezone,
            catchup=definition.catchup.value,
            max_catchup_runs=definition.max_catchup_runs,
            max_concurrent_runs=definition.max_concurrent_runs,
            next_ticks=[{"time": t, "local": iso(t, cron.tz)} for t in times],
        )
    else:
        interval = definition.minimum_interval_seconds
        upcoming = []
        if status == "RUNNING":
            last = None if state is None else state.last_tick_time
            due = now if last is None else max(now, last + interval)
            upcoming = [{"time": due, "local": iso(due)}]
        out.update(minimum_interval_seconds=interval, next_ticks=upcoming)
    return out


def tick_data(tick: TickRecord, definition: AutomationDefinition) -> dict[str, Any]:
    """A tick as JSON-ready data, with its time in the schedule's zone (``local``)."""
    data = tick.to_dict()
    tz = definition.cron.tz if isinstance(definition, ScheduleDefinition) else None
    data["local"] = iso(tick.tick_time, tz)
    return data
