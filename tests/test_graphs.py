"""Nested @graph: flattened into path-named steps, used like a solid, config nested alike."""

from __future__ import annotations

from typing import Any

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


def test_graph_called_with_unknown_or_extra_inputs_is_an_error() -> None:
    with pytest.raises(DefinitionError, match="graph 'inner' takes inputs"):

        @pipeline
        def p():
            inner(y=1)

    with pytest.raises(DefinitionError, match="graph 'inner' takes inputs"):

        @pipeline
        def q():
            inner(1, 2)


@graph(
    config_schema={"factor": int},
    config_fn=lambda cfg: {
        "scale": {"config": {"k": cfg["factor"]}},
        "inner": {"solids": {"scale": {"config": {"k": cfg["factor"] * 10}}}},
    },
)
def scaled(x):
    return inner(scale(x))


@pipeline
def mapped():
    inc.alias("final")(scaled(one()))


async def test_a_graphs_config_fn_maps_its_one_config_onto_its_solids() -> None:
    result = await execute_pipeline_async(mapped, {"solids": {"scaled": {"config": {"factor": 2}}}})
    # ((1 * 2) + 1) * 20 + 1
    assert result.output_for_solid("final") == 61
    assert result.output_for_solid("scaled.inner.scale") == 60


def test_a_config_mapping_graph_takes_its_config_not_its_solids() -> None:
    from asyncdag.config import default_run_config, resolve_run_config, run_config_json_schema

    with pytest.raises(ConfigError) as info:
        resolve_run_config(mapped, {"solids": {"scaled": {"solids": {"scale": {}}}}})
    assert [str(e) for e in info.value.errors] == [
        "solids.scaled: 'scaled' is a graph: give its own config under 'config' (its config_fn "
        "maps it onto its solids) and its inputs under 'inputs', not ['solids']",
        "solids.scaled.config: graph 'scaled' requires config; required fields: factor (int)",
    ]
    with pytest.raises(ConfigError, match="takes its config from the config_fn of graph 'scaled'"):
        resolve_run_config(mapped, {"solids": {"scaled.scale": {"config": {"k": 1}}}})
    solids = run_config_json_schema(mapped)["properties"]["solids"]
    assert set(solids["properties"]) == {"scaled", "final", "one"}
    assert solids["required"] == ["scaled"]
    scaffold = default_run_config(mapped)
    assert scaffold["solids"] == {"scaled": {"config": {"factor": 0}}}
    resolve_run_config(mapped, scaffold)  # the scaffold resolves


def test_what_a_graphs_config_fn_returns_is_checked_and_blamed_on_it() -> None:
    from asyncdag.config import resolve_run_config

    @graph(config_schema=str, config_fn=lambda word: {"scale": {"config": {"k": word}}})
    def wordy(x):
        return scale(x)

    @graph(config_fn=lambda cfg: cfg["missing"])
    def raising(x):
        return scale(x)

    @graph(config_fn=lambda cfg: {})
    def forgetful(x):
        return scale(x)

    @pipeline
    def p():
        forgetful(raising(wordy(one())))

    with pytest.raises(ConfigError) as info:
        resolve_run_config(p, {"solids": {"wordy": {"config": "x"}}})
    # raising's solids get no error of their own: their graph's config_fn is at fault
    assert [str(e) for e in info.value.errors] == [
        "solids.raising.config: the config_fn of graph 'raising' raised TypeError: "
        "'NoneType' object is not subscriptable",
        "solids.wordy.scale.config.k: expected int, got str (given by the config_fn of graph "
        "'wordy')",
        "solids.forgetful.scale.config: solid 'forgetful.scale' requires config; required "
        "fields: k (int) (given by the config_fn of graph 'forgetful')",
    ]


def test_graph_config_schema_needs_a_config_fn() -> None:
    with pytest.raises(DefinitionError, match="config_schema= needs config_fn="):

        @graph(config_schema={"k": int})
        def g(x):
            return scale(x)


@graph
def adds(x, y):
    return inc(inc.alias("second")(x)), inc.alias("third")(y)


async def test_a_graph_input_left_unwired_comes_from_run_config() -> None:
    @pipeline
    def p():
        adds(y=one())

    result = await execute_pipeline_async(p, {"solids": {"adds": {"inputs": {"x": 40}}}})
    assert result.output_for_solid("adds.inc") == 42
    assert result.output_for_solid("adds.third") == 2


def test_unwired_graph_inputs_are_required_typed_and_addressed_by_the_graph() -> None:
    from asyncdag.config import default_run_config, resolve_run_config, run_config_json_schema

    @pipeline
    def p():
        adds(y=one())

    def errors(run_config: Any) -> list[str]:
        with pytest.raises(ConfigError) as info:
            resolve_run_config(p, run_config)
        return [str(e) for e in info.value.errors]

    assert errors(None) == [
        "solids.adds.inputs.x: input 'x' of graph 'adds' is fed by nothing in the pipeline "
        "body; give its value here"
    ]
    assert errors({"solids": {"adds": {"inputs": {"x": "40", "y": 1}}}}) == [
        "solids.adds.inputs.y: input 'y' of graph 'adds' is already fed inside the pipeline "
        "body; remove it from the run config",
        "solids.adds.inputs.x: expected int, got str",
    ]
    [message] = errors(
        {"solids": {"adds": {"inputs": {"x": 1}}, "adds.second": {"inputs": {"x": 1}}}}
    )
    assert "is fed by input 'x' of graph 'adds'; give it as solids.adds.inputs.x" in message
    schema = run_config_json_schema(p)["properties"]["solids"]
    assert schema["properties"]["adds"]["properties"]["inputs"]["required"] == ["x"]
    assert "x" not in schema["properties"]["adds.second"]["properties"]["inputs"]["properties"]
    assert default_run_config(p)["solids"] == {"adds": {"inputs": {"x": 0}}}


async def test_an_unwired_input_of_a_nested_graph_nests_in_run_config() -> None:
    @graph
    def wrapper():
        return adds(y=one())

    @pipeline
    def p():
        wrapper()

    config = {"solids": {"wrapper": {"solids": {"adds": {"inputs": {"x": 5}}}}}}
    result = await execute_pipeline_async(p, config)
    assert result.output_for_solid("wrapper.adds.inc") == 7


def test_a_graph_input_cannot_be_an_item_of_a_fan_in_list() -> None:
    @solid
    def total(xs: list[int]) -> int:
        return sum(xs)

    @graph
    def g(x):
        return total([x, one()])

    with pytest.raises(DefinitionError, match="cannot be an item of a fan-in list"):

        @pipeline
        def p():
            g()


async def test_hooks_on_a_graph_call_run_for_every_step_inside_it() -> None:
    from asyncdag import HookContext, success_hook

    seen: list[str] = []

    @success_hook
    def record(context: HookContext) -> None:
        seen.append(context.step_key)

    @pipeline
    def p():
        outer.with_hooks({record})(one())
        inner.alias("plain")(one())

    assert all(record in p.nodes[n].hooks for n in p.nodes if n.startswith("outer."))
    await execute_pipeline_async(
        p,
        {
            "solids": {
                "outer": {
                    "solids": {
                        "inner": {"solids": {"scale": {"config": {"k": 1}}}},
                        "inner_2": {"solids": {"scale": {"config": {"k": 1}}}},
                    }
                },
                "plain": {"solids": {"scale": {"config": {"k": 1}}}},
            }
        },
    )
    assert sorted(seen) == [
        "outer.inner.inc",
        "outer.inner.scale",
        "outer.inner_2.inc",
        "outer.inner_2.scale",
    ]
