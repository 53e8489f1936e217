"""Building pipelines: node naming, wiring, and the errors a badly wired pipeline gets."""

from __future__ import annotations

import inspect

import attrs
import pytest

from asyncdag import (
    Backoff,
    DefinitionError,
    DynamicOut,
    DynamicOutput,
    Jitter,
    RetryPolicy,
    graph,
    pipeline,
    resource,
    solid,
)
from asyncdag._definitions import (
    Constant,
    FanIn,
    FromOutput,
    check_resource_graph,
    check_resources_bound,
)
from asyncdag._plan import ExecutionPlan


@solid
def one() -> int:
    return 1


@solid
def add(a: int, b: int) -> int:
    return a + b


@solid
def total(xs: list[int]) -> int:
    return sum(xs)


def test_calling_a_solid_twice_makes_two_nodes_with_distinct_names() -> None:
    @pipeline
    def p():
        add(add(one(), one()), one())

    assert list(p.nodes) == ["one", "one_2", "add", "one_3", "add_2"]
    assert p.nodes["add_2"].inputs == {"a": FromOutput("add"), "b": FromOutput("one_3")}


def test_alias_names_a_node_explicitly() -> None:
    @pipeline
    def p():
        add.alias("w1")(one.alias("left")(), one.alias("right")())

    assert list(p.nodes) == ["left", "right", "w1"]
    assert p.nodes["w1"].solid is add


def test_duplicate_alias_is_an_error_naming_it() -> None:
    with pytest.raises(DefinitionError, match="two nodes are named 'x'"):

        @pipeline
        def p():
            one.alias("x")()
            one.alias("x")()


def test_fan_in_list_keeps_order_and_constants() -> None:
    @pipeline
    def p():
        total([one(), 5, one()])

    source = p.nodes["total"].inputs["xs"]
    assert source == FanIn((FromOutput("one"), Constant(5), FromOutput("one_2")))
    assert p.nodes["total"].upstream == ("one", "one_2")


def test_unknown_input_name_is_an_error_naming_solid_and_input() -> None:
    with pytest.raises(DefinitionError, match=r"solid 'add' has no input named 'c'"):

        @pipeline
        def p():
            add(a=one(), c=one())


def test_too_many_positional_arguments_is_an_error() -> None:
    with pytest.raises(DefinitionError, match=r"solid 'one_2' takes 0 input"):

        @pipeline
        def p():
            one(one())


def test_passing_the_solid_instead_of_its_output_is_explained() -> None:
    with pytest.raises(DefinitionError, match=r"pass `other\(\)` rather than `other`"):

        @pipeline
        def p():
            total([one])  # a list of solids is just a constant; the bare solid is not
            add(one, one())


def test_branching_on_an_output_while_defining_is_an_error() -> None:
    with pytest.raises(DefinitionError, match="cannot be used in an if"):

        @pipeline
        def p():
            if one():
                pass


def test_pipeline_without_solids_is_an_error() -> None:
    with pytest.raises(DefinitionError, match="has no solids"):

        @pipeline
        def p():
            pass


def test_unbound_resource_is_an_error_unless_the_run_gives_it() -> None:
    @solid(required_resources={"db"})
    def uses_db(context) -> None:
        pass

    @pipeline  # a run may still be given "db" (resources={...}): checked when it starts
    def p():
        uses_db()

    with pytest.raises(DefinitionError, match=r"solid 'uses_db' requires resource\(s\) \['db'\]"):
        check_resources_bound(p, p.resource_defs)
    check_resources_bound(p, p.resource_defs, provided={"db"})


def test_resource_depending_on_unbound_resource_is_an_error_unless_given() -> None:
    @resource(required_resources={"secrets"})
    def db(context):
        return object()

    @solid(required_resources={"db"})
    def uses_db(context) -> None:
        pass

    @pipeline(resources={"db": db})
    def p():
        uses_db()

    with pytest.raises(DefinitionError, match="resource 'db' requires resource 'secrets'"):
        check_resource_graph("pipeline 'p'", p.resource_defs)
    check_resource_graph("pipeline 'p'", p.resource_defs, provided={"secrets"})


def test_context_must_be_the_first_parameter() -> None:
    with pytest.raises(DefinitionError, match="'context' must be the first parameter"):

        @solid
        def bad(x, context):
            return x


def test_var_args_are_rejected() -> None:
    with pytest.raises(DefinitionError, match=r"\*args/\*\*kwargs"):

        @solid
        def bad(*xs):
            return xs


