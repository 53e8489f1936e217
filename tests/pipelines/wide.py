"""120 steps, one of which fails with a message naming a non-UTF-8 file: a run too big for a
table of every step, with text no terminal encoding can print as is."""

from asyncdag import pipeline, solid

ODD_NAME = b"report-\xe9t\xe9.csv".decode("utf-8", "surrogateescape")


@solid
def one():
    return 1


@solid
def broken(context):
    context.log.warning(f"opening {ODD_NAME}")
    raise ValueError(f"cannot parse {ODD_NAME}")


@pipeline
def wide():
    for i in range(119):
        one.alias(f"s{i}")()
    broken()
