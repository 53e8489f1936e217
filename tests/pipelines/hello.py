"""The hello world: one sync solid feeding one async solid, logging at INFO."""

from asyncdag import pipeline, solid


@solid
def get_name():
    return "Kan"


@solid
async def hey(context, name: str):
    context.log.info(f"Hey, {name}!")


@pipeline
def hey_pipeline():
    hey(get_name())
