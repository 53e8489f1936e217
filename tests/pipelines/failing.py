"""One step fails with a ValueError; the step after it is skipped, an independent one succeeds."""

from asyncdag import pipeline, solid


@solid
def boom():
    raise ValueError("the input was bad")


@solid
def after(value):
    return value


@solid
def independent():
    return 1


@pipeline
def failing():
    after(boom())
    independent()
