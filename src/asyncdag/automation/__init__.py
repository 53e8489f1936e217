"""Schedules and sensors: runs that start themselves, each tick once, none lost across restarts.

Users write ``@schedule`` and ``@sensor`` (re-exported from :mod:`asyncdag`); this
package also holds the machinery that runs them, for hosts that embed it:
:class:`Scheduler` (the loop; the web UI and ``asyncdag scheduler run`` host it),
and the clocks it takes (:class:`SystemClock`, :class:`ManualClock` for tests).

``import asyncdag`` loads the definitions only; the scheduler (which needs the
run storage) and the cron library load when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._clock import Clock, ManualClock, SystemClock
from ._definitions import Catchup

if TYPE_CHECKING:
    from ._scheduler import (
        RUN_KEY_TAG,
        SCHEDULE_NAME_TAG,
        SCHEDULED_EXECUTION_TIME_TAG,
        SENSOR_NAME_TAG,
        Launcher,
        Scheduler,
    )

__all__ = [
    "RUN_KEY_TAG",
    "SCHEDULED_EXECUTION_TIME_TAG",
    "SCHEDULE_NAME_TAG",
    "SENSOR_NAME_TAG",
    "Catchup",
    "Clock",
    "Launcher",
    "ManualClock",
    "Scheduler",
    "SystemClock",
]

# Loaded on first use: the scheduler imports the run storage (sqlite3), which
# `import asyncdag` must not.
_LAZY = {
    "RUN_KEY_TAG",
    "SCHEDULED_EXECUTION_TIME_TAG",
    "SCHEDULE_NAME_TAG",
    "SENSOR_NAME_TAG",
    "Launcher",
    "Scheduler",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _scheduler

        value = getattr(_scheduler, name)
        globals()[name] = value
        _publish(__name__, globals(), [name])
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from asyncdag._public import publish as _publish  # noqa: E402

_publish(__name__, globals(), __all__)
