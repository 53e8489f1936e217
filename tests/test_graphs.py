"""Nested @graph: flattened into path-named steps, used like a solid, config nested alike."""

from __future__ import annotations

import pytest

from asyncdag import (
    ConfigError,
    DefinitionError,
    DynamicOut,
    DynamicOutput,
    execute_pipeline_async,
    graph,
    pipeline,
    solid,
)

pytestmark = pytest.mark.anyio


@solid
def one() -> int:
    return 1


@solid(config_schema={"k": int})
def scale(context, x: int) -> int:
    return x * context.solid_config["k"]


@solid
async def inc(x: int) -> int:
    return x + 1


@graph
def inner(x):
    return scale(inc(x))


@graph
def outer(x):
    first = inner(x)
    second = inner(first)
    return {"first": first, "second": second}


@pipeline
def nested():
    result = outer(one())
    inc.alias("final")(result.second)


CONFIG = {
    "solids": {
        "outer": {
            "solids": {
                "inner": {"solids": {"scale": {"config": {"k": 2}}}},
                "inner_2": {"solids": {"scale": {"config": {"k": 3}}}},
            }
        }
    }
}


async def test_step_keys_show_the_path_and_config_nests() -> None:
    assert list(nested.nodes) == [
        "one",
        "outer.inner.inc",
        "outer.inner.scale",
        "outer.inner_2.inc",
        "outer.inner_2.scale",
        "final",
    ]
    result = await execute_pipeline_async(nested, CONFIG)
    # ((1 + 1) * 2 + 1) * 3 + 1
    assert result.output_for_solid("final") == 16
    assert result.output_for_solid("outer.inner.scale") == 4


async def test_flat_dotted_config_keys_work_too() -> None:
    flat = {
        "solids": {
            "outer.inner.scale": {"config": {"k": 1}},
            "outer.inner_2.scale": {"config": {"k": 1}},
        }
    }
    result = await execute_pipeline_async(nested, flat)
    assert result.output_for_solid("final") == 4


def test_config_errors_name_the_nested_path() -> None:
    from asyncdag.config import resolve_run_config

    bad = {
        "solids": {"outer": {"solids": {"inner": {"solids": {"scale": {"config": {"k": "x"}}}}}}}
    }
    with pytest.raises(ConfigError, match=r"outer\.inner\.scale"):
        resolve_run_config(nested, bad)
    with pytest.raises(ConfigError, match="is a graph"):
        resolve_run_config(nested, {"solids": {"outer": {"config": {}}}})


async def test_graph_alias_and_graph_inside_map() -> None:
    @solid(outs={"items": DynamicOut()})
    async def items():
        for i in range(3):
            yield DynamicOutput(i, mapping_key=f"i{i}")

    @graph
    def twice(x):
        return inc(inc(x))

    @solid
    def total(values: list[int]) -> int:
        return sum(values)

    @pipeline
    def p():
        twice.alias("left")(one())
        total(items().map(twice).collect())

    assert "left.inc_2" in p.nodes
    result = await execute_pipeline_async(p)
    assert result.output_for_solid("left.inc_2") == 3
    assert result.output_for_solid("total") == 2 + 3 + 4
    assert result.step_results["twice.inc_2[i1]"].status.value == "SUCCESS"


def test_graph_input_errors() -> None:
    with pytest.raises(DefinitionError, match="graph 'inner' takes inputs"):

        @pipeline
        def p():
            inner()
