"""The Dagster hello world, on asyncdag: one sync solid feeding one async solid."""

from asyncdag import execute_pipeline, pipeline, solid


@solid
def get_name():
    return "Kan"


@solid
async def hey(context, name: str):
    context.log.info(f"Hey, {name}!")


@pipeline
def hey_pipeline():
    hey(get_name())


if __name__ == "__main__":
    execute_pipeline(hey_pipeline)