def test_invalid_options_are_rejected_with_the_solid_named() -> None:
    with pytest.raises(DefinitionError, match="solid 'slow': timeout must be > 0"):
        solid(name="slow", timeout=0)(lambda: None)
    with pytest.raises(DefinitionError, match="retry_policy must be a RetryPolicy"):
        solid(name="r", retry_policy=3)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="retry_on"):
        RetryPolicy(retry_on=("nope",))  # type: ignore[arg-type]


def test_solid_called_outside_a_pipeline_runs_its_function() -> None:
    assert add(2, 3) == 5


def test_unconnected_inputs_are_all_reported_at_plan_time() -> None:
    @pipeline
    def p():
        add()

    with pytest.raises(DefinitionError) as info:
        ExecutionPlan.build(p)
    message = str(info.value)
    assert "solid 'add' input 'a' is not connected" in message
    assert "solid 'add' input 'b' is not connected" in message
    assert "solids.add.inputs.a" in message


def test_plan_orders_steps_after_their_inputs_and_links_both_ways() -> None:
    @pipeline
    def p():
        x = one()
        add(x, add.alias("inner")(x, one()))

    plan = ExecutionPlan.build(p)
    position = {step.key: step.index for step in plan.steps}
    for step in plan.steps:
        for up in step.upstream:
            assert up < step.index
            assert step.index in plan.steps[up].downstream
    assert position["inner"] < position["add"]


def test_retry_policy_delays_follow_dagster_arithmetic() -> None:
    linear = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.LINEAR)
    assert [linear.delay_for(n) for n in (1, 2, 3)] == [2, 4, 6]
    exponential = RetryPolicy(max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL)
    assert [exponential.delay_for(n) for n in (1, 2, 3)] == [1, 3, 7]

    class Fixed:
        def __init__(self, value: float) -> None:
            self.value = value

        def random(self) -> float:
            return self.value

    full = RetryPolicy(delay=4, jitter=Jitter.FULL)
    assert full.delay_for(1, rng=Fixed(0.25)) == 1.0  # type: ignore[arg-type]
    plus_minus = RetryPolicy(delay=4, jitter=Jitter.PLUS_MINUS)
    assert plus_minus.delay_for(1, rng=Fixed(0.0)) == 0.0  # type: ignore[arg-type]
    assert plus_minus.delay_for(1, rng=Fixed(1.0)) == 8.0  # type: ignore[arg-type]


def test_two_different_solids_with_one_name_is_an_error_naming_both() -> None:
    @solid(name="add")
    def other_add(a: int, b: int) -> int:
        return a - b

    with pytest.raises(DefinitionError) as info:

        @pipeline
        def p():
            add(one(), one())
            other_add(one(), one())

    message = str(info.value)
    assert "two different solids named 'add'" in message
    assert "test_definitions.add" in message  # the first, by where it was defined
    assert "other_add" in message  # and the second
    assert "@solid(name=...)" in message


def test_two_different_solids_with_one_name_clash_across_graphs_and_aliases() -> None:
    @solid(name="one")
    def another_one() -> int:
        return 1

    @graph
    def g():
        return another_one.alias("renamed")()

    with pytest.raises(DefinitionError, match="two different solids named 'one'"):

        @pipeline
        def p():
            one()
            g()


@pytest.mark.parametrize("method", ["map", "collect"])
def test_map_on_an_output_that_is_not_dynamic_says_to_declare_dynamic_out(method: str) -> None:
    use = {"map": lambda handle: handle.map(add), "collect": lambda handle: handle.collect()}
    with pytest.raises(DefinitionError) as info:

        @pipeline
        def p():
            use[method](one())

    message = str(info.value)
    assert f"output 'result' of solid 'one' is not dynamic, so it has no .{method}()" in message
    assert "DynamicOut()" in message


def test_map_on_one_item_inside_map_says_it_is_one_item() -> None:
    @solid(outs={"items": DynamicOut()})
    def items():
        yield DynamicOutput(1, mapping_key="a")

    with pytest.raises(DefinitionError, match=r"inside \.map\(\) is one item, so it has no \.map"):

        @pipeline
        def p():
            items().map(lambda item: item.map(add))


@pytest.mark.parametrize("option", ["backoff", "jitter"])
@pytest.mark.parametrize("delay", [None, 0])
def test_retry_policy_rejects_backoff_or_jitter_without_a_delay(
    option: str, delay: float | None
) -> None:
    value = {"backoff": Backoff.EXPONENTIAL, "jitter": Jitter.FULL}[option]
    with pytest.raises(DefinitionError, match=rf"RetryPolicy\({option}=.*\) needs a delay"):
        RetryPolicy(max_retries=2, delay=delay, **{option: value})
    assert RetryPolicy(max_retries=2, delay=1, **{option: value}).delay == 1


