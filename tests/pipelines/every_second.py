"""A schedule that fires every second, for the end-to-end test on real time (`scheduler run`)."""

from asyncdag import ScheduleEvaluationContext, pipeline, schedule, solid


@solid
def stamp(context) -> str:
    return context.tags["asyncdag/scheduled_execution_time"]


@pipeline
def stamped():
    stamp()


@schedule(cron_schedule="* * * * * *", pipeline=stamped)
def every_second(context: ScheduleEvaluationContext) -> dict:
    return {}
