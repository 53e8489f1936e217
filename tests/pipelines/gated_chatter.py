"""Waits until a file exists, then logs and prints a lot: output made after a reader left.

The test reads the first line of the command's stdout, closes the pipe, then
creates the gate file, so every line after the gate meets a closed pipe.
"""

import os
import time

from asyncdag import pipeline, solid
from asyncdag.config import Field

LINES = 300


@solid(config_schema={"gate": Field(str)})
def wait_for_gate(context):
    context.log.info("waiting for the gate")
    while not os.path.exists(context.solid_config["gate"]):
        time.sleep(0.01)
    return 1


@solid
def chatter(context, value: int):
    for i in range(LINES):
        context.log.info(f"line {i} " + "x" * 200)
    print("a solid printing to the closed pipe too")
    return value


@pipeline
def gated_chatter():
    chatter(wait_for_gate())
