"""The run result's outputs, found as Dagster users look for them: by step key, by the name of a
node mapped over a fan-out, by a dynamic output, by a graph's name; asyncio and trio."""

from __future__ import annotations

import pytest

from asyncdag import (
    AsyncdagError,
    DynamicOut,
    DynamicOutput,
    Out,
    Output,
    execute_pipeline_async,
    graph,
    pipeline,
    solid,
)

pytestmark = pytest.mark.anyio


@solid(outs={"items": DynamicOut(), "count": Out()})
async def fan(n: int = 3):
    for i in range(n):
        yield DynamicOutput(i, mapping_key=f"k{i}")
    yield Output(n, "count")


@solid
def double(x: int) -> int:
    if x == 1:
        raise ValueError("one is odd")
    return 2 * x


@solid
def total(xs: list[int]) -> int:
    return sum(xs)


@solid
def one() -> int:
    return 1


async def test_a_dynamic_output_is_its_items_by_mapping_key() -> None:
    @pipeline
    def p():
        fan().items.map(double)

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.output_for_solid("fan", "items") == {"k0": 0, "k1": 1, "k2": 2}
    assert result.output_for_solid("fan", "count") == 3


async def test_a_dynamic_output_nobody_maps_is_on_the_result_too() -> None:
    @pipeline
    def p():
        fan()

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("fan", "items") == {"k0": 0, "k1": 1, "k2": 2}


async def test_a_mapped_node_by_its_name_is_its_steps_outputs_by_mapping_key() -> None:
    @pipeline
    def p():
        fan().items.map(double)

    result = await execute_pipeline_async(p, raise_on_error=False)
    # double[k1] failed: left out, as .collect() leaves it out
    assert result.output_for_solid("double") == {"k0": 0, "k2": 4}
    assert result.output_for_solid("double[k2]") == 4


async def test_a_mapped_node_of_an_empty_fan_out_is_an_empty_dict() -> None:
    @pipeline
    def p():
        fan().items.map(double)

    result = await execute_pipeline_async(p, {"solids": {"fan": {"inputs": {"n": 0}}}})
    assert result.output_for_solid("double") == {}


@graph
def doubled_total(x):
    return {"doubled": double(x), "total": total([double.alias("again")(x), one()])}


@graph
def outer(x):
    return doubled_total(x).total


async def test_a_graph_by_its_name_is_what_it_returned() -> None:
    @pipeline
    def p():
        outer(3)
        doubled_total.alias("solo")(2)

    result = await execute_pipeline_async(p)
    assert result.output_for_solid("solo", "doubled") == 4
    assert result.output_for_solid("solo", "total") == 5
    assert result.output_for_solid("outer") == 7  # a graph's output that is a nested graph's
    assert result.output_for_solid("outer.doubled_total", "doubled") == 6
    with pytest.raises(AsyncdagError, match="graph 'solo' has no output named 'result'"):
        result.output_for_solid("solo")


async def test_a_graph_returning_a_fan_out_or_its_collection_gives_items_or_a_list() -> None:
    @graph
    def mapped():
        return fan().items.map(double)

    @graph
    def gathered():
        items = fan.alias("fan_again")().items
        return items.map(double.alias("twice")).collect()

    @pipeline
    def p():
        mapped()
        gathered()

    result = await execute_pipeline_async(p, raise_on_error=False)
    assert result.output_for_solid("mapped") == {"k0": 0, "k2": 4}
    assert result.output_for_solid("gathered") == [0, 4]


async def test_an_unknown_name_is_still_an_error_listing_the_steps() -> None:
    @pipeline
    def p():
        one()

    result = await execute_pipeline_async(p)
    with pytest.raises(AsyncdagError, match=r"has no step 'two'; steps are \['one'\]"):
        result.output_for_solid("two")
