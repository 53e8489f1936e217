"""An hourly schedule for the multi-process tests, which drive time through a shared file.

When ``$ASYNCDAG_TEST_GATE`` names a file that exists, the schedule function
touches ``<gate>.waiting`` and blocks until the file is removed: a process can
then be killed in the middle of evaluating a tick.
"""

import os
import time
from pathlib import Path

from asyncdag import ScheduleEvaluationContext, pipeline, schedule, solid


@solid
def stamp(context) -> str:
    return context.tags["asyncdag/scheduled_execution_time"]


@pipeline
def clocked():
    stamp()


@schedule(cron_schedule="0 * * * *", pipeline=clocked)
def hourly(context: ScheduleEvaluationContext) -> dict:
    gate = os.environ.get("ASYNCDAG_TEST_GATE")
    if gate and os.path.exists(gate):
        Path(gate + ".waiting").touch()
        while os.path.exists(gate):
            time.sleep(0.005)
    return {}
