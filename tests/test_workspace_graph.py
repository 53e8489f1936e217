"""_workspace.graph_view: a pipeline's graph whole when small, collapsed into groups when huge."""

from __future__ import annotations

from typing import Any

from asyncdag import DynamicOut, DynamicOutput, pipeline, solid
from asyncdag._workspace import describe_pipeline, graph_view


@solid
def fetch(context: Any) -> int:
    return 1


@solid
def parse(value: int) -> int:
    return value


@solid
def total(values: list) -> int:
    return sum(values)


@solid
def step(value: int) -> int:
    return value


@solid
def start() -> int:
    return 0


@pipeline
def wide() -> None:
    total([parse(fetch.alias(f"fetch_{i}")()) for i in range(50)])


@pipeline
def chain() -> None:
    value = start()
    for i in range(10):
        value = step.alias(f"step_{i}")(value)


def test_a_small_graph_is_the_pipelines_own_description() -> None:
    view = graph_view(wide)
    assert (view["collapsed"], view["node_count"]) == (False, 101)
    assert view["nodes"] == describe_pipeline(wide)["nodes"]
    assert view["edges"] == describe_pipeline(wide)["edges"]


def test_a_large_graph_folds_copies_of_one_shape_into_groups() -> None:
    view = graph_view(wide, max_nodes=20)
    assert (view["collapsed"], view["node_count"]) == (True, 101)
    nodes = {n["name"]: n for n in view["nodes"]}
    assert list(nodes) == ["fetch_0 (+49)", "parse (+49)", "total"]
    assert nodes["fetch_0 (+49)"]["members"] == [f"fetch_{i}" for i in range(50)]
    assert nodes["fetch_0 (+49)"]["count"] == 50
    assert nodes["parse (+49)"]["members"][:2] == ["parse", "parse_2"]
    assert (nodes["total"]["members"], nodes["total"]["count"]) == (["total"], 1)
    assert nodes["parse (+49)"]["upstream"] == ["fetch_0 (+49)"]
    edges = {(e["from"], e["to"], e["input"]) for e in view["edges"]}
    assert edges == {
        ("fetch_0 (+49)", "parse (+49)", "value"),
        ("parse (+49)", "total", "values"),
    }
    assert len(view["edges"]) == 2  # one edge per input, not one per member
    assert sum(n["count"] for n in view["nodes"]) == view["node_count"]


def test_a_chain_too_long_to_draw_is_folded_by_solid() -> None:
    # Folding by place would keep every link of a chain apart: it is folded by solid.
    view = graph_view(chain, max_nodes=5)
    assert [(n["name"], n["count"]) for n in view["nodes"]] == [
        ("start", 1),
        ("step_0 (+9)", 10),
    ]
    # The chain's own links fold into its group: no edge from a group to itself.
    assert [(e["from"], e["to"]) for e in view["edges"]] == [("start", "step_0 (+9)")]


@solid(outs={"items": DynamicOut()})
def discover() -> Any:
    for i in range(3):
        yield DynamicOutput(i, mapping_key=str(i))


@solid
def work(item: int) -> int:
    return item


@pipeline
def fanned() -> None:
    for i in range(6):
        discover.alias(f"discover_{i}")().map(work.alias(f"work_{i}"))


def test_a_mapped_node_in_a_group_names_its_producers_group() -> None:
    view = graph_view(fanned, max_nodes=4)
    nodes = {n["name"]: n for n in view["nodes"]}
    assert set(nodes) == {"discover_0 (+5)", "work_0 (+5)"}
    assert nodes["work_0 (+5)"]["mapped_over"] == {"node": "discover_0 (+5)", "output": "items"}
