"""Step selection in Dagster's syntax, over the pipeline's graph (plan layer, no run)."""

from __future__ import annotations

import pytest

from asyncdag import ReexecutionError, graph, pipeline, solid
from asyncdag._plan import select_nodes


@solid
def src() -> int:
    return 1


@solid
def step(x: int) -> int:
    return x


@solid
def join(a: int, b: int) -> int:
    return a + b


@pipeline
def diamond() -> None:
    #   a -> b -> c -> d -> e
    #          \-> x ---/
    b = step.alias("b")(step.alias("a")(src.alias("root")()))
    c = step.alias("c")(b)
    d = join.alias("d")(c, step.alias("x")(b))
    step.alias("e")(d)


@pytest.mark.parametrize(
    ("clause", "expected"),
    [
        ("c", {"c"}),
        ("*c", {"root", "a", "b", "c"}),
        ("c*", {"c", "d", "e"}),
        ("+c", {"b", "c"}),
        ("c+", {"c", "d"}),
        ("++c", {"a", "b", "c"}),
        ("+2c", {"a", "b", "c"}),
        ("b+2", {"b", "c", "x", "d"}),
        ("b++", {"b", "c", "x", "d"}),
        ("+d+", {"c", "x", "d", "e"}),
        ("*", {"root", "a", "b", "c", "x", "d", "e"}),
    ],
)
def test_a_clause_selects_the_solid_and_its_neighbours(clause: str, expected: set[str]) -> None:
    assert select_nodes(diamond, [clause]) == expected


def test_clauses_add_up_and_may_be_comma_separated() -> None:
    assert select_nodes(diamond, ["a", "e"]) == {"a", "e"}
    assert select_nodes(diamond, ["a, e", "x"]) == {"a", "e", "x"}
    assert select_nodes(diamond, "c+") == {"c", "d"}


def test_every_unknown_name_is_reported_with_a_suggestion() -> None:
    with pytest.raises(ReexecutionError) as caught:
        select_nodes(diamond, ["rot*", "c", "++nope"])
    message = str(caught.value)
    assert "'rot*': pipeline 'diamond' has no solid 'rot' (did you mean 'root'?)" in message
    assert "did you mean" in message
    assert "'++nope'" in message


def test_a_malformed_clause_says_how_to_write_one() -> None:
    with pytest.raises(ReexecutionError, match="write NAME, \\*NAME"):
        select_nodes(diamond, ["a b"])


def test_an_empty_selection_is_an_error() -> None:
    with pytest.raises(ReexecutionError, match="empty"):
        select_nodes(diamond, [" , "])


@solid
def double(x: int) -> int:
    return 2 * x


@graph
def twice(x: int) -> int:
    return double(double(x))


@pipeline
def nested() -> None:
    step.alias("after")(twice(src()))


def test_solids_inside_a_graph_are_selected_by_their_dotted_names() -> None:
    assert select_nodes(nested, ["twice.double_2*"]) == {"twice.double_2", "after"}