def test_a_solid_keeps_its_functions_name_doc_and_signature() -> None:
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    definition = solid(name="twice")(double)
    assert definition.__name__ == "double"
    assert definition.__qualname__ == double.__qualname__
    assert definition.__doc__ == "Twice x."
    assert definition.__module__ == __name__
    assert definition.__wrapped__ is double
    assert inspect.signature(definition) == inspect.signature(double)
    assert definition.name == "twice"  # the solid's own name is untouched
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        definition.name = "other"  # type: ignore[misc]


def test_a_graph_keeps_its_functions_name_and_doc() -> None:
    def wiring(x):
        """Adds one to x."""
        return add(x, one())

    definition = graph(wiring)
    assert (definition.__name__, definition.__doc__) == ("wiring", "Adds one to x.")
    assert definition.__wrapped__ is wiring


def test_tag_on_a_call_overlays_the_solids_tags_for_that_node_only() -> None:
    @solid(tags={"team": "data", "tier": "1"})
    def tagged() -> int:
        return 1

    @pipeline
    def p():
        tagged.tag({"tier": 2, "owner": "ana"})()
        tagged()

    assert p.nodes["tagged"].tags == {"team": "data", "tier": "2", "owner": "ana"}
    assert p.nodes["tagged_2"].tags == {"team": "data", "tier": "1"}


def test_retry_policy_of_a_node_is_the_calls_then_the_solids_then_the_pipelines() -> None:
    call, own, default = (RetryPolicy(max_retries=n) for n in (1, 2, 3))

    @solid(retry_policy=own)
    def careful() -> int:
        return 1

    @pipeline(solid_retry_policy=default)
    def p():
        careful.alias("a").with_retry_policy(call)()
        careful.alias("b")()
        one()

    assert [p.nodes[n].retry_policy for n in ("a", "b", "one")] == [call, own, default]
    assert p.solid_retry_policy is default


def test_tag_and_retry_policy_reject_wrong_types() -> None:
    with pytest.raises(DefinitionError, match=r"\.tag\(\) takes a dict"):
        one.tag(["x"])  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match=r"\.with_retry_policy\(\) takes a RetryPolicy"):
        one.with_retry_policy(3)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="solid_retry_policy must be a RetryPolicy"):

        @pipeline(solid_retry_policy=3)  # type: ignore[call-overload]
        def p():
            one()


@pytest.mark.parametrize("priority", [1.5, "high", True, None])
def test_priority_must_be_an_int(priority: object) -> None:
    with pytest.raises(DefinitionError, match=r"solid 'fetch': priority must be an int"):

        @solid(priority=priority)  # type: ignore[arg-type]
        def fetch() -> None:
            pass


def test_priority_reaches_the_plans_steps_and_marks_the_plan_prioritized() -> None:
    @solid(priority=3)
    def urgent() -> int:
        return 1

    @solid
    def plain(x: int) -> int:
        return x

    @pipeline
    def with_priority():
        plain(urgent())

    @pipeline
    def without():
        plain.alias("other")(1)

    plan = ExecutionPlan.build(with_priority)
    assert plan.prioritized
    assert [(s.key, s.priority) for s in plan.steps] == [("urgent", 3), ("plain", 0)]
    assert not ExecutionPlan.build(without).prioritized


def test_a_solid_can_be_pinned_to_the_driver_and_nothing_else() -> None:
    @solid(executor="local")
    def here() -> None:
        pass

    assert here.executor == "local"
    with pytest.raises(DefinitionError, match=r"solid 'gpu': executor='gpu' is not known"):

        @solid(executor="gpu")
        def gpu() -> None:
            pass


def test_dask_resources_tag_is_kept_as_json_and_checked() -> None:
    import json

    @solid(tags={"dask/resources": {"GPU": 1}, "team": "data"})
    def on_gpu() -> None:
        pass

    assert json.loads(on_gpu.tags["dask/resources"]) == {"GPU": 1}
    assert on_gpu.tags["team"] == "data"
    for wrong in ({"GPU": -1}, {"GPU": "one"}, "GPU=1", {"GPU": float("nan")}):
        with pytest.raises(DefinitionError, match=r"solid 'bad': tag 'dask/resources' must map"):

            @solid(name="bad", tags={"dask/resources": wrong})
            def bad() -> None:
                pass
