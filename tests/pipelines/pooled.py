"""Four fetches in pool "net" that share a resource set up by the first one, then a total."""

from asyncdag import pipeline, resource, solid


@resource
def client(context):
    return {"connections": 0}


@solid(required_resources={"http"}, pool="net")
def fetch(context) -> int:
    return 1


@solid
def total(values: list) -> int:
    return sum(values)


@pipeline(resources={"http": client})
def pooled():
    total([fetch.alias(f"fetch_{i}")() for i in range(4)])
