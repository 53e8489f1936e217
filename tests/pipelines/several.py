"""Two pipelines in one file, so the CLI must be told which with -p."""

from asyncdag import RetryPolicy, pipeline, solid


@solid(retry_policy=RetryPolicy(max_retries=2, delay=0.5), timeout=30, pool="db", priority=2)
def extract():
    return [1, 2, 3]


@solid(config_schema={"factor": int})
def scale(context, numbers: list):
    return [n * context.solid_config["factor"] for n in numbers]


@solid
def total(numbers: list) -> int:
    return sum(numbers)


@pipeline
def etl():
    total(scale(extract()))


@pipeline(name="report")
def report_pipeline():
    total(extract())
