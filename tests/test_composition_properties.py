"""hypothesis: random nested graphs with random (and nested) fan-outs match a sequential reference
evaluation."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncdag import (
    DynamicOut,
    DynamicOutput,
    execute_pipeline_async,
    graph,
    pipeline,
    solid,
)

# A random program: a chain of stages, each either an affine map `a*x + b` (possibly wrapped in
# nested graphs) or a fan-out of `k` items, mapped by affine steps and collected by a sum.
stage = st.one_of(
    st.tuples(st.just("affine"), st.integers(-3, 3), st.integers(-5, 5), st.integers(0, 2)),
    st.tuples(
        st.just("fan"),
        st.integers(0, 6),
        st.lists(st.tuples(st.integers(-3, 3), st.integers(-5, 5)), min_size=0, max_size=3),
        st.booleans(),
    ),
)


def reference(x: int, stages: list[tuple[Any, ...]]) -> int:
    for s in stages:
        if s[0] == "affine":
            x = s[1] * x + s[2]
        else:
            _, k, maps, _sync = s
            values = []
            for i in sorted(range(k), key=lambda i: f"k{i}"):
                v = x + i
                for a, b in maps:
                    v = a * v + b
                values.append(v)
            x = sum(values)
    return x


def build(stages: list[tuple[Any, ...]]):
    # Each stage makes new solids: one pipeline may not hold two different solids of one name.
    serial = itertools.count()

    @solid
    def start() -> int:
        return 7

    def affine(a: int, b: int):
        @solid(name=f"affine_{next(serial)}")
        async def f(x: int) -> int:
            await anyio.lowlevel.checkpoint()
            return a * x + b

        return f

    def wrap(body, depth: int):
        for level in range(depth):
            body = graph(name=f"g{level}")(lambda x, inner=body: inner(x))
        return body

    @solid
    def total(values: list[int]) -> int:
        return sum(values)

    def fan(k: int, sync: bool):
        if sync:

            @solid(name=f"fan_{next(serial)}", outs={"items": DynamicOut()})
            def produce(x: int):
                for i in range(k):
                    yield DynamicOutput(x + i, mapping_key=f"k{i}")

        else:

            @solid(name=f"fan_{next(serial)}", outs={"items": DynamicOut()})
            async def produce(x: int):
                for i in range(k):
                    await anyio.lowlevel.checkpoint()
                    yield DynamicOutput(x + i, mapping_key=f"k{i}")

        return produce

    @pipeline
    def p():
        handle = start()
        for s in stages:
            if s[0] == "affine":
                _, a, b, depth = s
                step = affine(a, b)
                handle = wrap(lambda x, step=step: step(x), depth)(handle)
            else:
                _, k, maps, sync = s

                def per_item(v, maps=maps):
                    for a, b in maps:
                        v = affine(a, b)(v)
                    return v

                items = fan(k, sync)(handle)
                mapped = items.map(per_item) if maps else items
                handle = total(mapped.collect())
        total.alias("final")([handle])

    return p


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stages=st.lists(stage, min_size=1, max_size=5),
    bound=st.sampled_from([2, 3, None]),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_random_nested_fan_outs_match_sequential_reference(
    stages: list[tuple[Any, ...]], bound: int | None, backend: str
) -> None:
    p = build(stages)

    async def main() -> Any:
        return await execute_pipeline_async(p, max_concurrency=bound)

    result = anyio.run(main, backend=backend)
    assert result.success
    assert result.output_for_solid("final") == reference(7, stages)


# Nested fan-outs: item i of the outer fan-out fans out again into widths[i] items (j), each
# mapped to 10*i + j; every inner fan-out is summed inside the outer map, the sums collected.
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    widths=st.lists(st.integers(0, 4), max_size=5),
    inner_sync=st.booleans(),
    bound=st.sampled_from([1, 2, None]),
    backend=st.sampled_from(["asyncio", "trio"]),
)
def test_random_nested_fan_outs_match_their_reference(
    widths: list[int], inner_sync: bool, bound: int | None, backend: str
) -> None:
    @solid(outs={"items": DynamicOut()})
    async def outer():
        for i, width in enumerate(widths):
            await anyio.lowlevel.checkpoint()
            yield DynamicOutput((i, width), mapping_key=f"i{i}")

    if inner_sync:

        @solid(outs={"items": DynamicOut()})
        def inner(item: tuple[int, int]):
            for j in range(item[1]):
                yield DynamicOutput((item[0], j), mapping_key=f"j{j}")

    else:

        @solid(outs={"items": DynamicOut()})
        async def inner(item: tuple[int, int]):
            for j in range(item[1]):
                await anyio.lowlevel.checkpoint()
                yield DynamicOutput((item[0], j), mapping_key=f"j{j}")

    @solid
    async def value(pair: tuple[int, int]) -> int:
        return 10 * pair[0] + pair[1]

    @solid
    def total(values: list[int]) -> int:
        return sum(values)

    @solid
    def sums(values: list[int]) -> list[int]:
        return values

    @pipeline
    def p():
        sums(outer().map(lambda item: total(inner(item).map(value).collect())).collect())

    async def main() -> Any:
        return await execute_pipeline_async(p, max_concurrency=bound)

    result = anyio.run(main, backend=backend)
    assert result.success
    expected = [sum(10 * i + j for j in range(width)) for i, width in enumerate(widths)]
    # collected in mapping-key order, which is i0..i4 in yield order (at most 5 items)
    assert result.output_for_solid("sums") == expected
    assert len(result.step_results) == 2 + 2 * len(widths) + sum(widths)
