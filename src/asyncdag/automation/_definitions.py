"""What users write: ``@schedule``, ``@sensor``, their definitions, ``RunRequest`` and ``SkipReason``.

Definitions are checked when they are made (a bad cron string, an unknown time
zone, a missing pipeline raise :class:`~asyncdag.DefinitionError` naming the
schedule), so a file that loads has schedules that can run.  Nothing here runs
anything: the scheduler (``_scheduler``) evaluates these definitions.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import attrs

from asyncdag._definitions import PipelineDefinition
from asyncdag._errors import DefinitionError

__all__ = [
    "Catchup",
    "RunRequest",
    "ScheduleDefinition",
    "SensorDefinition",
    "SkipReason",
    "schedule",
    "sensor",
]

#: The statuses a definition can start in (the values of storage's ``InstigatorStatus``).
_STATUSES = ("RUNNING", "STOPPED")


class Catchup(enum.StrEnum):
    """What a schedule does with the ticks it missed while no scheduler was running."""

    LATEST = "latest"  # run the most recent missed tick
    ALL = "all"  # run every missed tick, oldest first, at most ``max_catchup_runs``
    NONE = "none"  # run none of them


def _string_tags(value: Mapping[str, Any] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"tags must be a mapping of names to strings, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


def _as_run_config(value: Mapping[str, Any] | None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"run_config must be a dict (Dagster's shape), got {type(value).__name__}")
    return dict(value)


@attrs.frozen(kw_only=True)
class RunRequest:
    """Ask for one run: its config, tags, and (for sensors) a key that makes it happen once.

    A ``run_key`` already used by the same schedule or sensor never starts a
    second run, across restarts: yield ``RunRequest(run_key=filename, ...)``
    for each file a sensor sees and each file is processed once.
    """

    run_key: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    run_config: dict[str, Any] = attrs.field(factory=dict, converter=_as_run_config)
    tags: dict[str, str] = attrs.field(factory=dict, converter=_string_tags)


@attrs.frozen
class SkipReason:
    """Say why a tick starts no run; the reason is shown in the tick history."""

    skip_message: str | None = None


def _status(value: str) -> str:
    status = str(value).upper()
    if status not in _STATUSES:
        raise DefinitionError(f"default_status must be 'running' or 'stopped', got {value!r}")
    return status


def _takes_context(fn: Callable[..., Any], kind: str, name: str) -> bool:
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):  # a builtin without a signature: assume it takes one
        return True
    if len(params) > 1 and params[1].default is inspect.Parameter.empty:
        raise DefinitionError(
            f"{kind} {name!r}: its function takes more than one argument; it receives one, "
            f"the context (def {name}(context): ...)"
        )
    return bool(params)


def _check_pipeline(pipeline: Any, kind: str, name: str) -> PipelineDefinition:
    if not isinstance(pipeline, PipelineDefinition):
        raise DefinitionError(
            f"{kind} {name!r} needs pipeline=, a pipeline made with @pipeline; got {pipeline!r}"
        )
    return pipeline


def _check_name(name: Any, kind: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise DefinitionError(
            f"a {kind} name must be a Python identifier (letters, digits, _), got {name!r}; "
            "pass name=..."
        )
    return name


class ScheduleDefinition:
    """A pipeline run on a cron clock, in a time zone: made by ``@schedule`` or directly.

    ``run_config`` is the config of every run when there is no function; with
    one (``@schedule``), the function receives a
    :class:`~asyncdag.ScheduleEvaluationContext` and returns run config (a
    dict), a :class:`RunRequest` (or several), or a :class:`SkipReason`.

    ``catchup`` says what happens to ticks missed while no scheduler ran:
    ``"latest"`` (default) runs the most recent, ``"all"`` runs them oldest
    first (at most ``max_catchup_runs``), ``"none"`` runs none.  A tick that
    would make more than ``max_concurrent_runs`` runs of this schedule run at
    once is skipped with the reason.  ``default_status`` (``"running"``) is
    the state before anyone starts or stops the schedule.
    """

    __slots__ = (
        "catchup",
        "cron",
        "cron_schedule",
        "default_status",
        "description",
        "execution_fn",
        "execution_timezone",
        "max_catchup_runs",
        "max_concurrent_runs",
        "name",
        "pipeline",
        "run_config",
        "tags",
        "takes_context",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        cron_schedule: str,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any] | None = None,
        execution_fn: Callable[..., Any] | None = None,
        execution_timezone: str | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        catchup: Catchup | str = Catchup.LATEST,
        max_catchup_runs: int = 5,
        max_concurrent_runs: int | None = None,
        default_status: str = "running",
    ) -> None:
        if name is None:
            name = f"{getattr(pipeline, 'name', 'pipeline')}_schedule"
        self.name = _check_name(name, "schedule")
        self.pipeline = _check_pipeline(pipeline, "schedule", self.name)
        if run_config is not None and execution_fn is not None:
            raise DefinitionError(
                f"schedule {self.name!r}: give run_config or a function that returns it, not both"
            )
        self.run_config = _as_run_config(run_config)
        self.execution_fn = execution_fn
        self.takes_context = (
            _takes_context(execution_fn, "schedule", self.name) if execution_fn else False
        )
        self.execution_timezone = execution_timezone or "UTC"
        self.cron_schedule = cron_schedule
        from ._cron import (  # imports cronsim: not at import asyncdag
            CronSchedule,
            CronScheduleError,
        )

        try:
            self.cron = CronSchedule(cron_schedule, self.execution_timezone)
        except CronScheduleError as exc:
            raise DefinitionError(f"schedule {self.name!r}: {exc}") from None
        self.tags = _string_tags(tags)
        self.description = description
        try:
            self.catchup = Catchup(catchup)
        except ValueError:
            raise DefinitionError(
                f"schedule {self.name!r}: catchup must be 'latest', 'all' or 'none', got {catchup!r}"
            ) from None
        if not isinstance(max_catchup_runs, int) or max_catchup_runs < 1:
            raise DefinitionError(
                f"schedule {self.name!r}: max_catchup_runs must be an int >= 1, got {max_catchup_runs!r}"
            )
        self.max_catchup_runs = max_catchup_runs
        if max_concurrent_runs is not None and (
            not isinstance(max_concurrent_runs, int) or max_concurrent_runs < 1
        ):
            raise DefinitionError(
                f"schedule {self.name!r}: max_concurrent_runs must be None or an int >= 1, "
                f"got {max_concurrent_runs!r}"
            )
        self.max_concurrent_runs = max_concurrent_runs
        self.default_status = _status(default_status)

    def __repr__(self) -> str:
        return (
            f"<ScheduleDefinition {self.name!r}: {self.cron_schedule!r} "
            f"({self.execution_timezone}) -> {self.pipeline.name!r}>"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the decorated function directly, as in a unit test."""
        if self.execution_fn is None:
            raise TypeError(f"schedule {self.name!r} has no function to call")
        return self.execution_fn(*args, **kwargs)


