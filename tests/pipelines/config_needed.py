"""A solid whose config has two required fields, so a bad config yields two errors."""

from asyncdag import pipeline, solid


@solid(config_schema={"name": str, "count": int})
def greet(context):
    for _ in range(context.solid_config["count"]):
        context.log.info(f"hello {context.solid_config['name']}")


@pipeline
def configured():
    greet()
