"""A step that runs until it is cancelled: for Ctrl-C and SIGKILL tests."""

import anyio

from asyncdag import pipeline, solid


@solid
def first():
    return 1


@solid
async def wait_forever(context, value: int):
    context.log.info("waiting to be cancelled")
    await anyio.sleep(3600)
    return value


@pipeline
def slow():
    wait_forever(first())
