"""A pipeline with a schedule and a sensor: what the CLI, the loader and the UI list."""

from asyncdag import (
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    pipeline,
    schedule,
    sensor,
    solid,
)


@solid
def report(context) -> None:
    context.log.info("reporting")


@pipeline(description="Writes the weekly report.")
def weekly_report():
    report()


@schedule(
    cron_schedule="0 9 * * 1",
    pipeline=weekly_report,
    execution_timezone="Europe/Berlin",
    default_status="stopped",
)
def monday_morning(context: ScheduleEvaluationContext) -> dict:
    """Every Monday at 09:00 in Berlin."""
    return {}


@sensor(pipeline=weekly_report, minimum_interval_seconds=3600, default_status="stopped")
def report_requests(context: SensorEvaluationContext):
    yield RunRequest(run_key="once")
