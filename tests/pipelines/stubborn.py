"""A sync solid that ignores cancellation: a thread cannot be killed, so the run waits for it."""

import time

from asyncdag import pipeline, solid


@solid
def stubborn():
    for _ in range(36_000):
        time.sleep(0.1)


@pipeline
def stubborn_pipeline():
    stubborn()