class SensorDefinition:
    """A pipeline run when something appears: a function polled every ``minimum_interval_seconds``.

    The function receives a :class:`~asyncdag.SensorEvaluationContext` (with
    ``cursor`` and ``update_cursor``) and returns or yields
    :class:`RunRequest` objects (or a :class:`SkipReason`).  A request whose
    ``run_key`` this sensor already used starts nothing, across restarts.
    """

    __slots__ = (
        "default_status",
        "description",
        "evaluation_fn",
        "minimum_interval_seconds",
        "name",
        "pipeline",
        "tags",
        "takes_context",
    )

    def __init__(
        self,
        name: str | None = None,
        *,
        pipeline: PipelineDefinition,
        evaluation_fn: Callable[..., Any],
        minimum_interval_seconds: float = 30,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        default_status: str = "running",
    ) -> None:
        if name is None:
            name = getattr(evaluation_fn, "__name__", None)
        self.name = _check_name(name, "sensor")
        self.pipeline = _check_pipeline(pipeline, "sensor", self.name)
        if not callable(evaluation_fn):
            raise DefinitionError(f"sensor {self.name!r}: evaluation_fn must be a function")
        self.evaluation_fn = evaluation_fn
        self.takes_context = _takes_context(evaluation_fn, "sensor", self.name)
        if (
            not isinstance(minimum_interval_seconds, int | float)
            or isinstance(minimum_interval_seconds, bool)
            or not minimum_interval_seconds > 0
        ):
            raise DefinitionError(
                f"sensor {self.name!r}: minimum_interval_seconds must be a number > 0, "
                f"got {minimum_interval_seconds!r}"
            )
        self.minimum_interval_seconds = float(minimum_interval_seconds)
        self.tags = _string_tags(tags)
        self.description = description
        self.default_status = _status(default_status)

    def __repr__(self) -> str:
        return (
            f"<SensorDefinition {self.name!r}: every {self.minimum_interval_seconds:g}s "
            f"-> {self.pipeline.name!r}>"
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the decorated function directly, as in a unit test."""
        return self.evaluation_fn(*args, **kwargs)


AutomationDefinition: TypeAlias = ScheduleDefinition | SensorDefinition


def schedule(
    cron_schedule: str,
    *,
    pipeline: PipelineDefinition,
    name: str | None = None,
    execution_timezone: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    catchup: Catchup | str = Catchup.LATEST,
    max_catchup_runs: int = 5,
    max_concurrent_runs: int | None = None,
    default_status: str = "running",
) -> Callable[[Callable[..., Any]], ScheduleDefinition]:
    """Run ``pipeline`` on a cron clock; the function decides each run's config.

    ::

        @schedule(cron_schedule="0 * * * *", pipeline=etl, execution_timezone="Europe/Berlin")
        def hourly(context):
            return {"solids": {"extract": {"config": {"hour": context.scheduled_execution_time.hour}}}}

    The function (sync or async) receives a ScheduleEvaluationContext and
    returns run config, a RunRequest (or a list), or a SkipReason.  A sixth,
    leading cron field counts seconds (``"*/10 * * * * *"``).  See
    :class:`ScheduleDefinition` for ``catchup``, ``max_concurrent_runs`` and
    ``default_status``.
    """
    if callable(cron_schedule):
        raise DefinitionError(
            "@schedule needs arguments: @schedule(cron_schedule='0 * * * *', pipeline=...)"
        )

    def decorate(fn: Callable[..., Any]) -> ScheduleDefinition:
        definition = ScheduleDefinition(
            name or getattr(fn, "__name__", None),
            cron_schedule=cron_schedule,
            pipeline=pipeline,
            execution_fn=fn,
            execution_timezone=execution_timezone,
            tags=tags,
            description=description if description is not None else inspect.getdoc(fn),
            catchup=catchup,
            max_catchup_runs=max_catchup_runs,
            max_concurrent_runs=max_concurrent_runs,
            default_status=default_status,
        )
        return definition

    return decorate


def sensor(
    *,
    pipeline: PipelineDefinition,
    name: str | None = None,
    minimum_interval_seconds: float = 30,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    default_status: str = "running",
) -> Callable[[Callable[..., Any]], SensorDefinition]:
    """Run ``pipeline`` when the function asks: it is evaluated every ``minimum_interval_seconds``.

    ::

        @sensor(pipeline=process_file, minimum_interval_seconds=30)
        def new_files(context):
            for path in sorted(Path("inbox").glob("*.csv")):
                yield RunRequest(run_key=path.name, run_config={...})

    The function (sync or async, plain or a generator) receives a
    SensorEvaluationContext with ``cursor`` and ``update_cursor(...)``.
    """

    def decorate(fn: Callable[..., Any]) -> SensorDefinition:
        return SensorDefinition(
            name or getattr(fn, "__name__", None),
            pipeline=pipeline,
            evaluation_fn=fn,
            minimum_interval_seconds=minimum_interval_seconds,
            tags=tags,
            description=description if description is not None else inspect.getdoc(fn),
            default_status=default_status,
        )

    return decorate
