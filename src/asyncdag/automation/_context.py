"""What a schedule or sensor function receives: the tick's time, the sensor's cursor, a logger.

Plain objects with no scheduler behind them, so a user's own test builds one
(``ScheduleEvaluationContext(scheduled_execution_time=...)``) and calls the
function directly.
"""

from __future__ import annotations

import datetime as dt
import logging

__all__ = ["ScheduleEvaluationContext", "SensorEvaluationContext"]

_log = logging.getLogger("asyncdag.automation")


class ScheduleEvaluationContext:
    """The context of one schedule tick.

    ``scheduled_execution_time`` is the tick's time in the schedule's time
    zone (an aware datetime), not the moment the function happens to run:
    after downtime, a caught-up tick still sees the time it was due.
    """

    __slots__ = ("log", "pipeline_name", "schedule_name", "scheduled_execution_time")

    def __init__(
        self,
        *,
        scheduled_execution_time: dt.datetime,
        schedule_name: str = "",
        pipeline_name: str = "",
        log: logging.Logger | None = None,
    ) -> None:
        self.scheduled_execution_time = scheduled_execution_time
        self.schedule_name = schedule_name
        self.pipeline_name = pipeline_name
        self.log = log or _log

    def __repr__(self) -> str:
        return (
            f"ScheduleEvaluationContext({self.schedule_name!r}, "
            f"scheduled_execution_time={self.scheduled_execution_time.isoformat()})"
        )


class SensorEvaluationContext:
    """The context of one sensor evaluation: its cursor, and the times of this and the last one.

    ``cursor`` is what the sensor stored last time (None at first);
    ``update_cursor(value)`` stores a new one once the evaluation succeeds
    (an evaluation that raises keeps the old cursor, so nothing is skipped).
    """

    __slots__ = (
        "_cursor",
        "_cursor_updated",
        "evaluation_time",
        "last_evaluation_time",
        "last_run_key",
        "log",
        "pipeline_name",
        "sensor_name",
    )

    def __init__(
        self,
        *,
        cursor: str | None = None,
        evaluation_time: dt.datetime | None = None,
        last_evaluation_time: dt.datetime | None = None,
        last_run_key: str | None = None,
        sensor_name: str = "",
        pipeline_name: str = "",
        log: logging.Logger | None = None,
    ) -> None:
        self._cursor = cursor
        self._cursor_updated = False
        self.evaluation_time = evaluation_time or dt.datetime.now(dt.UTC)
        self.last_evaluation_time = last_evaluation_time
        self.last_run_key = last_run_key
        self.sensor_name = sensor_name
        self.pipeline_name = pipeline_name
        self.log = log or _log

    @property
    def cursor(self) -> str | None:
        return self._cursor

    @property
    def cursor_updated(self) -> bool:
        return self._cursor_updated

    def update_cursor(self, cursor: str | None) -> None:
        """Replace the cursor (a string, or None to clear it); stored when the evaluation ends."""
        if cursor is not None and not isinstance(cursor, str):
            raise TypeError(
                f"sensor {self.sensor_name!r}: a cursor is a string (or None), got "
                f"{type(cursor).__name__}; encode it, e.g. with json.dumps"
            )
        self._cursor = cursor
        self._cursor_updated = True

    def __repr__(self) -> str:
        return f"SensorEvaluationContext({self.sensor_name!r}, cursor={self._cursor!r})"
